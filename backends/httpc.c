/* Shared libcurl transport: retries with backoff, resumed and parallel ranged GETs,
 * streamed uploads through a bounded pipe. See httpc.h. */
#include "httpc.h"

#include <errno.h>
#include <limits.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "util.h"

#define POOL_MAX 16
#define URL_RED_MAX 512
#define MAX_RESUMES 64        /* attempts that made progress, per request or part */
#define CONNECT_RETRIES_MAX 2 /* a refused or unresolvable store is retried at most this often */
#define CURL_BUF_SIZE (256L * 1024L)
#define HEADER_LINE_MAX 8192
#define SLEEP_SLICE_MS 20

#ifndef STOW_VERSION
#define STOW_VERSION "0"
#endif

struct stow_httpc {
    stow_httpc_config cfg; /* string members point at the copies below */
    char *ca_bundle;
    char *userpwd;
    char *user_agent;
    char **headers;
    CURLSH *share;
    pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];
    pthread_mutex_t pool_lock;
    CURL *pool[POOL_MAX];
    int npool;
};

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

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void free_strv(char **v)
{
    if (v == NULL)
        return;
    for (size_t i = 0; v[i] != NULL; i++)
        free(v[i]);
    free(v);
}

/* Copies a NULL-terminated string list; *out stays NULL for an empty/NULL list. */
static int dup_strv(char ***out, const char *const *v)
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
            free_strv(c);
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
static int parse_u64(const char **p, uint64_t *out)
{
    const char *s = *p;
    if (*s < '0' || *s > '9')
        return -1;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s)
        return -1;
    *out = (uint64_t)v;
    *p = end;
    return 0;
}

/* Content-Range: "bytes FIRST-LAST/TOTAL", "bytes FIRST-LAST/<star>" or
 * "bytes <star>/TOTAL" (the unsatisfied form).
 * first/last are UINT64_MAX for the unsatisfied form, total is -1 for "*". */
static int parse_content_range(const char *v, uint64_t *first, uint64_t *last, int64_t *total)
{
    while (*v == ' ' || *v == '\t')
        v++;
    if (strncmp(v, "bytes", 5) != 0)
        return -1;
    v += 5;
    if (*v != ' ' && *v != '\t')
        return -1;
    while (*v == ' ' || *v == '\t')
        v++;
    if (*v == '*') {
        *first = *last = UINT64_MAX;
        v++;
    } else {
        if (parse_u64(&v, first) != 0 || *v != '-')
            return -1;
        v++;
        if (parse_u64(&v, last) != 0 || *last < *first)
            return -1;
    }
    if (*v != '/')
        return -1;
    v++;
    if (*v == '*') {
        *total = -1;
        v++;
    } else {
        uint64_t t;
        if (parse_u64(&v, &t) != 0 || t > (uint64_t)INT64_MAX)
            return -1;
        *total = (int64_t)t;
    }
    while (*v == ' ' || *v == '\t')
        v++;
    if (*v != '\0')
        return -1;
    if (*total >= 0 && *first != UINT64_MAX && *last >= (uint64_t)*total)
        return -1;
    return 0;
}

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
    h->cfg = *cfg;
    char ua[64];
    snprintf(ua, sizeof(ua), "stowage/%s", STOW_VERSION);
    h->ca_bundle = dup_or_null(cfg->ca_bundle);
    h->userpwd = dup_or_null(cfg->userpwd);
    h->user_agent = strdup(cfg->user_agent ? cfg->user_agent : ua);
    if ((cfg->ca_bundle && !h->ca_bundle) || (cfg->userpwd && !h->userpwd) || !h->user_agent ||
        dup_strv(&h->headers, cfg->headers) != 0) {
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
    free_strv(h->headers);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_destroy(&h->share_locks[i]);
    pthread_mutex_destroy(&h->pool_lock);
    free(h);
}

/* Easy handles are pooled so connections (kept inside each handle) are reused. */
static CURL *handle_take(stow_httpc *h)
{
    CURL *c = NULL;
    pthread_mutex_lock(&h->pool_lock);
    if (h->npool > 0)
        c = h->pool[--h->npool];
    pthread_mutex_unlock(&h->pool_lock);
    return c ? c : curl_easy_init();
}

static void handle_give(stow_httpc *h, CURL *c)
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
        return stow_error_set(err, STOW_EAUTH, "%s %s: proxy authentication required (HTTP 407)",
                              m, u);
    case 408:
        *retry = 1;
        return stow_error_set(err, STOW_ETIMEOUT, "%s %s: the server timed out the request "
                              "(HTTP 408)", m, u);
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
        return stow_error_set(err, STOW_ERR, "%s %s: rate limited by the server (HTTP 429)", m,
                              u);
    case 507:
        return stow_error_set(err, STOW_ERR,
                              "%s %s: the server is out of storage space (HTTP 507 Insufficient "
                              "Storage)",
                              m, u);
    default:
        break;
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

/* ---------------------------------------------------------------- upload pipe */

/* A ring buffer holding stream bytes [tail, head); the reader is at rpos (tail <= rpos <=
 * head). The writer drops consumed bytes (tail = rpos) only when it needs room, so as long
 * as tail == 0 the whole body can be replayed for a retry. */
typedef struct upipe {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned char *ring;
    size_t cap;
    uint64_t tail, rpos, head;
    int64_t size;      /* declared size, -1 chunked */
    int closed;        /* writer is done */
    int finished;      /* upload thread is done */
    _Atomic int abort; /* put_abort */
} upipe;

static int upipe_init(upipe *p, size_t cap, int64_t size)
{
    memset(p, 0, sizeof(*p));
    p->ring = malloc(cap);
    if (p->ring == NULL)
        return -1;
    p->cap = cap;
    p->size = size;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    return 0;
}

static void upipe_destroy(upipe *p)
{
    if (p->ring == NULL)
        return;
    free(p->ring);
    p->ring = NULL;
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
}

