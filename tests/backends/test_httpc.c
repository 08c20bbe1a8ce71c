/* The shared HTTP transport (backends/httpc.c) against nginx and the fault-injecting proxy:
 * the hooks the S3 backend builds on (prepare before every attempt, error bodies, status
 * overrides, headers), retries of buffered and streamed bodies, ranges and parallel gets.
 * Re-runs itself under tests/integration/with_nginx.sh like test_http. */
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "hash.h"
#include "httpc.h"
#include "log.h"
#include "nginx_fixture.h"
#include "test.h"

#define KiB 1024u
#define MiB (1024u * 1024u)

static char nginx_base[512]; /* <nginx>/anon/<run> */
static char proxy_root[512]; /* <proxy> */

static stow_httpc *new_client(int parallel, uint64_t part, int retries)
{
    stow_httpc_config cfg;
    stow_httpc_config_init(&cfg, NULL);
    cfg.parallel = parallel;
    cfg.part_size = part;
    cfg.max_retries = retries;
    cfg.retry_base_ms = 10;
    stow_httpc *h = NULL;
    stow_error err;
    if (stow_httpc_new(&h, &cfg, &err) != STOW_OK)
        fprintf(stderr, "stow_httpc_new: %s\n", err.msg);
    return h;
}

/* "<nginx>/anon/<run>/<name>" or "<proxy>/<mode>/anon/<run>/<name>" */
static void url_for(char *out, size_t n, const char *mode, const char *name)
{
    if (mode == NULL)
        snprintf(out, n, "%s/%s", nginx_base, name);
    else
        snprintf(out, n, "%s/%s/anon/%s/%s", proxy_root, mode, fx_run_id(), name);
}

static int put_buffer(stow_httpc *h, const char *url, const void *buf, size_t len, stow_error *err)
{
    stow_httpc_request r;
    memset(&r, 0, sizeof(r));
    r.method = "PUT";
    r.url = url;
    r.body_type = STOW_HTTPC_BODY_BUFFER;
    r.body = buf;
    r.body_len = len;
    return stow_httpc_perform(h, &r, NULL, err);
}

static int put_generated(stow_httpc *h, const char *url, uint64_t seed, size_t len)
{
    unsigned char *buf = malloc(len ? len : 1);
    fx_fill(seed, 0, buf, len);
    stow_error err;
    int rc = put_buffer(h, url, buf, len, &err);
    if (rc != STOW_OK)
        fprintf(stderr, "put %s: %s\n", url, err.msg);
    free(buf);
    return rc;
}

static void check_content(stow_httpc *h, const char *url, uint64_t seed, uint64_t size)
{
    char want[STOW_SHA256_HEX_LEN + 1], got[STOW_SHA256_HEX_LEN + 1];
    fx_gen_hash(want, seed, 0, size);
    fx_hash_sink s = {stow_sha256_new(), 0, 0, 0};
    stow_httpc_request r;
    memset(&r, 0, sizeof(r));
    r.url = url;
    r.sink = fx_hash_sink_fn;
    r.sink_ud = &s;
    stow_error err;
    int rc = stow_httpc_get(h, &r, NULL, &err);
    CHECK_INT(rc, STOW_OK);
    if (rc != STOW_OK)
        fprintf(stderr, "  get %s: %s\n", url, err.msg);
    fx_hash_sink_hex(&s, got);
    stow_sha256_free(s.h);
    CHECK_INT(s.bytes, size);
    CHECK_STR(got, want);
}

/* ------------------------------------------------------------------ status mapping */

