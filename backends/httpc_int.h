/* Internals shared by the files of the HTTP transport (httpc.c: configuration, handle
 * pool, status mapping and the retry loop; httpc_attempt.c: one attempt on an easy handle;
 * httpc_get.c: the parallel ranged GET; httpc_put.c: the streamed upload). Not for use
 * outside backends/httpc*.c. */
#ifndef STOW_HTTPC_INT_H
#define STOW_HTTPC_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "httpc.h"

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
    /* read-ahead of the parallel GETs running at once (httpc_get.c) */
    pthread_mutex_t ahead_lock;
    uint64_t ahead_held, ahead_peak;
};

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

/* httpc.c */
CURL *httpc_handle_take(stow_httpc *h);
void httpc_handle_give(stow_httpc *h, CURL *c);
char *httpc_dup_or_null(const char *s);
void httpc_free_strv(char **v);
int httpc_dup_strv(char ***out, const char *const *v);
void httpc_error_append(stow_error *err, const char *fmt, ...) STOW_PRINTF(2, 3);
void httpc_xfer_init(xfer *x, stow_httpc *h, const stow_httpc_request *req, const char *method);
void httpc_xfer_range(xfer *x, uint64_t offset, uint64_t length);
int httpc_check_request(const stow_httpc_request *req, stow_error *err);
/* The retry loop around httpc_run_attempt; the outcome goes to err. */
int httpc_run_xfer(xfer *x, stow_httpc_result *res, stow_error *err);

/* httpc_attempt.c */
int httpc_aborted(const xfer *x);
const char *httpc_header_value(CURL *c, const char *name);
void httpc_copy_etag(char *out, const char *v);
int httpc_is_connect_error(CURLcode rc);
/* Runs one attempt and classifies it. On OUT_RETRY/OUT_FINAL err holds the cause;
 * *retry_after_ms is the server's Retry-After, or -1. */
outcome httpc_run_attempt(xfer *x, long *retry_after_ms, stow_error *err);

/* httpc_put.c */
size_t httpc_upipe_read(upipe *p, char *buf, size_t len);
int httpc_upipe_rewind(upipe *p);

#endif