/* Reader side (curl read callback). Returns bytes copied, 0 at the end, or
 * CURL_READFUNC_ABORT. For a declared size, the last byte is held back until the writer
 * closed the pipe, so an abort can never let the server complete the body. */
static size_t upipe_read(upipe *p, char *buf, size_t len)
{
    size_t n = 0;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        if (atomic_load(&p->abort)) {
            pthread_mutex_unlock(&p->lock);
            return CURL_READFUNC_ABORT;
        }
        uint64_t avail = p->head - p->rpos;
        if (p->size >= 0 && !p->closed && p->head == (uint64_t)p->size && avail > 0)
            avail--; /* hold back the final byte until commit */
        if (avail > 0) {
            n = avail < len ? (size_t)avail : len;
            break;
        }
        if (p->closed && p->rpos == p->head)
            break; /* end of body */
        pthread_cond_wait(&p->cond, &p->lock);
    }
    size_t done = 0;
    while (done < n) {
        size_t at = (size_t)(p->rpos % p->cap);
        size_t chunk = p->cap - at;
        if (chunk > n - done)
            chunk = n - done;
        memcpy(buf + done, p->ring + at, chunk);
        done += chunk;
        p->rpos += chunk;
    }
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    return n;
}

/* 0 if the reader could be moved back to the start of the body. */
static int upipe_rewind(upipe *p)
{
    int rc = -1;
    pthread_mutex_lock(&p->lock);
    if (p->tail == 0) {
        p->rpos = 0;
        rc = 0;
    }
    pthread_mutex_unlock(&p->lock);
    return rc;
}

/* ---------------------------------------------------------------- one request */

enum { MODE_UNDECIDED = 0, MODE_BODY, MODE_ERRBODY, MODE_DISCARD };

typedef enum { OUT_OK = 0, OUT_FINAL, OUT_RETRY } outcome;

typedef struct xfer {
    stow_httpc *h;
    const stow_httpc_request *req;
    const char *method;
    CURL *curl;
    char url_red[URL_RED_MAX];
    _Atomic int *abort_flag; /* parallel get: set when any part failed; may be NULL */

    /* GET state, across attempts. want_end is exclusive, UINT64_MAX while unknown. */
    int is_get;
    uint64_t want_start, want_end;
    uint64_t full_end;  /* part 0 of a parallel get: where to stop if the server sends 200 */
    uint64_t delivered; /* bytes handed to the sink */
    int64_t expect_total;
    char if_match[STOW_HTTPC_ETAG_MAX];
    void (*on_total)(void *ud, uint64_t total, const char *etag);
    void *total_ud;
    int total_reported;
    stow_sink_fn sink;
    void *sink_ud;

    /* body */
    upipe *pipe;
    size_t body_pos;

    /* per attempt */
    int attempt;
    int mode;
    long status;
    uint64_t skip;
    int got_all;
    int empty_ok;
    int sink_failed;
    int data_error;
    stow_error derr;
    char *errbody;
    size_t errbody_len;
    int errbody_trunc;
    char errbuf[CURL_ERROR_SIZE];

    /* stall deadline, across attempts: t_progress is the last time the operation moved
     * low_speed_limit bytes since the previous mark (mark_bytes of this attempt) */
    int64_t t0, t_progress;
    uint64_t mark_bytes;
    int deadline_hit;

    /* result */
    int no_headers; /* a parallel get's worker part: on_header is for part 0 only */
    CURLcode last_rc;
    stow_error *user_err; /* the caller's err: a sink may have set it before failing */

    /* result */
    int attempts;
    int64_t total_size;
} xfer;

static int aborted(const xfer *x)
{
    return (x->abort_flag && atomic_load(x->abort_flag)) || (x->pipe && atomic_load(&x->pipe->abort));
}

static const char *header_value(CURL *c, const char *name)
{
    struct curl_header *hh = NULL;
    if (curl_easy_header(c, name, 0, CURLH_HEADER, -1, &hh) != CURLHE_OK || hh == NULL)
        return NULL;
    return hh->value;
}

static void copy_etag(char *out, const char *v)
{
    out[0] = '\0';
    if (v == NULL)
        return;
    size_t n = strlen(v);
    if (n < STOW_HTTPC_ETAG_MAX)
        memcpy(out, v, n + 1);
}

static int data_fail(xfer *x, int code, const char *fmt, ...) STOW_PRINTF(3, 4);
static int data_fail(xfer *x, int code, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    x->data_error = 1;
    stow_error_set(&x->derr, code, "%s %s: %s", x->method, x->url_red, msg);
    return -1;
}