static void test_map_status(void)
{
    stow_error err;
    int retry = -1;
    CHECK_INT(stow_httpc_map_status(200, "GET", "u", &retry, &err), STOW_OK);
    CHECK_INT(retry, 0);
    CHECK_INT(stow_httpc_map_status(206, "GET", "u", &retry, &err), STOW_OK);
    CHECK_INT(stow_httpc_map_status(404, "GET", "u", &retry, &err), STOW_ENOTFOUND);
    CHECK_INT(stow_httpc_map_status(401, "GET", "u", &retry, &err), STOW_EAUTH);
    CHECK_INT(retry, 0);
    CHECK_INT(stow_httpc_map_status(403, "PUT", "u", &retry, &err), STOW_EAUTH);
    CHECK_INT(stow_httpc_map_status(412, "PUT", "u", &retry, &err), STOW_EEXIST);
    CHECK_INT(stow_httpc_map_status(409, "PUT", "u", &retry, &err), STOW_ERR);
    CHECK(strstr(err.msg, "409") && strstr(err.msg, "conflict"));
    CHECK_INT(stow_httpc_map_status(413, "PUT", "u", &retry, &err), STOW_ERR);
    CHECK(strstr(err.msg, "too large") && strstr(err.msg, "client_max_body_size"));
    CHECK_INT(stow_httpc_map_status(507, "PUT", "u", &retry, &err), STOW_ERR);
    CHECK(strstr(err.msg, "out of storage"));
    CHECK_INT(retry, 0);
    CHECK_INT(stow_httpc_map_status(503, "GET", "u", &retry, &err), STOW_ERR);
    CHECK_INT(retry, 1);
    CHECK_INT(stow_httpc_map_status(500, "GET", "u", &retry, &err), STOW_ERR);
    CHECK_INT(retry, 1);
    CHECK_INT(stow_httpc_map_status(429, "GET", "u", &retry, &err), STOW_ERR);
    CHECK_INT(retry, 1);
    CHECK_INT(stow_httpc_map_status(408, "GET", "u", &retry, &err), STOW_ETIMEOUT);
    CHECK_INT(retry, 1);
    CHECK_INT(stow_httpc_map_status(302, "GET", "u", &retry, &err), STOW_ERR);
    CHECK(strstr(err.msg, "redirect"));
    CHECK_INT(retry, 0);
}

/* ------------------------------------------------------------------ prepare hook */

typedef struct prep_log {
    pthread_mutex_t lock;
    int calls;
    int max_attempt;
    int ranged;
    uint64_t covered; /* sum of range lengths seen on first attempts */
    char method[16];
    const char *add_header;
    int fail_with; /* return this from prepare when non-zero */
} prep_log;

static int prep_fn(void *ud, const stow_httpc_attempt *att, struct curl_slist **headers,
                   stow_error *err)
{
    prep_log *p = ud;
    pthread_mutex_lock(&p->lock);
    p->calls++;
    if (att->attempt > p->max_attempt)
        p->max_attempt = att->attempt;
    snprintf(p->method, sizeof(p->method), "%s", att->method);
    if (att->has_range) {
        p->ranged++;
        if (att->attempt == 1 && att->range_end != UINT64_MAX)
            p->covered += att->range_end - att->range_start + 1;
    }
    pthread_mutex_unlock(&p->lock);
    if (p->fail_with)
        return stow_error_set(err, p->fail_with, "signer refused");
    if (p->add_header) {
        struct curl_slist *n = curl_slist_append(*headers, p->add_header);
        if (n == NULL)
            return stow_error_set(err, STOW_ERR, "oom");
        *headers = n;
    }
    return STOW_OK;
}

