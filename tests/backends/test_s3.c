/* Tests for backends/s3.c: addressing and part sizing (pure), then the backend against a
 * real s3rver started through tests/integration/with_s3.sh (s3_fixture.h): round trips,
 * misses, ranges and parallel GETs, empty objects, multipart boundaries, put_abort,
 * ListObjectsV2 pagination past 1000 keys, early stop, a missing bucket, and the memory budget
 * of uploads running at once. The
 * authentication side (signatures verified) is in test_s3_moto.c. */
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "log.h"
#include "s3.h"
#include "s3_fixture.h"
#include "test.h"

#define MIB (1024u * 1024u)

/* ---------------------------------------------------------------- addressing */

static void test_location(void)
{
    stow_s3_location l;
    stow_error err;
    unsetenv("AWS_REGION");
    unsetenv("AWS_DEFAULT_REGION");

    CHECK_INT(stow_s3_location_parse(&l, "s3://my-bucket", NULL, NULL, -1, &err), STOW_OK);
    CHECK_STR(l.bucket, "my-bucket");
    CHECK_STR(l.prefix, "");
    CHECK_STR(l.region, "us-east-1");
    CHECK_STR(l.origin, "https://my-bucket.s3.us-east-1.amazonaws.com");
    CHECK_STR(l.host, "my-bucket.s3.us-east-1.amazonaws.com");
    CHECK_STR(l.base_path, "");
    CHECK_INT(l.path_style, 0);

    /* dots break TLS for virtual hosts: path-style in auto mode */
    CHECK_INT(stow_s3_location_parse(&l, "s3://my.bucket/ci/cache/", NULL, "eu-west-1", -1, &err),
              STOW_OK);
    CHECK_STR(l.origin, "https://s3.eu-west-1.amazonaws.com");
    CHECK_STR(l.base_path, "/my.bucket");
    CHECK_STR(l.prefix, "ci/cache/");
    CHECK_INT(l.path_style, 1);
    CHECK_INT(stow_s3_location_parse(&l, "s3://bucket", NULL, NULL, 1, &err), STOW_OK);
    CHECK_STR(l.origin, "https://s3.us-east-1.amazonaws.com");
    CHECK_STR(l.base_path, "/bucket");

    /* region: argument, then AWS_REGION, then AWS_DEFAULT_REGION */
    setenv("AWS_DEFAULT_REGION", "ap-south-1", 1);
    CHECK_INT(stow_s3_location_parse(&l, "s3://bucket", NULL, NULL, -1, &err), STOW_OK);
    CHECK_STR(l.region, "ap-south-1");
    setenv("AWS_REGION", "eu-central-1", 1);
    CHECK_INT(stow_s3_location_parse(&l, "s3://bucket", NULL, NULL, -1, &err), STOW_OK);
    CHECK_STR(l.host, "bucket.s3.eu-central-1.amazonaws.com");
    CHECK_INT(stow_s3_location_parse(&l, "s3://bucket", NULL, "us-west-2", -1, &err), STOW_OK);
    CHECK_STR(l.region, "us-west-2");
    unsetenv("AWS_REGION");
    unsetenv("AWS_DEFAULT_REGION");
    CHECK_INT(stow_s3_location_parse(&l, "s3://bucket", NULL, "cn-north-1", -1, &err), STOW_OK);
    CHECK_STR(l.host, "bucket.s3.cn-north-1.amazonaws.com.cn");

    /* endpoints: path-style unless told otherwise; default ports dropped; paths kept */
    CHECK_INT(stow_s3_location_parse(&l, "s3://b/p", "http://127.0.0.1:9000", NULL, -1, &err),
              STOW_OK);
    CHECK_STR(l.origin, "http://127.0.0.1:9000");
    CHECK_STR(l.host, "127.0.0.1:9000");
    CHECK_STR(l.base_path, "/b");
    CHECK_STR(l.prefix, "p/");
    CHECK_INT(stow_s3_location_parse(&l, "s3://b", "https://minio.example:443/", NULL, 0, &err),
              STOW_OK);
    CHECK_STR(l.origin, "https://b.minio.example");
    CHECK_STR(l.host, "b.minio.example");
    CHECK_STR(l.base_path, "");
    CHECK_INT(stow_s3_location_parse(&l, "s3://b", "HTTP://gw.example:8080/s3/%7estore/", NULL, -1,
                                     &err),
              STOW_OK);
    CHECK_STR(l.origin, "http://gw.example:8080");
    CHECK_STR(l.base_path, "/s3/%7Estore/b");
    CHECK_INT(stow_s3_location_parse(&l, "s3://b", "http://[::1]:9000", NULL, -1, &err), STOW_OK);
    CHECK_STR(l.host, "[::1]:9000");

    /* the prefix is %-decoded; a literal '+' is a plus */
    CHECK_INT(stow_s3_location_parse(&l, "s3://b/my%20cache/x+y%2Bz%C3%BC//", NULL, NULL, -1, &err),
              STOW_OK);
    CHECK_STR(l.prefix, "my cache/x+y+z\xc3\xbc/");

    /* refused, as usage errors */
    static const char *const bad_urls[] = {
        "s3://",        "s3:///prefix", "s3://user@bucket/p", "s3://bucket:9000/p",
        "s3://b/p?x=1", "s3://b/p#f",   "s3://b/a//b",        "s3://b/a/../b",
        "s3://b/./a",   "s3://b/%zz",   "s3://b/a%0ab",       "http://b/p",
        "s3://b/%",     NULL,
    };
    for (int i = 0; bad_urls[i]; i++) {
        stow_error_clear(&err);
        int rc = stow_s3_location_parse(&l, bad_urls[i], NULL, NULL, -1, &err);
        if (rc != STOW_EUSAGE)
            fprintf(stderr, "accepted %s\n", bad_urls[i]);
        CHECK_INT(rc, STOW_EUSAGE);
        CHECK(err.msg[0] != '\0');
    }
    static const char *const bad_endpoints[] = {"127.0.0.1:9000", "ftp://h",      "http://u:p@h",
                                                "http://h/?q",    "http://h/a b", NULL};
    for (int i = 0; bad_endpoints[i]; i++)
        CHECK_INT(stow_s3_location_parse(&l, "s3://b", bad_endpoints[i], NULL, -1, &err),
                  STOW_EUSAGE);
    CHECK_INT(stow_s3_location_parse(&l, "s3://b", "http://u:secret@h", NULL, -1, &err),
              STOW_EUSAGE);
    CHECK(strstr(err.msg, "secret") == NULL);
    CHECK_INT(stow_s3_location_parse(&l, "s3://b", NULL, "us east", -1, &err), STOW_EUSAGE);
}