/* Decides what the body of this attempt's answer is, once the status is known. */
static int decide(xfer *x)
{
    long status = 0;
    curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &status);
    x->status = status;
    uint64_t pos = x->want_start + x->delivered; /* first byte this attempt asked for */
    if (status < 200 || status >= 300) {
        x->mode = MODE_ERRBODY;
        if (status == 416 && x->is_get) {
            /* An unsatisfiable range that starts exactly at the end of the object is not an
             * error: it is how an empty object answers a ranged request. */
            const char *cr = header_value(x->curl, "Content-Range");
            uint64_t f, l;
            int64_t t;
            if (cr && parse_content_range(cr, &f, &l, &t) == 0 && t >= 0 && (uint64_t)t == pos &&
                x->delivered == 0) {
                x->empty_ok = 1;
                x->total_size = t;
                x->mode = MODE_DISCARD;
            }
        }
        return 0;
    }
    x->mode = MODE_BODY;
    if (!x->is_get)
        return 0;

    int64_t total = -1;
    const char *etag = header_value(x->curl, "ETag");
    if (status == 206) {
        const char *cr = header_value(x->curl, "Content-Range");
        uint64_t first, last;
        if (cr == NULL || parse_content_range(cr, &first, &last, &total) != 0 ||
            first == UINT64_MAX)
            return data_fail(x, STOW_ECORRUPT, "partial answer with a bad Content-Range");
        if (first != pos)
            return data_fail(x, STOW_ECORRUPT,
                             "partial answer starts at byte %" PRIu64 ", asked for %" PRIu64,
                             first, pos);
        x->skip = 0; /* a longer answer than asked is cut at want_end by on_write */
    } else {
        /* A full answer (200, or another 2xx): the body starts at byte 0. */
        curl_off_t cl = -1;
        curl_easy_getinfo(x->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
        total = cl >= 0 ? (int64_t)cl : -1;
        x->skip = pos;
        if (x->full_end != 0 && x->want_end != x->full_end)
            x->want_end = x->full_end; /* no ranges here: this answer carries everything */
    }
    if (total >= 0) {
        if (x->expect_total >= 0 && total != x->expect_total)
            return data_fail(x, STOW_ECORRUPT,
                             "object changed during the download (size %" PRIu64
                             ", was %" PRIu64 ")",
                             (uint64_t)total, (uint64_t)x->expect_total);
        x->expect_total = total;
        x->total_size = total;
        if (x->want_end == UINT64_MAX || x->want_end > (uint64_t)total)
            x->want_end = (uint64_t)total;
        if (pos > (uint64_t)total)
            return data_fail(x, STOW_ERR, "range starts at %" PRIu64 " beyond the end %" PRIu64,
                             pos, (uint64_t)total);
    }
    if (x->if_match[0] == '\0' && etag && strncmp(etag, "W/", 2) != 0)
        copy_etag(x->if_match, etag);
    if (x->on_total && !x->total_reported && status == 206 && total >= 0) {
        x->total_reported = 1;
        x->on_total(x->total_ud, (uint64_t)total, x->if_match);
    }
    if (x->want_end != UINT64_MAX && x->want_start + x->delivered >= x->want_end)
        x->got_all = 1;
    return 0;
}

/* Time spent waiting on the caller (sink, upload producer) is not the store's: it moves the
 * stall clock forward. */
static void caller_waited(xfer *x, int64_t since)
{
    int64_t waited = stow_now_ms() - since;
    if (waited > 0)
        x->t_progress += waited;
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
    xfer *x = ud;
    size_t len = size * nmemb;
    if (aborted(x))
        return 0;
    if (x->mode == MODE_UNDECIDED && decide(x) != 0)
        return 0;
    switch (x->mode) {
    case MODE_ERRBODY: {
        size_t room = STOW_HTTPC_ERROR_BODY_MAX - x->errbody_len;
        size_t n = len < room ? len : room;
        if (n < len)
            x->errbody_trunc = 1;
        if (n > 0) {
            if (x->errbody == NULL) {
                x->errbody = malloc(STOW_HTTPC_ERROR_BODY_MAX + 1);
                if (x->errbody == NULL)
                    return len; /* keep the status, lose the body */
            }
            memcpy(x->errbody + x->errbody_len, ptr, n);
            x->errbody_len += n;
        }
        return len;
    }
    case MODE_DISCARD:
        return len;
    default:
        break;
    }
    int64_t t_sink = stow_now_ms();
    if (!x->is_get) {
        if (x->sink && len > 0 && x->sink(x->sink_ud, ptr, len) != 0) {
            x->sink_failed = 1;
            return 0;
        }
        caller_waited(x, t_sink);
        x->delivered += len;
        return len;
    }
    const char *p = ptr;
    size_t left = len;
    if (x->skip > 0) {
        size_t s = x->skip < left ? (size_t)x->skip : left;
        x->skip -= s;
        p += s;
        left -= s;
    }
    if (left == 0)
        return len;
    uint64_t pos = x->want_start + x->delivered;
    if (x->want_end != UINT64_MAX) {
        uint64_t need = x->want_end > pos ? x->want_end - pos : 0;
        if (need == 0) {
            x->got_all = 1;
            return 0; /* everything wanted is here; stop the transfer */
        }
        if (left > need)
            left = (size_t)need;
    }
    if (x->sink && x->sink(x->sink_ud, p, left) != 0) {
        x->sink_failed = 1;
        return 0;
    }
    caller_waited(x, t_sink);
    x->delivered += left;
    if (x->want_end != UINT64_MAX && x->want_start + x->delivered >= x->want_end) {
        x->got_all = 1;
        if (p + left < ptr + len)
            return 0; /* the server sends more than wanted (a 200 to a range) */
    }
    return len;
}

static size_t on_read(char *buf, size_t size, size_t nitems, void *ud)
{
    xfer *x = ud;
    size_t len = size * nitems;
    if (x->pipe) {
        int64_t t_wait = stow_now_ms();
        size_t n = upipe_read(x->pipe, buf, len);
        caller_waited(x, t_wait);
        return n;
    }
    if (aborted(x))
        return CURL_READFUNC_ABORT;
    const stow_httpc_request *r = x->req;
    size_t left = r->body_len - x->body_pos;
    size_t n = left < len ? left : len;
    if (n > 0)
        memcpy(buf, (const char *)r->body + x->body_pos, n);
    x->body_pos += n;
    return n;
}

static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    xfer *x = ud;
    (void)dt;
    (void)ut;
    if (aborted(x))
        return 1;
    uint64_t moved = (uint64_t)(dn > 0 ? dn : 0) + (uint64_t)(un > 0 ? un : 0);
    int64_t now = stow_now_ms();
    if (moved >= x->mark_bytes + (uint64_t)x->h->cfg.low_speed_limit) {
        x->mark_bytes = moved;
        x->t_progress = now;
    }
    if (now - x->t_progress > x->h->cfg.deadline_ms) {
        x->deadline_hit = 1;
        return 1;
    }
    return 0;
}

static int append_header(struct curl_slist **list, const char *line)
{
    struct curl_slist *n = curl_slist_append(*list, line);
    if (n == NULL)
        return -1;
    *list = n;
    return 0;
}