static void test_prepare(void)
{
    stow_httpc *h = new_client(3, 64 * KiB, 3);
    char url[1024];
    stow_error err;
    const uint64_t size = MiB + 5;
    url_for(url, sizeof(url), NULL, "prep/obj.bin");
    CHECK_INT(put_generated(h, url, 41, size), STOW_OK);

    /* a parallel get: prepare sees every part, each with its range, from several threads */
    prep_log pl;
    memset(&pl, 0, sizeof(pl));
    pthread_mutex_init(&pl.lock, NULL);
    fx_hash_sink s = {stow_sha256_new(), 0, 0, 0};
    stow_httpc_request r;
    memset(&r, 0, sizeof(r));
    r.url = url;
    r.sink = fx_hash_sink_fn;
    r.sink_ud = &s;
    r.prepare = prep_fn;
    r.ud = &pl;
    stow_httpc_result res;
    CHECK_INT(stow_httpc_get(h, &r, &res, &err), STOW_OK);
    CHECK_INT(s.bytes, size);
    CHECK_INT(pl.calls, 17); /* ceil((1 MiB + 5) / 64 KiB) parts, one attempt each */
    CHECK_INT(pl.ranged, 17);
    CHECK_INT(pl.covered, size);
    CHECK_INT(res.attempts, 17);
    CHECK_INT(res.total_size, size);
    CHECK_INT(res.bytes, size);
    char got[STOW_SHA256_HEX_LEN + 1], want[STOW_SHA256_HEX_LEN + 1];
    fx_hash_sink_hex(&s, got);
    fx_gen_hash(want, 41, 0, size);
    CHECK_STR(got, want);
    stow_sha256_free(s.h);

    /* a retried request: prepare runs before each attempt, with the attempt number */
    url_for(url, sizeof(url), "once503", "prep/obj.bin");
    memset(&pl, 0, sizeof(pl));
    pthread_mutex_init(&pl.lock, NULL);
    unsigned char *buf = malloc(size);
    fx_mem_sink m = {buf, 0, size};
    memset(&r, 0, sizeof(r));
    r.method = "GET";
    r.url = url;
    r.sink = fx_mem_sink_fn;
    r.sink_ud = &m;
    r.prepare = prep_fn;
    r.ud = &pl;
    CHECK_INT(stow_httpc_perform(h, &r, &res, &err), STOW_OK);
    CHECK_INT(pl.calls, 2);
    CHECK_INT(pl.max_attempt, 2);
    CHECK_INT(res.attempts, 2);
    CHECK_INT(res.status, 200);
    CHECK_INT(m.len, size);
    CHECK_STR(pl.method, "GET");

    /* a failing prepare fails the request without sending it */
    url_for(url, sizeof(url), "pass", "prep/never-sent.bin");
    memset(&pl, 0, sizeof(pl));
    pthread_mutex_init(&pl.lock, NULL);
    pl.fail_with = STOW_EAUTH;
    r.url = url;
    CHECK_INT(stow_httpc_perform(h, &r, &res, &err), STOW_EAUTH);
    CHECK(strstr(err.msg, "signer refused") != NULL);
    CHECK_INT(pl.calls, 1);
    CHECK_INT(fx_proxy_log_count("never-sent.bin", NULL), 0);

    /* headers added by prepare are sent: the bearer location lets us in only with them */
    char auth[512];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", fx_env("STOW_TEST_TOKEN"));
    snprintf(url, sizeof(url), "%s/bearer/%s/prep.bin", fx_env("STOW_TEST_NGINX_URL"), fx_run_id());
    memset(&pl, 0, sizeof(pl));
    pthread_mutex_init(&pl.lock, NULL);
    stow_httpc_request pr;
    memset(&pr, 0, sizeof(pr));
    pr.method = "PUT";
    pr.url = url;
    pr.body_type = STOW_HTTPC_BODY_BUFFER;
    pr.body = "abc";
    pr.body_len = 3;
    CHECK_INT(stow_httpc_perform(h, &pr, &res, &err), STOW_EAUTH);
    pr.prepare = prep_fn;
    pr.ud = &pl;
    pl.add_header = auth;
    CHECK_INT(stow_httpc_perform(h, &pr, &res, &err), STOW_OK);
    CHECK_STR(pl.method, "PUT");
    free(buf);
    stow_httpc_free(h);
}

/* ------------------------------------------------------------------ error hook */

typedef struct err_log {
    int calls;
    long status;
    int saw_code;
    int saw_xml;
    int saw_404_page;
    int mode; /* 0 rewrite to ETIMEOUT, 1 forbid retry, 2 remap 404, 3 force retry, 4 accept */
} err_log;

static int err_fn(void *ud, const stow_httpc_response *resp, int *retry, stow_error *err)
{
    err_log *e = ud;
    e->calls++;
    e->status = resp->status;
    if (strstr(resp->body, "<Code>SlowDown</Code>") != NULL)
        e->saw_code = 1;
    if (resp->content_type && strcmp(resp->content_type, "application/xml") == 0)
        e->saw_xml = 1;
    if (strstr(resp->body, "404 Not Found") != NULL)
        e->saw_404_page = 1;
    switch (e->mode) {
    case 0:
        return stow_error_set(err, STOW_ETIMEOUT, "%s %s: SlowDown (HTTP %ld)", resp->method,
                              resp->url_redacted, resp->status);
    case 1: *retry = 0; return err->code;
    case 2: return stow_error_set(err, STOW_ERR, "%s: NoSuchBucket", resp->url_redacted);
    case 4: return STOW_OK;
    default: *retry = 1; return err->code;
    }
}