static void test_part_size(void)
{
    const uint64_t base = STOW_S3_PART_DEFAULT;
    CHECK_INT(stow_s3_part_size(base, -1, 1), 8 * MIB);
    CHECK_INT(stow_s3_part_size(base, -1, 2000), 8 * MIB);
    CHECK_INT(stow_s3_part_size(base, -1, 2001), 16 * MIB);
    CHECK_INT(stow_s3_part_size(base, -1, 8001), 128 * MIB);
    CHECK_INT(stow_s3_part_size(base, -1, 10000), 128 * MIB);
    CHECK_INT(stow_s3_part_size(1, -1, 1), STOW_S3_PART_MIN); /* never below S3's minimum */
    /* unknown size: 10000 parts hold 484 GiB */
    uint64_t total = 0;
    for (unsigned p = 1; p <= STOW_S3_MAX_PARTS; p++)
        total += stow_s3_part_size(base, -1, p);
    CHECK_INT(total, (uint64_t)496000 * MIB); /* 2000 x (8+16+32+64+128) MiB = 484.4 GiB */
    /* known size: the base grows so that the size fits */
    CHECK_INT(stow_s3_part_size(base, 1000 * MIB, 1), 8 * MIB);
    int64_t hint = (int64_t)100 * 1024 * MIB;
    uint64_t s = stow_s3_part_size(base, hint, 1);
    CHECK(s * STOW_S3_MAX_PARTS >= (uint64_t)hint && s % MIB == 0);
    CHECK_INT(s, 11 * MIB);
    /* capped at 5 GiB */
    CHECK_INT(stow_s3_part_size(base, (int64_t)1 << 50, 1), STOW_S3_PART_MAX);
    CHECK_INT(stow_s3_part_size((uint64_t)4 * 1024 * MIB, -1, 9000), STOW_S3_PART_MAX);
}