/* Sets every option for one attempt and builds its header list. */
static int setup_attempt(xfer *x, struct curl_slist **hdrs, stow_error *err)
{
    stow_httpc *h = x->h;
    const stow_httpc_request *r = x->req;
    CURL *c = x->curl;
    curl_easy_reset(c);
    x->errbuf[0] = '\0';
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_URL, r->url);
    curl_easy_setopt(c, CURLOPT_SHARE, h->share);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, h->cfg.connect_timeout_ms);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, h->cfg.low_speed_limit);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, h->cfg.low_speed_timeout_s);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, h->cfg.verify_tls ? 1L : 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, h->cfg.verify_tls ? 2L : 0L);
    if (h->cfg.ca_bundle)
        curl_easy_setopt(c, CURLOPT_CAINFO, h->cfg.ca_bundle);
    curl_easy_setopt(c, CURLOPT_USERAGENT, h->cfg.user_agent);
    if (h->cfg.userpwd) {
        curl_easy_setopt(c, CURLOPT_USERPWD, h->cfg.userpwd);
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
    } else if (h->cfg.netrc) {
        curl_easy_setopt(c, CURLOPT_NETRC, (long)CURL_NETRC_OPTIONAL);
        const char *nf = getenv("NETRC");
        if (nf && *nf)
            curl_easy_setopt(c, CURLOPT_NETRC_FILE, nf);
    }
    curl_easy_setopt(c, CURLOPT_BUFFERSIZE, CURL_BUF_SIZE);
    curl_easy_setopt(c, CURLOPT_UPLOAD_BUFFERSIZE, CURL_BUF_SIZE);
    curl_easy_setopt(c, CURLOPT_FILETIME, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, x);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);

    int has_body = x->pipe != NULL || r->body_type == STOW_HTTPC_BODY_BUFFER;
    curl_off_t body_size = x->pipe ? (curl_off_t)x->pipe->size : (curl_off_t)r->body_len;
    if (has_body) {
        curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(c, CURLOPT_READDATA, x);
    }
    if (strcmp(x->method, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (strcmp(x->method, "GET") == 0) {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(x->method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, has_body ? body_size : (curl_off_t)0);
        if (!has_body)
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
    } else if (has_body || strcmp(x->method, "PUT") == 0) {
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, has_body ? body_size : (curl_off_t)0);
        if (strcmp(x->method, "PUT") != 0)
            curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, x->method);
    } else {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, x->method);
    }

    stow_httpc_attempt att = {r, x->method, r->url, x->attempt, 0, 0, 0};
    *hdrs = NULL;
    for (size_t i = 0; h->cfg.headers && h->cfg.headers[i]; i++)
        if (append_header(hdrs, h->cfg.headers[i]) != 0)
            goto oom;
    for (size_t i = 0; r->headers && r->headers[i]; i++)
        if (append_header(hdrs, r->headers[i]) != 0)
            goto oom;
    if (x->is_get) {
        uint64_t pos = x->want_start + x->delivered;
        if (pos > 0 || x->want_end != UINT64_MAX) {
            char line[96];
            att.has_range = 1;
            att.range_start = pos;
            att.range_end = x->want_end == UINT64_MAX ? UINT64_MAX : x->want_end - 1;
            if (x->want_end == UINT64_MAX)
                snprintf(line, sizeof(line), "Range: bytes=%" PRIu64 "-", pos);
            else
                snprintf(line, sizeof(line), "Range: bytes=%" PRIu64 "-%" PRIu64, pos,
                         x->want_end - 1);
            if (append_header(hdrs, line) != 0)
                goto oom;
        }
        if (x->if_match[0]) {
            char line[STOW_HTTPC_ETAG_MAX + 16];
            snprintf(line, sizeof(line), "If-Match: %s", x->if_match);
            if (append_header(hdrs, line) != 0)
                goto oom;
        }
    }
    if (r->prepare) {
        int rc = r->prepare(r->ud, &att, hdrs, err);
        if (rc != STOW_OK)
            return err && err->code != STOW_OK ? err->code : STOW_ERR;
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, *hdrs);
    return STOW_OK;
oom:
    return stow_error_set(err, STOW_ERR, "out of memory");
}

static int is_connect_error(CURLcode rc)
{
    return rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
           rc == CURLE_COULDNT_RESOLVE_PROXY;
}

static int is_retryable_curl(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
        return 1;
    default:
        return 0;
    }
}

static int is_tls_verify_error(CURLcode rc)
{
    return rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE ||
           rc == CURLE_SSL_ISSUER_ERROR || rc == CURLE_SSL_CERTPROBLEM;
}

/* Sets err for a transport failure. */
static int curl_failure(xfer *x, CURLcode rc, stow_error *err)
{
    const char *detail = x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc);
    if (is_connect_error(rc))
        return stow_error_set(err, STOW_ERR, "%s %s: store unreachable: %s", x->method,
                              x->url_red, detail);
    if (rc == CURLE_OPERATION_TIMEDOUT)
        return stow_error_set(err, STOW_ETIMEOUT, "%s %s: timed out: %s", x->method, x->url_red,
                              detail);
    if (is_tls_verify_error(rc))
        return stow_error_set(err, STOW_ERR,
                              "%s %s: TLS verification failed: %s (configure a CA bundle; only "
                              "an explicit opt-out disables verification)",
                              x->method, x->url_red, detail);
    return stow_error_set(err, STOW_ERR, "%s %s: %s", x->method, x->url_red, detail);
}

/* Runs one attempt and classifies it. On OUT_RETRY/OUT_FINAL err holds the cause;
 * *retry_after_ms is the server's Retry-After, or -1. */