static void test_error_hook(void)
{
    stow_httpc *h = new_client(1, 8 * MiB, 1);
    char url[1024];
    stow_error err;
    stow_httpc_result res;
    stow_httpc_request r;
    err_log el;

    /* a 503 with an XML body, retried once: the hook sees the body both times */
    url_for(url, sizeof(url), "always503", "err/a.bin");
    memset(&el, 0, sizeof(el));
    memset(&r, 0, sizeof(r));
    r.method = "GET";
    r.url = url;
    r.on_error = err_fn;
    r.ud = &el;
    CHECK_INT(stow_httpc_perform(h, &r, &res, &err), STOW_ETIMEOUT);
    CHECK_INT(el.calls, 2);
    CHECK_INT(el.status, 503);
    CHECK(el.saw_code && el.saw_xml);
    CHECK(strstr(err.msg, "SlowDown") != NULL);
    CHECK_INT(res.status, 503);
    CHECK_INT(res.attempts, 2);

    /* the hook can forbid the retry */
    url_for(url, sizeof(url), "always503", "err/b.bin");
    memset(&el, 0, sizeof(el));
    el.mode = 1;
    r.url = url;
    CHECK_INT(stow_httpc_perform(h, &r, &res, &err), STOW_ERR);
    CHECK_INT(el.calls, 1);
    CHECK_INT(fx_proxy_log_count("err/b.bin", NULL), 1);

    /* ... remap a 404 (a missing bucket is not a miss) ... */
    url_for(url, sizeof(url), NULL, "err/missing.bin");
    memset(&el, 0, sizeof(el));
    el.mode = 2;
    r.url = url;
    CHECK_INT(stow_httpc_perform(h, &r, &res, &err), STOW_ERR);
    CHECK(el.saw_404_page);
    CHECK(strstr(err.msg, "NoSuchBucket") != NULL);
    /* ... and without the hook a 404 stays a miss */
    r.on_error = NULL;
    CHECK_INT(stow_httpc_perform(h, &r, &res, &err), STOW_ENOTFOUND);
    CHECK_INT(res.status, 404);

    /* ... or force a retry the default mapping would not make */
    url_for(url, sizeof(url), "pass", "err/missing2.bin");
    memset(&el, 0, sizeof(el));
    el.mode = 3;
    r.url = url;
    r.on_error = err_fn;
    CHECK_INT(stow_httpc_perform(h, &r, &res, &err), STOW_ENOTFOUND);
    CHECK_INT(el.calls, 2);
    CHECK_INT(fx_proxy_log_count("err/missing2.bin", NULL), 2);

    /* ... or accept the answer as a success */
    url_for(url, sizeof(url), NULL, "err/missing3.bin");
    memset(&el, 0, sizeof(el));
    el.mode = 4;
    r.method = "DELETE";
    r.url = url;
    CHECK_INT(stow_httpc_perform(h, &r, &res, &err), STOW_OK);
    CHECK_INT(res.status, 404);
    CHECK_INT(el.calls, 1);
    stow_httpc_free(h);
}

/* ------------------------------------------------------------------ headers, head */

typedef struct hdr_log {
    char etag[256];
    char length[64];
} hdr_log;

static void hdr_fn(void *ud, const char *name, const char *value)
{
    hdr_log *l = ud;
    if (strcasecmp(name, "ETag") == 0)
        snprintf(l->etag, sizeof(l->etag), "%s", value);
    if (strcasecmp(name, "Content-Length") == 0)
        snprintf(l->length, sizeof(l->length), "%s", value);
}