/* The part buffers of a put: one being filled plus the parts uploading fit the budget, parts
 * never below S3's minimum nor above the default, and connections go before parts shrink below
 * the minimum. The old fixed plan (parallel + 1 parts of 8 MiB = 40 MiB a put) fails this. */
static void test_upload_plan(void)
{
    uint64_t part;
    int threads;
    stow_s3_upload_plan(&part, &threads, STOW_S3_UPLOAD_BUDGET, 4); /* the defaults */
    CHECK_INT(part, 5 * MIB);
    CHECK_INT(threads, 2);
    CHECK(part * (uint64_t)(threads + 1) <= STOW_S3_UPLOAD_BUDGET);
    CHECK(STOW_S3_UPLOAD_BUDGET <= 16 * MIB);
    stow_s3_upload_plan(&part, &threads, STOW_S3_UPLOAD_BUDGET, 1);
    CHECK_INT(part, 8 * MIB);
    CHECK_INT(threads, 1);
    stow_s3_upload_plan(&part, &threads, STOW_S3_UPLOAD_BUDGET, 64);
    CHECK_INT(part, STOW_S3_PART_MIN);
    CHECK_INT(threads, 2);
    stow_s3_upload_plan(&part, &threads, 1, 4); /* below one part: one part, one connection */
    CHECK_INT(part, STOW_S3_PART_MIN);
    CHECK_INT(threads, 1);
    stow_s3_upload_plan(&part, &threads, (uint64_t)1024 * MIB, 4); /* plenty: the old plan */
    CHECK_INT(part, STOW_S3_PART_DEFAULT);
    CHECK_INT(threads, 4);
    for (int par = 1; par <= 64; par++)
        for (uint64_t budget = 5 * MIB; budget <= 200 * MIB; budget += 3 * MIB) {
            stow_s3_upload_plan(&part, &threads, budget, par);
            CHECK(part >= STOW_S3_PART_MIN && part <= STOW_S3_PART_DEFAULT && part % MIB == 0);
            CHECK(threads >= 1 && threads <= par);
            CHECK(budget < 2 * STOW_S3_PART_MIN || part * (uint64_t)(threads + 1) <= budget);
        }
    /* 5 MiB parts still carry the largest layers: 10000 parts of a size-less upload hold
     * 2000 x (5+10+20+40+80) MiB = 302 GiB */
    uint64_t total = 0;
    for (unsigned p = 1; p <= STOW_S3_MAX_PARTS; p++)
        total += stow_s3_part_size(STOW_S3_PART_MIN, -1, p);
    CHECK_INT(total, (uint64_t)310000 * MIB);
}

/* ---------------------------------------------------------------- against s3rver */

static stow_backend *open_store(const char *prefix, stow_error *err)
{
    char url[512];
    snprintf(url, sizeof(url), "s3://%s/%s", getenv("S3_BUCKET"), prefix);
    stow_backend_opts o = {0};
    o.url = url;
    o.endpoint = getenv("S3_ENDPOINT");
    o.path_style = -1;
    o.verify_tls = 1;
    o.max_retries = 2;
    stow_backend *b = NULL;
    int rc = stow_backend_open(&b, &o, err);
    if (rc != STOW_OK)
        fprintf(stderr, "open %s: %s\n", url, err->msg);
    return b;
}

/* Uploads len bytes of the seed stream in writes of chunk bytes. */
static int put_stream(stow_backend *b, const char *name, uint64_t seed, size_t len, size_t chunk,
                      int64_t hint, stow_error *err)
{
    stow_put *p = NULL;
    int rc = b->ops->put_begin(&p, b, name, hint, 0, err);
    if (rc != STOW_OK)
        return rc;
    unsigned char *buf = malloc(chunk);
    if (buf == NULL) {
        b->ops->put_abort(p);
        return STOW_ERR;
    }
    for (size_t off = 0; off < len; off += chunk) {
        size_t n = len - off < chunk ? len - off : chunk;
        s3fx_fill(buf, n, seed, off);
        if ((rc = b->ops->put_write(p, buf, n, err)) != STOW_OK) {
            free(buf);
            b->ops->put_abort(p);
            return rc;
        }
    }
    free(buf);
    return b->ops->put_commit(p, err);
}