static outcome run_attempt(xfer *x, long *retry_after_ms, stow_error *err)
{
    struct curl_slist *hdrs = NULL;
    outcome out = OUT_FINAL;
    *retry_after_ms = -1;
    x->mode = MODE_UNDECIDED;
    x->status = 0;
    x->skip = 0;
    x->got_all = 0;
    x->empty_ok = 0;
    x->sink_failed = 0;
    x->data_error = 0;
    x->errbody_len = 0;
    x->errbody_trunc = 0;
    x->body_pos = 0;
    x->mark_bytes = 0;
    stow_error_clear(&x->derr);

    int rc0 = setup_attempt(x, &hdrs, err);
    if (rc0 != STOW_OK)
        goto done;
    CURLcode rc = curl_easy_perform(x->curl);
    if (x->mode == MODE_UNDECIDED && rc == CURLE_OK)
        decide(x); /* no body at all: HEAD, 204, empty objects */
    long status = 0;
    curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &status);
    x->status = status;

    x->last_rc = rc;
    if (x->sink_failed) {
        if (x->user_err && x->user_err->code != STOW_OK)
            *err = *x->user_err;
        else
            stow_error_set(err, STOW_ERR, "%s %s: the receiver stopped the download", x->method,
                           x->url_red);
        goto done;
    }
    if (x->data_error) {
        if (err)
            *err = x->derr;
        goto done;
    }
    if (x->got_all) {
        /* every wanted byte was delivered: what curl says about the rest of the
         * connection (our own stop, a drop after the last byte) does not matter */
        out = OUT_OK;
        goto done;
    }
    if (aborted(x)) {
        stow_error_set(err, STOW_ERR, "%s %s: aborted", x->method, x->url_red);
        goto done;
    }
    if (x->deadline_hit) {
        stow_error_set(err, STOW_ETIMEOUT, "%s %s: timed out", x->method, x->url_red);
        goto done;
    }
    if (rc != CURLE_OK) {
        curl_failure(x, rc, err);
        out = is_retryable_curl(rc) ? OUT_RETRY : OUT_FINAL;
        goto done;
    }
    if (x->empty_ok) {
        out = OUT_OK;
        goto done;
    }
    int retry = 0;
    if (status == 412 && x->is_get && x->if_match[0]) {
        stow_error_set(err, STOW_ECORRUPT,
                       "%s %s: the object changed during the download (If-Match %s failed)",
                       x->method, x->url_red, x->if_match);
        goto done;
    }
    if (status < 200 || status >= 300) {
        stow_httpc_map_status(status, x->method, x->url_red, &retry, err);
        if (x->req->on_error) {
            const char *ct = NULL;
            curl_easy_getinfo(x->curl, CURLINFO_CONTENT_TYPE, &ct);
            if (x->errbody)
                x->errbody[x->errbody_len] = '\0';
            stow_httpc_response resp = {x->method,
                                        x->url_red,
                                        status,
                                        x->errbody ? x->errbody : "",
                                        x->errbody_len,
                                        x->errbody_trunc,
                                        ct,
                                        x->attempt};
            int code = x->req->on_error(x->req->ud, &resp, &retry, err);
            if (code == STOW_OK) {
                /* the caller accepts this answer (e.g. a 404 to a DELETE) */
                stow_error_clear(err);
                out = OUT_OK;
                goto done;
            }
            err->code = code;
        }
        if (retry) {
            curl_off_t ra = -1;
            if (curl_easy_getinfo(x->curl, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0 &&
                ra < 3600)
                *retry_after_ms = (long)ra * 1000;
        }
        out = retry ? OUT_RETRY : OUT_FINAL;
        goto done;
    }
    if (x->is_get && x->want_end != UINT64_MAX && x->want_start + x->delivered < x->want_end) {
        stow_error_set(err, STOW_ERR,
                       "%s %s: the answer ended after %" PRIu64 " of %" PRIu64 " bytes", x->method,
                       x->url_red, x->delivered, x->want_end - x->want_start);
        out = OUT_RETRY;
        goto done;
    }
    out = OUT_OK;
done:
    curl_slist_free_all(hdrs);
    return out;
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
    copy_etag(res->etag, header_value(x->curl, "ETag"));
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
static void error_append(stow_error *err, const char *fmt, ...) STOW_PRINTF(2, 3);
static void error_append(stow_error *err, const char *fmt, ...)
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
    error_append(e, " (store stalled: no progress for %" PRId64 " s, gave up after %" PRId64
                 " s and %d attempt%s)",
                 (now - x->t_progress + 500) / 1000, (now - x->t0 + 500) / 1000, x->attempts,
                 x->attempts == 1 ? "" : "s");
}

/* The retry loop around run_attempt. The outcome goes to err (which a failing sink may
 * have filled itself, see backend.h). */
static int run_xfer(xfer *x, stow_httpc_result *res, stow_error *err)
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
    x->curl = handle_take(x->h);
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
        outcome o = run_attempt(x, &retry_after, &e);
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
        if (x->is_get && x->delivered > before) {
            no_progress = 0;
            resumes++;
        } else {
            no_progress++;
        }
        int limit = cfg->max_retries;
        if (x->status == 0 && is_connect_error(x->last_rc) && limit > CONNECT_RETRIES_MAX)
            limit = CONNECT_RETRIES_MAX;
        if (x->deadline_hit || stow_now_ms() - x->t_progress > cfg->deadline_ms) {
            stall_message(x, &e);
            break;
        }
        if (no_progress > limit || resumes > MAX_RESUMES) {
            if (x->attempts > 1)
                error_append(&e, " (gave up after %d attempts)", x->attempts);
            break;
        }
        if (x->pipe && upipe_rewind(x->pipe) != 0) {
            error_append(&e,
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
               stow_now_ms() - t0, rc == STOW_OK ? "" : ": ", rc == STOW_OK ? "" : stow_error_name(rc));
    handle_give(x->h, x->curl);
    x->curl = NULL;
    free(x->errbody);
    x->errbody = NULL;
    if (err)
        *err = e;
    return rc;
}