static void test_headers_head(void)
{
    stow_httpc *h = new_client(4, 8 * MiB, 2);
    char url[1024];
    stow_error err;
    stow_httpc_result res;
    url_for(url, sizeof(url), NULL, "hdr/x.bin");
    CHECK_INT(put_generated(h, url, 51, 12345), STOW_OK);

    hdr_log hl;
    memset(&hl, 0, sizeof(hl));
    stow_httpc_request r;
    memset(&r, 0, sizeof(r));
    r.method = "HEAD";
    r.url = url;
    r.on_header = hdr_fn;
    r.ud = &hl;
    CHECK_INT(stow_httpc_perform(h, &r, &res, &err), STOW_OK);
    CHECK_INT(res.status, 200);
    CHECK_INT(res.content_length, 12345);
    CHECK_INT(res.total_size, 12345);
    CHECK(res.last_modified > 1600000000);
    CHECK(res.etag[0] == '"');
    CHECK_STR(hl.etag, res.etag);
    CHECK_STR(hl.length, "12345");

    /* ranges: inside, to the end, exactly at the end (empty), beyond the end (416) */
    unsigned char buf[20000], want[20000];
    fx_fill(51, 0, want, 12345);
    fx_mem_sink m = {buf, 0, sizeof(buf)};
    memset(&r, 0, sizeof(r));
    r.method = "GET";
    r.url = url;
    r.sink = fx_mem_sink_fn;
    r.sink_ud = &m;
    r.offset = 100;
    r.length = 1000;
    CHECK_INT(stow_httpc_perform(h, &r, &res, &err), STOW_OK);
    CHECK_INT(res.status, 206);
    CHECK_INT(res.total_size, 12345);
    CHECK_INT(m.len, 1000);
    CHECK(memcmp(buf, want + 100, 1000) == 0);
    m.len = 0;
    r.offset = 12000;
    r.length = 0;
    CHECK_INT(stow_httpc_get(h, &r, &res, &err), STOW_OK);
    CHECK_INT(m.len, 345);
    CHECK(memcmp(buf, want + 12000, 345) == 0);
    m.len = 0;
    r.offset = 12345;
    CHECK_INT(stow_httpc_get(h, &r, &res, &err), STOW_OK);
    CHECK_INT(m.len, 0);
    r.offset = 20000;
    CHECK_INT(stow_httpc_get(h, &r, &res, &err), STOW_ERR);
    CHECK(strstr(err.msg, "416") != NULL);
    /* a length past the end is clamped to the object */
    m.len = 0;
    r.offset = 12300;
    r.length = 1000;
    CHECK_INT(stow_httpc_perform(h, &r, &res, &err), STOW_OK);
    CHECK_INT(m.len, 45);

    /* an empty object through the parallel path */
    url_for(url, sizeof(url), NULL, "hdr/empty.bin");
    CHECK_INT(put_buffer(h, url, "", 0, &err), STOW_OK);
    m.len = 0;
    memset(&r, 0, sizeof(r));
    r.url = url;
    r.sink = fx_mem_sink_fn;
    r.sink_ud = &m;
    CHECK_INT(stow_httpc_get(h, &r, &res, &err), STOW_OK);
    CHECK_INT(m.len, 0);
    stow_httpc_free(h);
}

/* ------------------------------------------------------------------ retried bodies */

static int put_stream(stow_httpc *h, const char *url, uint64_t seed, uint64_t size, int known,
                      stow_error *err)
{
    stow_httpc_request r;
    memset(&r, 0, sizeof(r));
    r.method = "PUT";
    r.url = url;
    stow_httpc_upload *u = NULL;
    int rc = stow_httpc_put_begin(&u, h, &r, known ? (int64_t)size : -1, err);
    if (rc != STOW_OK)
        return rc;
    unsigned char *buf = malloc(256 * KiB);
    uint64_t done = 0;
    while (done < size) {
        size_t n = size - done < 256 * KiB ? (size_t)(size - done) : 256 * KiB;
        fx_fill(seed, done, buf, n);
        rc = stow_httpc_put_write(u, buf, n, err);
        if (rc != STOW_OK) {
            free(buf);
            stow_httpc_put_abort(u);
            return rc;
        }
        done += n;
    }
    free(buf);
    stow_httpc_result res;
    rc = stow_httpc_put_commit(u, &res, err);
    if (rc == STOW_OK && res.status != 201 && res.status != 204)
        return stow_error_set(err, STOW_ERR, "unexpected status %ld", res.status);
    return rc;
}