static int get_check(stow_backend *b, const char *name, uint64_t seed, uint64_t off, uint64_t len,
                     uint64_t expect, stow_error *err)
{
    s3fx_check c = {seed, off, 0, 0};
    int rc = b->ops->get(b, name, off, len, s3fx_check_sink, &c, err);
    if (rc != STOW_OK)
        return rc;
    if (c.bad || c.got != expect) {
        fprintf(stderr,
                "get %s [%" PRIu64 ", +%" PRIu64 "): got %" PRIu64 " bytes (want %" PRIu64 ")%s\n",
                name, off, len, c.got, expect, c.bad ? ", wrong content" : "");
        return STOW_ECORRUPT;
    }
    return STOW_OK;
}

static void test_objects(void)
{
    stow_error err;
    stow_backend *b = open_store("unit%20test", &err);
    CHECK(b != NULL);
    if (b == NULL)
        return;
    stow_object_info info;
    char *buf = NULL;
    size_t len = 0;

    CHECK_INT(stow_backend_put_buffer(b, "refs/main/k", "hello", 5, 0, &err), STOW_OK);
    CHECK_INT(stow_backend_get_buffer(&buf, &len, b, "refs/main/k", 100, &err), STOW_OK);
    CHECK(buf && len == 5 && memcmp(buf, "hello", 5) == 0);
    free(buf);
    CHECK_INT(stow_backend_head(b, "refs/main/k", &info, &err), STOW_OK);
    CHECK_INT(info.size, 5);
    CHECK(info.mtime > 1600000000);

    /* misses */
    CHECK_INT(stow_backend_get_buffer(&buf, &len, b, "refs/main/none", 100, &err), STOW_ENOTFOUND);
    CHECK(strstr(err.msg, "NoSuchKey") != NULL);
    CHECK_INT(stow_backend_head(b, "refs/main/none", &info, &err), STOW_ENOTFOUND);
    CHECK_INT(stow_backend_del(b, "refs/main/k", &err), STOW_OK);
    CHECK_INT(stow_backend_head(b, "refs/main/k", &info, &err), STOW_ENOTFOUND);
    CHECK_INT(stow_backend_del(b, "refs/main/k", &err), STOW_OK); /* missing = ok */
    CHECK_INT(stow_backend_head(b, "../x", &info, &err), STOW_EUSAGE);

    /* empty objects (reading them back is in test_s3_moto.c: s3rver answers a range on an
     * empty object with a broken 206 "bytes 0-0/0" promising one byte it never sends) */
    CHECK_INT(stow_backend_put_buffer(b, "empty", "", 0, 0, &err), STOW_OK);
    CHECK_INT(stow_backend_head(b, "empty", &info, &err), STOW_OK);
    CHECK_INT(info.size, 0);
    CHECK_INT(put_stream(b, "empty2", 1, 0, 1, -1, &err), STOW_OK);
    CHECK_INT(stow_backend_head(b, "empty2", &info, &err), STOW_OK);
    CHECK_INT(info.size, 0);

    /* sizes around the part boundary, size unknown: single PUT up to 8 MiB, then multipart */
    static const size_t sizes[] = {8 * MIB - 1, 8 * MIB, 8 * MIB + 1, 16 * MIB + 12345, 0};
    for (int i = 0; sizes[i]; i++) {
        char name[64];
        snprintf(name, sizeof(name), "layers/size-%zu.tar.zst", sizes[i]);
        int rc = put_stream(b, name, 100 + (uint64_t)i, sizes[i], 100000, -1, &err);
        if (rc != STOW_OK)
            fprintf(stderr, "put %s: %s\n", name, err.msg);
        CHECK_INT(rc, STOW_OK);
        CHECK_INT(stow_backend_head(b, name, &info, &err), STOW_OK);
        CHECK_INT(info.size, sizes[i]);
        CHECK_INT(get_check(b, name, 100 + (uint64_t)i, 0, 0, sizes[i], &err), STOW_OK);
    }
    /* known size, one big write */
    CHECK_INT(put_stream(b, "layers/known", 7, 20 * MIB, 20 * MIB, 20 * MIB, &err), STOW_OK);
    CHECK_INT(get_check(b, "layers/known", 7, 0, 0, 20 * MIB, &err), STOW_OK);

    /* ranges: inside one part, across parts (parallel), open-ended, past the end */
    uint64_t bigsize = 16 * MIB + 12345; /* sizes[3], seed 103 */
    char big[64];
    snprintf(big, sizeof(big), "layers/size-%" PRIu64 ".tar.zst", bigsize);
    CHECK_INT(get_check(b, big, 103, 1000, 5000, 5000, &err), STOW_OK);
    CHECK_INT(get_check(b, big, 103, 3 * MIB + 7, 10 * MIB, 10 * MIB, &err), STOW_OK);
    CHECK_INT(get_check(b, big, 103, 9 * MIB, 0, bigsize - 9 * MIB, &err), STOW_OK);
    CHECK_INT(get_check(b, big, 103, bigsize - 10, 100, 10, &err), STOW_OK);

    /* put_abort in the middle of a multipart upload leaves no object */
    stow_put *p = NULL;
    CHECK_INT(b->ops->put_begin(&p, b, "layers/aborted", -1, 0, &err), STOW_OK);
    unsigned char *chunk = malloc(MIB);
    for (int i = 0; p && chunk && i < 20; i++) {
        s3fx_fill(chunk, MIB, 9, (uint64_t)i * MIB);
        CHECK_INT(b->ops->put_write(p, chunk, MIB, &err), STOW_OK);
    }
    free(chunk);
    b->ops->put_abort(p);
    CHECK_INT(stow_backend_head(b, "layers/aborted", &info, &err), STOW_ENOTFOUND);
    b->ops->put_abort(NULL);

    stow_backend_free(b);
}