static void xfer_init(xfer *x, stow_httpc *h, const stow_httpc_request *req, const char *method)
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
static void xfer_range(xfer *x, uint64_t offset, uint64_t length)
{
    x->is_get = 1;
    x->want_start = offset;
    x->want_end = UINT64_MAX;
    if (length > 0)
        x->want_end = length > UINT64_MAX - offset ? UINT64_MAX : offset + length;
}

static int check_request(const stow_httpc_request *req, stow_error *err)
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
    int rc = check_request(req, err);
    if (rc != STOW_OK)
        return rc;
    xfer x;
    xfer_init(&x, h, req, req->method ? req->method : "GET");
    if (strcmp(x.method, "GET") == 0 && !req->no_resume)
        xfer_range(&x, req->offset, req->length);
    return run_xfer(&x, res, err);
}

/* ---------------------------------------------------------------- parallel ranged get */

typedef struct pslot {
    size_t part;     /* part held, SIZE_MAX when none yet */
    uint64_t len;    /* bytes of that part */
    uint64_t filled; /* bytes written by the worker */
    int done;
    unsigned char *buf;
} pslot;

typedef struct pget {
    stow_httpc *h;
    const stow_httpc_request *req;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    _Atomic int abort;
    uint64_t start, end, part;
    int64_t total;
    char if_match[STOW_HTTPC_ETAG_MAX];
    size_t nparts, next_part, drained; /* drained: parts >= 1 fully delivered */
    size_t nslots;
    pslot *slots;
    pthread_t *threads;
    size_t nthreads;
    int failed;
    stow_error err;
    int attempts;
} pget;

typedef struct pworker_sink {
    pget *pg;
    pslot *slot;
} pworker_sink;

static int slot_sink(void *ud, const void *buf, size_t len)
{
    pworker_sink *ws = ud;
    pslot *s = ws->slot;
    if (len > s->len - s->filled)
        return -1; /* cannot happen: the transfer is cut at the part end */
    memcpy(s->buf + s->filled, buf, len); /* the reader only looks below filled */
    pthread_mutex_lock(&ws->pg->lock);
    s->filled += len;
    pthread_cond_broadcast(&ws->pg->cond);
    pthread_mutex_unlock(&ws->pg->lock);
    return 0;
}

static void pget_fail(pget *pg, const stow_error *e)
{
    pthread_mutex_lock(&pg->lock);
    if (!pg->failed) {
        pg->failed = 1;
        pg->err = *e;
        if (pg->err.code == STOW_OK)
            pg->err.code = STOW_ERR;
    }
    atomic_store(&pg->abort, 1);
    pthread_cond_broadcast(&pg->cond);
    pthread_mutex_unlock(&pg->lock);
}

static void *pget_worker(void *arg)
{
    pget *pg = arg;
    for (;;) {
        pthread_mutex_lock(&pg->lock);
        while (!atomic_load(&pg->abort) && pg->next_part < pg->nparts &&
               pg->next_part - 1 >= pg->drained + pg->nslots)
            pthread_cond_wait(&pg->cond, &pg->lock);
        if (atomic_load(&pg->abort) || pg->next_part >= pg->nparts) {
            pthread_mutex_unlock(&pg->lock);
            break;
        }
        size_t p = pg->next_part++;
        pslot *s = &pg->slots[(p - 1) % pg->nslots];
        uint64_t off = pg->start + (uint64_t)p * pg->part;
        s->part = p;
        s->len = pg->end - off < pg->part ? pg->end - off : pg->part;
        s->filled = 0;
        s->done = 0;
        pthread_mutex_unlock(&pg->lock);

        pworker_sink ws = {pg, s};
        xfer x;
        stow_error e;
        stow_error_clear(&e);
        xfer_init(&x, pg->h, pg->req, "GET");
        xfer_range(&x, off, s->len);
        x.sink = slot_sink;
        x.sink_ud = &ws;
        x.abort_flag = &pg->abort;
        x.no_headers = 1;
        x.expect_total = pg->total;
        memcpy(x.if_match, pg->if_match, sizeof(x.if_match));
        int rc = run_xfer(&x, NULL, &e);
        pthread_mutex_lock(&pg->lock);
        pg->attempts += x.attempts;
        if (rc == STOW_OK && s->filled == s->len) {
            s->done = 1;
            pthread_cond_broadcast(&pg->cond);
            pthread_mutex_unlock(&pg->lock);
            continue;
        }
        pthread_mutex_unlock(&pg->lock);
        if (rc == STOW_OK)
            stow_error_set(&e, STOW_ERR, "GET %s: part %zu ended short", x.url_red, p);
        /* after an abort (another part failed, or the receiver stopped) this part's
         * "aborted" is not the cause: keep the first real error */
        if (!atomic_load(&pg->abort))
            pget_fail(pg, &e);
        break;
    }
    return NULL;
}

/* Called by part 0's transfer once the object size is known: starts the workers. */
static void pget_on_total(void *ud, uint64_t total, const char *etag)
{
    pget *pg = ud;
    stow_error e;
    pg->total = (int64_t)total;
    if (pg->end == UINT64_MAX || pg->end > total)
        pg->end = total;
    if (pg->end <= pg->start + pg->part)
        return; /* part 0 is all there is */
    uint64_t span = pg->end - pg->start;
    uint64_t nparts = span / pg->part + (span % pg->part != 0);
    if (nparts > SIZE_MAX / 2) {
        stow_error_set(&e, STOW_ERR, "too many parts");
        pget_fail(pg, &e);
        return;
    }
    copy_etag(pg->if_match, etag);
    pg->nparts = (size_t)nparts;
    pg->next_part = 1;
    size_t want = (size_t)pg->h->cfg.parallel;
    if (want > pg->nparts - 1)
        want = pg->nparts - 1;
    pg->slots = calloc(want, sizeof(*pg->slots));
    pg->threads = calloc(want, sizeof(*pg->threads));
    if (pg->slots == NULL || pg->threads == NULL) {
        stow_error_set(&e, STOW_ERR, "out of memory for a parallel download");
        pget_fail(pg, &e);
        return;
    }
    for (size_t i = 0; i < want; i++) {
        pg->slots[i].part = SIZE_MAX;
        pg->slots[i].buf = malloc((size_t)pg->part);
        if (pg->slots[i].buf == NULL) {
            stow_error_set(&e, STOW_ERR, "out of memory for a parallel download");
            pget_fail(pg, &e);
            return;
        }
        pg->nslots++;
    }
    for (size_t i = 0; i < want; i++) {
        if (pthread_create(&pg->threads[i], NULL, pget_worker, pg) != 0)
            break;
        pg->nthreads++;
    }
    if (pg->nthreads == 0) {
        stow_error_set(&e, STOW_ERR, "cannot start download threads");
        pget_fail(pg, &e);
    }
}

