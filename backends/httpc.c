/* Shared libcurl transport: configuration, the pool of easy handles, status mapping and
 * the retry loop. One attempt is in httpc_attempt.c, the parallel ranged GET in httpc_get.c,
 * the streamed upload in httpc_put.c. See httpc.h. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cancel.h"
#include "httpc_int.h"
#include "log.h"
#include "util.h"

/* ---------------------------------------------------------------- small helpers */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_OK;

static void global_init(void) { global_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

/* splitmix64 over a shared counter seeded by the clock: only used for backoff jitter. */
static uint64_t jitter_random(void)
{
    static _Atomic uint64_t state;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t z = atomic_fetch_add(&state, 0x9E3779B97F4A7C15ull) ^
                 ((uint64_t)ts.tv_nsec * 0xBF58476D1CE4E5B9ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

char *httpc_dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

void httpc_free_strv(char **v)
{
    if (v == NULL)
        return;
    for (size_t i = 0; v[i] != NULL; i++)
        free(v[i]);
    free(v);
}

/* Copies a NULL-terminated string list; *out stays NULL for an empty/NULL list. */
int httpc_dup_strv(char ***out, const char *const *v)
{
    *out = NULL;
    if (v == NULL || v[0] == NULL)
        return 0;
    size_t n = 0;
    while (v[n] != NULL)
        n++;
    char **c = calloc(n + 1, sizeof(*c));
    if (c == NULL)
        return -1;
    for (size_t i = 0; i < n; i++) {
        c[i] = strdup(v[i]);
        if (c[i] == NULL) {
            httpc_free_strv(c);
            return -1;
        }
    }
    *out = c;
    return 0;
}

/* Sleeps ms milliseconds, in slices, returning early (1) when *abort becomes set. */
static int sleep_ms(long ms, _Atomic int *abort_a, _Atomic int *abort_b)
{
    int64_t until = stow_now_ms() + ms;
    for (;;) {
        if ((abort_a && atomic_load(abort_a)) || (abort_b && atomic_load(abort_b)))
            return 1;
        int64_t left = until - stow_now_ms();
        if (left <= 0)
            return 0;
        if (left > SLEEP_SLICE_MS)
            left = SLEEP_SLICE_MS;
        struct timespec ts = {0, (long)left * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
}

/* Parses "<digits>" at *p into *out, advancing *p; 0 ok, -1 if no digits or overflow. */

/* ---------------------------------------------------------------- config, handle */

void stow_httpc_config_init(stow_httpc_config *cfg, const stow_backend_opts *opts)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->verify_tls = 1;
    cfg->connect_timeout_ms = 15000;
    cfg->low_speed_limit = 1024;
    cfg->low_speed_timeout_s = 30;
    cfg->max_retries = 5;
    cfg->retry_base_ms = 250;
    cfg->retry_max_ms = 20000;
    cfg->deadline_ms = 60000;
    cfg->parallel = 4;
    cfg->part_size = 8u * 1024u * 1024u;
    if (opts == NULL)
        return;
    cfg->verify_tls = opts->verify_tls == 0 ? 0 : 1;
    cfg->ca_bundle = opts->ca_bundle;
    if (opts->connect_timeout_ms > 0)
        cfg->connect_timeout_ms = opts->connect_timeout_ms;
    if (opts->low_speed_limit > 0)
        cfg->low_speed_limit = opts->low_speed_limit;
    if (opts->low_speed_timeout_s > 0)
        cfg->low_speed_timeout_s = opts->low_speed_timeout_s;
    if (opts->deadline_s > 0)
        cfg->deadline_ms = opts->deadline_s > LONG_MAX / 1000 ? LONG_MAX : opts->deadline_s * 1000;
    if (opts->max_retries >= 0)
        cfg->max_retries = opts->max_retries;
    if (opts->parallel > 0)
        cfg->parallel = opts->parallel;
}

static void share_lock(CURL *c, curl_lock_data data, curl_lock_access access, void *ud)
{
    (void)c;
    (void)access;
    stow_httpc *h = ud;
    if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
        pthread_mutex_lock(&h->share_locks[data]);
}

static void share_unlock(CURL *c, curl_lock_data data, void *ud)
{
    (void)c;
    stow_httpc *h = ud;
    if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
        pthread_mutex_unlock(&h->share_locks[data]);
}

int stow_httpc_new(stow_httpc **out, const stow_httpc_config *cfg, stow_error *err)
{
    *out = NULL;
    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK)
        return stow_error_set(err, STOW_ERR, "libcurl initialisation failed: %s",
                              curl_easy_strerror(global_rc));
    if (cfg->part_size == 0 || cfg->part_size > (uint64_t)1 << 30 || cfg->parallel < 1 ||
        cfg->parallel > 64 || cfg->max_retries < 0 || cfg->max_retries > 100)
        return stow_error_set(err, STOW_EUSAGE,
                              "http transport: part size must be 1 B..1 GiB, parallel 1..64, "
                              "retries 0..100");
    stow_httpc *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_init(&h->share_locks[i], NULL);
    pthread_mutex_init(&h->pool_lock, NULL);
    pthread_mutex_init(&h->ahead_lock, NULL);
    h->cfg = *cfg;
    char ua[64];
    snprintf(ua, sizeof(ua), "stowage/%s", STOW_VERSION);
    h->ca_bundle = httpc_dup_or_null(cfg->ca_bundle);
    h->userpwd = httpc_dup_or_null(cfg->userpwd);
    h->user_agent = strdup(cfg->user_agent ? cfg->user_agent : ua);
    if ((cfg->ca_bundle && !h->ca_bundle) || (cfg->userpwd && !h->userpwd) || !h->user_agent ||
        httpc_dup_strv(&h->headers, cfg->headers) != 0) {
        stow_httpc_free(h);
        return stow_error_set(err, STOW_ERR, "out of memory");
    }
    h->cfg.ca_bundle = h->ca_bundle;
    h->cfg.userpwd = h->userpwd;
    h->cfg.user_agent = h->user_agent;
    h->cfg.headers = (const char *const *)h->headers;
    h->share = curl_share_init();
    if (h->share == NULL) {
        stow_httpc_free(h);
        return stow_error_set(err, STOW_ERR, "curl_share_init failed");
    }
    curl_share_setopt(h->share, CURLSHOPT_LOCKFUNC, share_lock);
    curl_share_setopt(h->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
    curl_share_setopt(h->share, CURLSHOPT_USERDATA, h);
    curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    *out = h;
    return STOW_OK;
}

void stow_httpc_free(stow_httpc *h)
{
    if (h == NULL)
        return;
    for (int i = 0; i < h->npool; i++)
        curl_easy_cleanup(h->pool[i]);
    if (h->share)
        curl_share_cleanup(h->share);
    if (h->userpwd) {
        /* do not leave the password in freed memory */
        volatile char *p = h->userpwd;
        while (*p)
            *p++ = '\0';
    }
    free(h->userpwd);
    free(h->ca_bundle);
    free(h->user_agent);
    httpc_free_strv(h->headers);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_destroy(&h->share_locks[i]);
    pthread_mutex_destroy(&h->pool_lock);
    pthread_mutex_destroy(&h->ahead_lock);
    free(h);
}

/* Easy handles are pooled so connections (kept inside each handle) are reused. */
CURL *httpc_handle_take(stow_httpc *h)
{
    CURL *c = NULL;
    pthread_mutex_lock(&h->pool_lock);
    if (h->npool > 0)
        c = h->pool[--h->npool];
    pthread_mutex_unlock(&h->pool_lock);
    return c ? c : curl_easy_init();
}

void httpc_handle_give(stow_httpc *h, CURL *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&h->pool_lock);
    if (h->npool < POOL_MAX) {
        h->pool[h->npool++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&h->pool_lock);
    if (c)
        curl_easy_cleanup(c);
}

/* ---------------------------------------------------------------- status mapping */

int stow_httpc_map_status(long status, const char *method, const char *url_redacted, int *retry,
                          stow_error *err)
{
    const char *m = method ? method : "request";
    const char *u = url_redacted ? url_redacted : "";
    *retry = 0;
    if (status >= 200 && status < 300)
        return STOW_OK;
    switch (status) {
    case 404:
    case 410:
        return stow_error_set(err, STOW_ENOTFOUND, "%s %s: not found (HTTP %ld)", m, u, status);
    case 401:
        return stow_error_set(err, STOW_EAUTH,
                              "%s %s: authentication required or refused (HTTP 401); check the "
                              "credentials (bearer token variable, URL user, .netrc)",
                              m, u);
    case 403:
        return stow_error_set(err, STOW_EAUTH,
                              "%s %s: access denied (HTTP 403); the credentials are not allowed "
                              "to do this",
                              m, u);
    case 407:
        return stow_error_set(err, STOW_EAUTH, "%s %s: proxy authentication required (HTTP 407)", m,
                              u);
    case 408:
        *retry = 1;
        return stow_error_set(err, STOW_ETIMEOUT,
                              "%s %s: the server timed out the request "
                              "(HTTP 408)",
                              m, u);
    case 409:
        return stow_error_set(err, STOW_ERR,
                              "%s %s: conflict (HTTP 409); the server refused the write, e.g. a "
                              "parent path is a file or writes are not allowed here",
                              m, u);
    case 412:
        return stow_error_set(err, STOW_EEXIST,
                              "%s %s: precondition failed (HTTP 412); the object exists or "
                              "changed",
                              m, u);
    case 413:
        return stow_error_set(err, STOW_ERR,
                              "%s %s: object too large for the server (HTTP 413 Payload Too "
                              "Large); raise the server's body size limit (nginx: "
                              "client_max_body_size)",
                              m, u);
    case 416:
        return stow_error_set(err, STOW_ERR,
                              "%s %s: requested range not satisfiable (HTTP 416); the object is "
                              "shorter than expected",
                              m, u);
    case 429:
        *retry = 1;
        return stow_error_set(err, STOW_ERR, "%s %s: rate limited by the server (HTTP 429)", m, u);
    case 507:
        return stow_error_set(err, STOW_ERR,
                              "%s %s: the server is out of storage space (HTTP 507 Insufficient "
                              "Storage)",
                              m, u);
    default: break;
    }
    if (status >= 500 && status < 600) {
        *retry = 1;
        return stow_error_set(err, STOW_ERR, "%s %s: server error (HTTP %ld)", m, u, status);
    }
    if (status >= 300 && status < 400)
        return stow_error_set(err, STOW_ERR,
                              "%s %s: unexpected redirect (HTTP %ld); redirects are not followed, "
                              "use the final URL",
                              m, u, status);
    if (status == 0)
        return stow_error_set(err, STOW_ERR, "%s %s: no HTTP answer", m, u);
    return stow_error_set(err, STOW_ERR, "%s %s: unexpected HTTP status %ld", m, u, status);
}

static void fill_result(xfer *x, stow_httpc_result *res)
{
    if (res == NULL)
        return;
    memset(res, 0, sizeof(*res));
    res->status = x->status;
    res->content_length = -1;
    res->total_size = x->total_size;
    res->bytes = x->delivered;
    res->attempts = x->attempts;
    if (x->status == 0)
        return;
    curl_off_t cl = -1;
    if (curl_easy_getinfo(x->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) == CURLE_OK && cl >= 0)
        res->content_length = (int64_t)cl;
    curl_off_t ft = -1;
    if (curl_easy_getinfo(x->curl, CURLINFO_FILETIME_T, &ft) == CURLE_OK && ft > 0)
        res->last_modified = (int64_t)ft;
    httpc_copy_etag(res->etag, httpc_header_value(x->curl, "ETag"));
    if (res->total_size < 0 && !x->is_get && strcmp(x->method, "HEAD") == 0)
        res->total_size = res->content_length;
}

/* Calls on_header for the headers of the final answer. */
static void report_headers(xfer *x)
{
    if (x->req->on_header == NULL || x->curl == NULL || x->no_headers)
        return;
    struct curl_header *prev = NULL, *hh;
    while ((hh = curl_easy_nextheader(x->curl, CURLH_HEADER, -1, prev)) != NULL) {
        x->req->on_header(x->req->ud, hh->name, hh->value);
        prev = hh;
    }
}

/* Appends text to err's message. */
void httpc_error_append(stow_error *err, const char *fmt, ...) STOW_PRINTF(2, 3);
void httpc_error_append(stow_error *err, const char *fmt, ...)
{
    size_t n = strnlen(err->msg, sizeof(err->msg));
    if (n + 1 >= sizeof(err->msg))
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg + n, sizeof(err->msg) - n, fmt, ap);
    va_end(ap);
}

/* Ends err for an operation that ran out of time without progress. */
static void stall_message(xfer *x, stow_error *e)
{
    int64_t now = stow_now_ms();
    e->code = STOW_ETIMEOUT;
    httpc_error_append(e,
                       " (store stalled: no progress for %" PRId64 " s, gave up after %" PRId64
                       " s and %d attempt%s)",
                       (now - x->t_progress + 500) / 1000, (now - x->t0 + 500) / 1000, x->attempts,
                       x->attempts == 1 ? "" : "s");
}

/* The retry loop around run_attempt. The outcome goes to err (which a failing sink may
 * have filled itself, see backend.h). */
int httpc_run_xfer(xfer *x, stow_httpc_result *res, stow_error *err)
{
    stow_httpc_config *cfg = &x->h->cfg;
    int64_t t0 = stow_now_ms();
    x->t0 = t0;
    x->t_progress = t0;
    int no_progress = 0;
    int resumes = 0;
    int rc = STOW_ERR;
    stow_error e;
    stow_error_clear(&e);
    if (err)
        stow_error_clear(err);
    x->user_err = err;
    stow_redact_url(x->url_red, sizeof(x->url_red), x->req->url);
    x->curl = httpc_handle_take(x->h);
    if (x->curl == NULL) {
        fill_result(x, res);
        return stow_error_set(err, STOW_ERR, "curl_easy_init failed");
    }
    for (;;) {
        x->attempt++;
        x->attempts++;
        uint64_t before = x->delivered;
        long retry_after = -1;
        stow_error_clear(&e);
        outcome o = httpc_run_attempt(x, &retry_after, &e);
        if (o == OUT_OK) {
            rc = STOW_OK;
            stow_error_clear(&e);
            break;
        }
        if (e.code == STOW_OK)
            e.code = STOW_ERR;
        rc = e.code;
        if (o == OUT_FINAL) {
            if (x->deadline_hit)
                stall_message(x, &e);
            break;
        }
        if (httpc_aborted(x) && stow_cancel_requested()) {
            rc = stow_error_set(&e, STOW_ERR, "%s %s: interrupted by signal %d", x->method,
                                x->url_red, stow_cancel_requested());
            break;
        }
        if (x->is_get && x->delivered > before) {
            no_progress = 0;
            resumes++;
        } else {
            no_progress++;
        }
        int limit = cfg->max_retries;
        if (x->status == 0 && httpc_is_connect_error(x->last_rc) && limit > CONNECT_RETRIES_MAX)
            limit = CONNECT_RETRIES_MAX;
        if (x->deadline_hit || stow_now_ms() - x->t_progress > cfg->deadline_ms) {
            stall_message(x, &e);
            break;
        }
        if (no_progress > limit || resumes > MAX_RESUMES) {
            if (x->attempts > 1)
                httpc_error_append(&e, " (gave up after %d attempts)", x->attempts);
            break;
        }
        if (x->pipe && httpc_upipe_rewind(x->pipe) != 0) {
            httpc_error_append(&e,
                               "; not retried: %" PRIu64 " bytes of the streamed body were already "
                               "sent and are no longer buffered",
                               x->pipe->rpos);
            break;
        }
        long ceiling = cfg->retry_base_ms;
        for (int i = 1; i < no_progress && ceiling < cfg->retry_max_ms; i++)
            ceiling *= 2;
        if (ceiling > cfg->retry_max_ms)
            ceiling = cfg->retry_max_ms;
        long delay = no_progress == 0 ? 0 : (long)(jitter_random() % (uint64_t)(ceiling + 1));
        if (retry_after > delay)
            delay = retry_after < cfg->retry_max_ms ? retry_after : cfg->retry_max_ms;
        int64_t left = x->t_progress + cfg->deadline_ms - stow_now_ms();
        if (delay >= left) {
            /* the wait alone would pass the deadline */
            stall_message(x, &e);
            break;
        }
        stow_warn("attempt %d failed: %s; retrying in %ld ms%s", x->attempts, e.msg, delay,
                  x->is_get && x->delivered > 0 ? " with a range request" : "");
        if (sleep_ms(delay, x->abort_flag, x->pipe ? &x->pipe->abort : NULL)) {
            rc = stow_error_set(&e, STOW_ERR, "%s %s: aborted", x->method, x->url_red);
            break;
        }
    }
    fill_result(x, res);
    if (rc == STOW_OK)
        report_headers(x);
    stow_debug("%s %s -> %ld, %" PRIu64 " bytes, %d attempt%s, %" PRId64 " ms%s%s", x->method,
               x->url_red, x->status, x->delivered, x->attempts, x->attempts == 1 ? "" : "s",
               stow_now_ms() - t0, rc == STOW_OK ? "" : ": ",
               rc == STOW_OK ? "" : stow_error_name(rc));
    httpc_handle_give(x->h, x->curl);
    x->curl = NULL;
    free(x->errbody);
    x->errbody = NULL;
    if (err)
        *err = e;
    return rc;
}

void httpc_xfer_init(xfer *x, stow_httpc *h, const stow_httpc_request *req, const char *method)
{
    memset(x, 0, sizeof(*x));
    x->h = h;
    x->req = req;
    x->method = method;
    x->want_end = UINT64_MAX;
    x->expect_total = -1;
    x->total_size = -1;
    x->sink = req->sink;
    x->sink_ud = req->sink_ud;
}

/* Sets up the GET range of x from offset/length. */
void httpc_xfer_range(xfer *x, uint64_t offset, uint64_t length)
{
    x->is_get = 1;
    x->want_start = offset;
    x->want_end = UINT64_MAX;
    if (length > 0)
        x->want_end = length > UINT64_MAX - offset ? UINT64_MAX : offset + length;
}

int httpc_check_request(const stow_httpc_request *req, stow_error *err)
{
    if (req == NULL || req->url == NULL)
        return stow_error_set(err, STOW_EUSAGE, "http request without a URL");
    if (req->body_type == STOW_HTTPC_BODY_BUFFER && req->body == NULL && req->body_len > 0)
        return stow_error_set(err, STOW_EUSAGE, "http request body missing");
    return STOW_OK;
}

int stow_httpc_perform(stow_httpc *h, const stow_httpc_request *req, stow_httpc_result *res,
                       stow_error *err)
{
    if (res)
        memset(res, 0, sizeof(*res));
    int rc = httpc_check_request(req, err);
    if (rc != STOW_OK)
        return rc;
    xfer x;
    httpc_xfer_init(&x, h, req, req->method ? req->method : "GET");
    if (strcmp(x.method, "GET") == 0 && !req->no_resume)
        httpc_xfer_range(&x, req->offset, req->length);
    return httpc_run_xfer(&x, res, err);
}

int stow_httpc_collect(void *collector, const void *data, size_t len)
{
    stow_httpc_collector *c = collector;
    if (stow_buf_add(&c->buf, data, len, NULL) != STOW_OK) {
        c->overflow = 1;
        return -1; /* aborts the transfer */
    }
    return 0;
}

void stow_httpc_collect_reset(stow_httpc_collector *c)
{
    stow_buf_reset(&c->buf);
    c->overflow = 0;
}