typedef struct names {
    int n, stop_after;
    char last[256];
    int unordered;
} names;

static int collect(void *ud, const char *name, const stow_object_info *info)
{
    names *l = ud;
    (void)info;
    if (l->last[0] && strcmp(name, l->last) <= 0)
        l->unordered = 1;
    snprintf(l->last, sizeof(l->last), "%s", name);
    l->n++;
    return l->stop_after && l->n >= l->stop_after;
}

static void test_list(void)
{
    stow_error err;
    stow_backend *b = open_store("list/pfx", &err);
    CHECK(b != NULL);
    if (b == NULL)
        return;
    CHECK(stow_backend_can_list(b));
    /* more than one page (s3rver and AWS answer 1000 keys per page) */
    const int n = 1005;
    int failed = 0;
    for (int i = 0; i < n && !failed; i++) {
        char name[64];
        snprintf(name, sizeof(name), "manifests/default/k%04d.json", i);
        failed = stow_backend_put_buffer(b, name, "{}", 2, 0, &err) != STOW_OK;
    }
    CHECK(!failed);
    CHECK_INT(stow_backend_put_buffer(b, "refs/default/r", "x", 1, 0, &err), STOW_OK);
    CHECK_INT(stow_backend_put_buffer(b, "manifestsX", "x", 1, 0, &err), STOW_OK);

    names l = {0};
    CHECK_INT(stow_backend_list(b, "manifests/", collect, &l, &err), STOW_OK);
    CHECK_INT(l.n, n);
    CHECK(!l.unordered);
    CHECK_STR(l.last, "manifests/default/k1004.json");
    memset(&l, 0, sizeof(l));
    CHECK_INT(stow_backend_list(b, "", collect, &l, &err), STOW_OK);
    CHECK_INT(l.n, n + 2);
    memset(&l, 0, sizeof(l));
    l.stop_after = 3;
    CHECK_INT(stow_backend_list(b, "manifests/", collect, &l, &err), STOW_OK);
    CHECK_INT(l.n, 3);
    memset(&l, 0, sizeof(l));
    CHECK_INT(stow_backend_list(b, "refs/", collect, &l, &err), STOW_OK);
    CHECK_INT(l.n, 1);
    CHECK_STR(l.last, "refs/default/r");
    memset(&l, 0, sizeof(l));
    CHECK_INT(stow_backend_list(b, "nothing/", collect, &l, &err), STOW_OK);
    CHECK_INT(l.n, 0);
    stow_backend_free(b);

    /* a store one level up sees the keys with the longer names */
    b = open_store("list", &err);
    if (b != NULL) {
        memset(&l, 0, sizeof(l));
        CHECK_INT(stow_backend_list(b, "pfx/refs/", collect, &l, &err), STOW_OK);
        CHECK_INT(l.n, 1);
        CHECK_STR(l.last, "pfx/refs/default/r");
        stow_backend_free(b);
    }
}