/* Delivers parts 1.. to the caller's sink in order. */
static int pget_drain(pget *pg, uint64_t *delivered, stow_error *err)
{
    const stow_httpc_request *r = pg->req;
    for (size_t p = 1; p < pg->nparts; p++) {
        pslot *s = &pg->slots[(p - 1) % pg->nslots];
        uint64_t sent = 0;
        for (;;) {
            pthread_mutex_lock(&pg->lock);
            while (!pg->failed && (s->part != p || (s->filled == sent && !s->done)))
                pthread_cond_wait(&pg->cond, &pg->lock);
            if (pg->failed) {
                pthread_mutex_unlock(&pg->lock);
                return STOW_ERR;
            }
            uint64_t filled = s->filled;
            int done = s->done;
            pthread_mutex_unlock(&pg->lock);
            if (filled > sent) {
                if (r->sink && r->sink(r->sink_ud, s->buf + sent, (size_t)(filled - sent)) != 0) {
                    if (err == NULL || err->code == STOW_OK)
                        stow_error_set(err, STOW_ERR, "the receiver stopped the download");
                    return err ? err->code : STOW_ERR;
                }
                *delivered += filled - sent;
                sent = filled;
            }
            if (done && sent == s->len)
                break;
        }
        pthread_mutex_lock(&pg->lock);
        pg->drained++;
        pthread_cond_broadcast(&pg->cond);
        pthread_mutex_unlock(&pg->lock);
    }
    return STOW_OK;
}

int stow_httpc_get(stow_httpc *h, const stow_httpc_request *req, stow_httpc_result *res,
                   stow_error *err)
{
    if (res)
        memset(res, 0, sizeof(*res));
    int rc = check_request(req, err);
    if (rc != STOW_OK)
        return rc;
    uint64_t part = h->cfg.part_size;
    xfer x;
    xfer_init(&x, h, req, "GET");
    if (req->no_resume)
        return run_xfer(&x, res, err); /* whole body per attempt, no ranges */
    if (h->cfg.parallel <= 1 || (req->length > 0 && req->length <= part)) {
        xfer_range(&x, req->offset, req->length);
        return run_xfer(&x, res, err);
    }

    pget pg;
    memset(&pg, 0, sizeof(pg));
    pg.h = h;
    pg.req = req;
    pthread_mutex_init(&pg.lock, NULL);
    pthread_cond_init(&pg.cond, NULL);
    pg.start = req->offset;
    pg.end = req->length > 0 && req->length <= UINT64_MAX - req->offset
                 ? req->offset + req->length
                 : UINT64_MAX;
    pg.part = part;
    pg.total = -1;

    /* Part 0 streams straight into the caller's sink; its answer tells the size. */
    xfer_range(&x, req->offset, part);
    x.full_end = pg.end;
    x.on_total = pget_on_total;
    x.total_ud = &pg;
    x.abort_flag = &pg.abort;
    rc = run_xfer(&x, res, err);
    uint64_t delivered = x.delivered;
    if (rc == STOW_OK && pg.nparts > 1)
        rc = pget_drain(&pg, &delivered, err);

    pthread_mutex_lock(&pg.lock);
    atomic_store(&pg.abort, 1);
    pthread_cond_broadcast(&pg.cond);
    pthread_mutex_unlock(&pg.lock);
    for (size_t i = 0; i < pg.nthreads; i++)
        pthread_join(pg.threads[i], NULL);
    if (pg.failed && rc != STOW_OK) {
        /* a worker's failure is the cause (part 0 or the drain then only saw "aborted") */
        rc = pg.err.code;
        if (err)
            *err = pg.err;
    }
    for (size_t i = 0; i < pg.nslots; i++)
        free(pg.slots[i].buf);
    free(pg.slots);
    free(pg.threads);
    pthread_mutex_destroy(&pg.lock);
    pthread_cond_destroy(&pg.cond);
    if (res) {
        res->bytes = delivered;
        res->attempts = x.attempts + pg.attempts;
        if (pg.total >= 0)
            res->total_size = pg.total;
    }
    if (pg.nparts > 1)
        stow_debug("GET %s: %" PRIu64 " bytes in %zu parts over %zu connections%s", x.url_red,
                   delivered, pg.nparts, pg.nthreads + 1, rc == STOW_OK ? "" : " (failed)");
    return rc;
}

/* ---------------------------------------------------------------- streamed upload */

struct stow_httpc_upload {
    stow_httpc *h;
    stow_httpc_request req; /* strings below are owned copies */
    char *method;
    char *url;
    char **headers;
    upipe pipe;
    pthread_t thread;
    int started;
    uint64_t written;
    int rc;
    stow_error err;
    stow_httpc_result res;
    char url_red[URL_RED_MAX];
};

static void *upload_main(void *arg)
{
    stow_httpc_upload *u = arg;
    xfer x;
    stow_error e;
    stow_error_clear(&e);
    xfer_init(&x, u->h, &u->req, u->method);
    x.pipe = &u->pipe;
    x.sink = u->req.sink;
    x.sink_ud = u->req.sink_ud;
    int rc = run_xfer(&x, &u->res, &e);
    pthread_mutex_lock(&u->pipe.lock);
    u->rc = rc;
    u->err = e;
    u->pipe.finished = 1;
    pthread_cond_broadcast(&u->pipe.cond);
    pthread_mutex_unlock(&u->pipe.lock);
    return NULL;
}