static void test_retried_bodies(void)
{
    stow_httpc *h = new_client(4, 8 * MiB, 3);
    char url[1024], direct[1024];
    stow_error err;

    /* a buffer body is replayed after a 503 */
    url_for(url, sizeof(url), "once503", "body/buf.bin");
    url_for(direct, sizeof(direct), NULL, "body/buf.bin");
    CHECK_INT(put_generated(h, url, 61, 300000), STOW_OK);
    CHECK_INT(fx_proxy_log_count("body/buf.bin", "PUT"), 2);
    check_content(h, direct, 61, 300000);

    /* a streamed body still in the pipe is replayed after a reset mid-body */
    url_for(url, sizeof(url), "rcut/100000", "body/small-stream.bin");
    url_for(direct, sizeof(direct), NULL, "body/small-stream.bin");
    int rc = put_stream(h, url, 62, 2 * MiB, 0, &err);
    CHECK_INT(rc, STOW_OK);
    if (rc != STOW_OK)
        fprintf(stderr, "  small stream: %s\n", err.msg);
    CHECK_INT(fx_proxy_log_count("body/small-stream.bin", "action=rcut"), 1);
    CHECK_INT(fx_proxy_log_count("body/small-stream.bin", "action=pass"), 1);
    check_content(h, direct, 62, 2 * MiB);

    /* a streamed body partly sent and dropped from the pipe cannot be retried: says so,
     * and the server kept nothing */
    url_for(url, sizeof(url), "rcut/6000000", "body/big-stream.bin");
    url_for(direct, sizeof(direct), NULL, "body/big-stream.bin");
    rc = put_stream(h, url, 63, 12 * MiB, 1, &err);
    CHECK_INT(rc, STOW_ERR);
    CHECK(strstr(err.msg, "not retried") != NULL && strstr(err.msg, "streamed body") != NULL);
    fprintf(stderr, "  (expected) %s\n", err.msg);
    stow_httpc_request r;
    memset(&r, 0, sizeof(r));
    r.method = "HEAD";
    r.url = direct;
    CHECK_INT(stow_httpc_perform(h, &r, NULL, &err), STOW_ENOTFOUND);
    stow_httpc_free(h);
}

/* ------------------------------------------------------------------ object changed */

typedef struct swap_sink {
    stow_httpc *h;
    const char *url;
    int swapped;
    uint64_t bytes;
    uint64_t new_size;
} swap_sink;