static void test_missing_bucket(void)
{
    stow_error err;
    char url[128];
    snprintf(url, sizeof(url), "s3://no-such-bucket-%d/p", (int)getpid());
    stow_backend_opts o = {0};
    o.url = url;
    o.endpoint = getenv("S3_ENDPOINT");
    o.path_style = -1;
    o.verify_tls = 1;
    o.max_retries = 0;
    stow_backend *b = NULL;
    CHECK_INT(stow_backend_open(&b, &o, &err), STOW_OK);
    if (b == NULL)
        return;
    char *buf = NULL;
    CHECK_INT(stow_backend_get_buffer(&buf, NULL, b, "manifests/x.json", 100, &err), STOW_ERR);
    CHECK(strstr(err.msg, "does not exist") != NULL && strstr(err.msg, "NoSuchBucket") != NULL);
    CHECK_INT(stow_backend_put_buffer(b, "manifests/x.json", "{}", 2, 0, &err), STOW_ERR);
    CHECK(strstr(err.msg, "NoSuchBucket") != NULL);
    names l = {0};
    CHECK(stow_backend_list(b, "manifests/", collect, &l, &err) != STOW_OK);
    CHECK(strstr(err.msg, "NoSuchBucket") != NULL);
    stow_backend_free(b);
}

typedef struct {
    stow_backend *b;
    char name[64];
    uint64_t seed;
    size_t len;
    int rc;
    stow_error err;
} put_thread_arg;

static void *put_thread(void *ud)
{
    put_thread_arg *a = ud;
    a->rc = put_stream(a->b, a->name, a->seed, a->len, 100000, -1, &a->err);
    return NULL;
}

/* Three multipart uploads at once on one backend (a save packing layers side by side) hold
 * no more part buffers, together, than the budget; small objects take none. */
static void test_upload_budget(void)
{
    stow_error err;
    stow_backend *b = open_store("budget", &err);
    CHECK(b != NULL);
    if (b == NULL)
        return;
    char *small = calloc(1, 700000);
    CHECK(small != NULL);
    if (small)
        CHECK_INT(stow_backend_put_buffer(b, "manifests/m.json", small, 700000, 0, &err), STOW_OK);
    free(small);
    CHECK_INT(stow_s3_upload_mem_peak(b), 0);

    enum { N = 3 };
    put_thread_arg args[N];
    pthread_t tid[N];
    int started[N] = {0};
    for (int i = 0; i < N; i++) {
        args[i] = (put_thread_arg){.b = b, .seed = 100 + (uint64_t)i, .len = 23 * MIB + 12345u};
        snprintf(args[i].name, sizeof(args[i].name), "layers/l%d.tar.zst", i);
        started[i] = pthread_create(&tid[i], NULL, put_thread, &args[i]) == 0;
        CHECK(started[i]);
    }
    for (int i = 0; i < N; i++) {
        if (!started[i])
            continue;
        pthread_join(tid[i], NULL);
        CHECK_INT(args[i].rc, STOW_OK);
        if (args[i].rc != STOW_OK)
            fprintf(stderr, "put %s: %s\n", args[i].name, args[i].err.msg);
        CHECK_INT(get_check(b, args[i].name, args[i].seed, 0, 0, args[i].len, &err), STOW_OK);
    }
    uint64_t peak = stow_s3_upload_mem_peak(b);
    fprintf(stderr, "upload budget: peak %" PRIu64 " bytes of part buffers for %d uploads\n", peak,
            N);
    CHECK(peak >= STOW_S3_PART_MIN);
    CHECK(peak <= STOW_S3_UPLOAD_BUDGET);
    stow_backend_free(b);
}

int main(int argc, char **argv)
{
    if (getenv("STOW_TEST_DEBUG"))
        stow_log_set_level(STOW_LOG_DEBUG);
    test_location();
    test_part_size();
    test_upload_plan();
    if (stow_test_failures)
        TEST_DONE();
    s3fx_require_server(argc, argv, "s3rver");
    test_objects();
    test_list();
    test_missing_bucket();
    test_upload_budget();
    TEST_DONE();
}