static void upload_free(stow_httpc_upload *u)
{
    if (u == NULL)
        return;
    upipe_destroy(&u->pipe);
    free(u->method);
    free(u->url);
    free_strv(u->headers);
    free(u);
}

static int upload_start(stow_httpc_upload *u, stow_error *err)
{
    if (u->started)
        return STOW_OK;
    if (pthread_create(&u->thread, NULL, upload_main, u) != 0)
        return stow_error_set(err, STOW_ERR, "%s %s: cannot start the upload thread", u->method,
                              u->url_red);
    u->started = 1;
    return STOW_OK;
}

int stow_httpc_put_begin(stow_httpc_upload **out, stow_httpc *h, const stow_httpc_request *req,
                         int64_t size, stow_error *err)
{
    *out = NULL;
    int rc = check_request(req, err);
    if (rc != STOW_OK)
        return rc;
    if (req->body_type != STOW_HTTPC_BODY_NONE)
        return stow_error_set(err, STOW_EUSAGE, "streamed upload with a buffer body");
    stow_httpc_upload *u = calloc(1, sizeof(*u));
    if (u == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    u->h = h;
    u->req = *req;
    u->method = strdup(req->method ? req->method : "PUT");
    u->url = strdup(req->url);
    if (u->method == NULL || u->url == NULL || dup_strv(&u->headers, req->headers) != 0 ||
        upipe_init(&u->pipe, STOW_HTTPC_PIPE_SIZE, size < 0 ? -1 : size) != 0) {
        upload_free(u);
        return stow_error_set(err, STOW_ERR, "out of memory");
    }
    u->req.method = u->method;
    u->req.url = u->url;
    u->req.headers = (const char *const *)u->headers;
    u->req.offset = 0;
    u->req.length = 0;
    stow_redact_url(u->url_red, sizeof(u->url_red), u->url);
    /* An empty body with a declared size would complete at once: start it at commit. */
    if (size != 0 && (rc = upload_start(u, err)) != STOW_OK) {
        upload_free(u);
        return rc;
    }
    *out = u;
    return STOW_OK;
}

int stow_httpc_put_write(stow_httpc_upload *u, const void *buf, size_t len, stow_error *err)
{
    const unsigned char *p = buf;
    upipe *pp = &u->pipe;
    if (pp->size >= 0 && (len > (uint64_t)pp->size || u->written > (uint64_t)pp->size - len))
        return stow_error_set(err, STOW_EUSAGE,
                              "%s %s: more data than the declared size of %" PRId64 " bytes",
                              u->method, u->url_red, pp->size);
    if (len > 0 && !u->started) {
        int rc = upload_start(u, err);
        if (rc != STOW_OK)
            return rc;
    }
    pthread_mutex_lock(&pp->lock);
    while (len > 0) {
        if (pp->finished) {
            int rc = u->rc != STOW_OK ? u->rc : STOW_ERR;
            if (u->rc != STOW_OK) {
                if (err)
                    *err = u->err;
            } else {
                stow_error_set(err, STOW_ERR, "%s %s: the server answered before the body was "
                               "complete", u->method, u->url_red);
            }
            pthread_mutex_unlock(&pp->lock);
            return rc;
        }
        uint64_t used = pp->head - pp->tail;
        if (used == pp->cap && pp->rpos > pp->tail) {
            pp->tail = pp->rpos; /* drop what was sent: from now on no replay */
            used = pp->head - pp->tail;
        }
        if (used == pp->cap) {
            pthread_cond_wait(&pp->cond, &pp->lock);
            continue;
        }
        size_t room = (size_t)(pp->cap - used);
        size_t n = len < room ? len : room;
        size_t at = (size_t)(pp->head % pp->cap);
        size_t chunk = pp->cap - at;
        if (chunk > n)
            chunk = n;
        memcpy(pp->ring + at, p, chunk);
        if (n > chunk)
            memcpy(pp->ring, p + chunk, n - chunk);
        pp->head += n;
        p += n;
        len -= n;
        u->written += n;
        pthread_cond_broadcast(&pp->cond);
    }
    pthread_mutex_unlock(&pp->lock);
    return STOW_OK;
}

static void upload_stop(stow_httpc_upload *u, int abort)
{
    pthread_mutex_lock(&u->pipe.lock);
    if (abort)
        atomic_store(&u->pipe.abort, 1);
    else
        u->pipe.closed = 1;
    pthread_cond_broadcast(&u->pipe.cond);
    pthread_mutex_unlock(&u->pipe.lock);
    if (u->started)
        pthread_join(u->thread, NULL);
    u->started = 0;
}

int stow_httpc_put_commit(stow_httpc_upload *u, stow_httpc_result *res, stow_error *err)
{
    int rc;
    if (res)
        memset(res, 0, sizeof(*res));
    if (u->pipe.size >= 0 && u->written != (uint64_t)u->pipe.size) {
        rc = stow_error_set(err, STOW_EUSAGE,
                            "%s %s: only %" PRIu64 " of the declared %" PRId64
                            " bytes were written; upload aborted",
                            u->method, u->url_red, u->written, u->pipe.size);
        upload_stop(u, 1);
        upload_free(u);
        return rc;
    }
    if (!u->started && (rc = upload_start(u, err)) != STOW_OK) {
        upload_free(u);
        return rc;
    }
    upload_stop(u, 0);
    rc = u->rc;
    if (rc != STOW_OK && err)
        *err = u->err;
    else if (rc == STOW_OK)
        stow_error_clear(err);
    if (res)
        *res = u->res;
    upload_free(u);
    return rc;
}

void stow_httpc_put_abort(stow_httpc_upload *u)
{
    if (u == NULL)
        return;
    upload_stop(u, 1);
    upload_free(u);
}