static int swap_sink_fn(void *ud, const void *buf, size_t len)
{
    (void)buf;
    swap_sink *s = ud;
    if (!s->swapped) {
        s->swapped = 1;
        /* replace the object while it is being downloaded; nginx's ETag is mtime-size,
         * so for a same-size replacement wait for the next second */
        if (s->new_size == 4 * MiB) {
            struct timespec ts = {1, 100 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        if (put_generated(s->h, s->url, 72, (size_t)s->new_size) != STOW_OK)
            return -1;
    }
    s->bytes += len;
    return 0;
}

static void test_object_changed(void)
{
    stow_httpc *h = new_client(2, 256 * KiB, 2);
    char url[1024];
    stow_error err;
    url_for(url, sizeof(url), NULL, "changed/x.bin");
    /* a different size is caught by the Content-Range total; the same size by If-Match */
    const uint64_t new_sizes[] = {3 * MiB, 4 * MiB};
    for (int i = 0; i < 2; i++) {
        CHECK_INT(put_generated(h, url, 71, 4 * MiB), STOW_OK);
        swap_sink s = {h, url, 0, 0, new_sizes[i]};
        stow_httpc_request r;
        memset(&r, 0, sizeof(r));
        r.url = url;
        r.sink = swap_sink_fn;
        r.sink_ud = &s;
        int rc = stow_httpc_get(h, &r, NULL, &err);
        CHECK_INT(rc, STOW_ECORRUPT);
        CHECK(strstr(err.msg, "changed") != NULL);
        if (i == 1)
            CHECK(strstr(err.msg, "If-Match") != NULL);
        fprintf(stderr, "  (expected) %s\n", err.msg);
        CHECK(s.bytes < 4 * MiB);
    }
    stow_httpc_free(h);
}

/* ------------------------------------------------------------------ a stalled store */

/* The defaults keep a stalled store from costing more than about a minute. */
static void test_stall_defaults(void)
{
    stow_httpc_config cfg;
    stow_httpc_config_init(&cfg, NULL);
    CHECK(cfg.deadline_ms > 0 && cfg.deadline_ms <= 90000);
    CHECK(cfg.low_speed_limit > 0);
    CHECK(cfg.low_speed_timeout_s > 0 && cfg.low_speed_timeout_s * 1000 < cfg.deadline_ms);
    stow_backend_opts o;
    memset(&o, 0, sizeof(o));
    o.max_retries = -1;
    o.deadline_s = 7;
    o.low_speed_limit = 4096;
    o.low_speed_timeout_s = 3;
    stow_httpc_config_init(&cfg, &o);
    CHECK_INT(cfg.deadline_ms, 7000);
    CHECK_INT(cfg.low_speed_limit, 4096);
    CHECK_INT(cfg.low_speed_timeout_s, 3);
}

/* A GET whose answer stops after its head: the operation, retries included, gives up at the
 * deadline with STOW_ETIMEOUT and says how long it waited. */
static void test_stall(void)
{
    stow_httpc_config cfg;
    stow_httpc_config_init(&cfg, NULL);
    cfg.parallel = 1;
    cfg.retry_base_ms = 10;
    cfg.low_speed_timeout_s = 1;
    cfg.deadline_ms = 2500;
    stow_httpc *h = NULL;
    stow_error err;
    CHECK_INT(stow_httpc_new(&h, &cfg, &err), STOW_OK);
    char url[1024];
    url_for(url, sizeof(url), NULL, "stall/x.bin");
    CHECK_INT(put_generated(h, url, 5, 512 * KiB), STOW_OK);
    url_for(url, sizeof(url), "stallall/1000", "stall/x.bin");
    fx_mem_sink m = {malloc(512 * KiB), 0, 512 * KiB};
    stow_httpc_request r;
    memset(&r, 0, sizeof(r));
    r.url = url;
    r.sink = fx_mem_sink_fn;
    r.sink_ud = &m;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = stow_httpc_get(h, &r, NULL, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000L + (t1.tv_nsec - t0.tv_nsec) / 1000000L;
    CHECK_INT(rc, STOW_ETIMEOUT);
    CHECK(strstr(err.msg, "store stalled: no progress for ") != NULL);
    CHECK(strstr(err.msg, "gave up after ") != NULL);
    fprintf(stderr, "  (expected, %ld ms) %s\n", ms, err.msg);
    CHECK(ms >= 2000 && ms < 6000);
    free(m.buf);
    stow_httpc_free(h);
}

/* ------------------------------------------------------------------ other methods */

typedef struct echo_log {
    char echo_hdr[128];
    int resets; /* prepare calls: a collector resets its buffer there */
    fx_mem_sink *m;
} echo_log;

static void echo_hdr_fn(void *ud, const char *name, const char *value)
{
    echo_log *l = ud;
    if (strcasecmp(name, "X-Echo-Test") == 0)
        snprintf(l->echo_hdr, sizeof(l->echo_hdr), "%s", value);
}

static int echo_prep(void *ud, const stow_httpc_attempt *att, struct curl_slist **headers,
                     stow_error *err)
{
    echo_log *l = ud;
    l->resets++;
    l->m->len = 0;
    char line[64];
    snprintf(line, sizeof(line), "X-Test: %s-%d", att->method, att->attempt);
    struct curl_slist *n = curl_slist_append(*headers, line);
    if (n == NULL)
        return stow_error_set(err, STOW_ERR, "oom");
    *headers = n;
    return STOW_OK;
}

static void test_methods(void)
{
    stow_httpc *h = new_client(1, 8 * MiB, 2);
    char url[1024];
    stow_error err;
    stow_httpc_result res;
    unsigned char buf[4096];
    fx_mem_sink m = {buf, 0, sizeof(buf) - 1};
    echo_log el;
    memset(&el, 0, sizeof(el));
    el.m = &m;

    /* POST with a buffer body (e.g. CompleteMultipartUpload): the answer's body reaches
     * the sink, headers added by prepare are sent, response headers are reported */
    url_for(url, sizeof(url), "echo", "m/post");
    stow_httpc_request r;
    memset(&r, 0, sizeof(r));
    r.method = "POST";
    r.url = url;
    r.body_type = STOW_HTTPC_BODY_BUFFER;
    r.body = "<Complete/>";
    r.body_len = 11;
    r.sink = fx_mem_sink_fn;
    r.sink_ud = &m;
    r.prepare = echo_prep;
    r.on_header = echo_hdr_fn;
    r.ud = &el;
    CHECK_INT(stow_httpc_perform(h, &r, &res, &err), STOW_OK);
    CHECK_INT(res.status, 200);
    buf[m.len] = '\0';
    CHECK(strstr((char *)buf, "POST /anon/") == (char *)buf);
    CHECK(strstr((char *)buf, "/m/post\n<Complete/>") != NULL);
    CHECK_STR(el.echo_hdr, "POST-1");

    /* POST without a body (e.g. CreateMultipartUpload) */
    url_for(url, sizeof(url), "echo", "m/post-empty");
    r.body_type = STOW_HTTPC_BODY_NONE;
    r.body = NULL;
    r.body_len = 0;
    CHECK_INT(stow_httpc_perform(h, &r, &res, &err), STOW_OK);
    buf[m.len] = '\0';
    CHECK(strstr((char *)buf, "POST /anon/") == (char *)buf);
    CHECK(strstr((char *)buf, "/m/post-empty\n") != NULL && buf[m.len - 1] == '\n');

    /* DELETE, PUT of an empty buffer */
    url_for(url, sizeof(url), "echo", "m/del");
    r.method = "DELETE";
    CHECK_INT(stow_httpc_perform(h, &r, &res, &err), STOW_OK);
    buf[m.len] = '\0';
    CHECK(strstr((char *)buf, "DELETE /anon/") == (char *)buf);
    CHECK_STR(el.echo_hdr, "DELETE-1");
    r.method = "PUT";
    r.body_type = STOW_HTTPC_BODY_BUFFER;
    r.body = "";
    CHECK_INT(stow_httpc_perform(h, &r, &res, &err), STOW_OK);
    buf[m.len] = '\0';
    CHECK(strstr((char *)buf, "PUT /anon/") == (char *)buf);

    /* a GET of dynamic content (no_resume): after a drop, the whole body comes again
     * without a Range, and the collector reset in prepare sees it once */
    char direct[1024];
    url_for(direct, sizeof(direct), NULL, "m/listing.xml");
    CHECK_INT(put_generated(h, direct, 91, 3000), STOW_OK);
    url_for(url, sizeof(url), "cut/1000", "m/listing.xml");
    memset(&el, 0, sizeof(el));
    el.m = &m;
    memset(&r, 0, sizeof(r));
    r.method = "GET";
    r.url = url;
    r.no_resume = 1;
    r.sink = fx_mem_sink_fn;
    r.sink_ud = &m;
    r.prepare = echo_prep;
    r.ud = &el;
    CHECK_INT(stow_httpc_perform(h, &r, &res, &err), STOW_OK);
    CHECK_INT(el.resets, 2);
    CHECK_INT(m.len, 3000);
    unsigned char want[3000];
    fx_fill(91, 0, want, sizeof(want));
    CHECK(memcmp(buf, want, sizeof(want)) == 0);
    CHECK_INT(fx_proxy_log_count("m/listing.xml range=-", NULL), 2);
    stow_httpc_free(h);
}

int main(int argc, char **argv)
{
    fx_require_servers(argc, argv);
    if (getenv("STOW_TEST_DEBUG"))
        stow_log_set_level(STOW_LOG_DEBUG);
    snprintf(nginx_base, sizeof(nginx_base), "%s/anon/%s", fx_env("STOW_TEST_NGINX_URL"),
             fx_run_id());
    snprintf(proxy_root, sizeof(proxy_root), "%s", fx_env("STOW_TEST_PROXY_URL"));
    test_map_status();
    test_prepare();
    test_error_hook();
    test_headers_head();
    test_retried_bodies();
    test_object_changed();
    test_methods();
    test_stall_defaults();
    test_stall();
    TEST_DONE();
}
