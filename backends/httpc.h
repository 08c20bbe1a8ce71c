/* Shared libcurl transport for the HTTP and S3 backends.
 *
 * One stow_httpc per backend instance holds the connection settings (TLS, timeouts, retry
 * policy, basic auth, extra headers), a DNS/TLS-session share and a pool of easy handles so
 * connections are reused across operations. Every function may be called from several
 * threads at once on one stow_httpc.
 *
 * A request is described by stow_httpc_request. The transport owns the retry loop:
 * exponential backoff with full jitter for 5xx, 429, 408, connection resets and timeouts,
 * bounded by cfg.max_retries attempts without progress and by cfg.deadline_ms: an operation
 * (all its attempts, resumes and backoff waits) gives up once it has gone that long without
 * progress, i.e. without moving at least cfg.low_speed_limit bytes per second; the time spent
 * waiting on the caller (a slow sink, an upload producer) does not count. A request that
 * gives up this way fails with STOW_ETIMEOUT and a message saying how long it waited. Before EVERY attempt (including each part of a parallel
 * get and the retries of each part) req->prepare is called with the details of that attempt,
 * so a signer can add a fresh date and signature. On a non-2xx answer the (capped) body is
 * handed to req->on_error after the default status mapping, which it may change.
 *
 * Credentials never reach logs or messages: URLs given here must not carry userinfo (pass
 * it as cfg.userpwd) and are logged only through stow_redact_url; header values are never
 * logged.
 */
#ifndef STOW_HTTPC_H
#define STOW_HTTPC_H

#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

#include "backend.h"
#include "buf.h"

#define STOW_HTTPC_ERROR_BODY_MAX (64 * 1024) /* bytes of a non-2xx body kept for on_error */
#define STOW_HTTPC_ETAG_MAX 256

typedef struct stow_httpc stow_httpc;

typedef struct stow_httpc_config {
    int verify_tls;             /* 1 verify peer and host (default); 0 only by explicit opt-out */
    const char *ca_bundle;      /* CURLOPT_CAINFO; NULL = system default */
    long connect_timeout_ms;    /* default 15000 */
    long low_speed_limit;       /* bytes/s an attempt must keep up; default 1024 */
    long low_speed_timeout_s;   /* abort an attempt below low_speed_limit this long; default 30 */
    int max_retries;            /* retries after the first attempt; default 5 */
    long retry_base_ms;         /* first backoff ceiling; default 250 */
    long retry_max_ms;          /* cap on one backoff sleep; default 20000 */
    long deadline_ms;           /* give up after this long without progress; default 60000 */
    int parallel;               /* connections for a parallel ranged get; default 4, 1 = off */
    uint64_t part_size;         /* bytes per ranged part; default 8 MiB */
    const char *userpwd;        /* "user:password" (decoded) for basic auth, or NULL */
    int netrc;                  /* 1: CURL_NETRC_OPTIONAL (~/.netrc, or $NETRC if set) */
    const char *const *headers; /* "Name: value" sent on every request; NULL-terminated */
    const char *user_agent;     /* default "stowage/<version>" */
    int no_proxy;               /* 1: never through a proxy (link-local services) */
} stow_httpc_config;

/* Fills cfg with the defaults above, then applies what opts sets (verify_tls, ca_bundle,
 * timeouts, low-speed limit, deadline, max_retries, parallel). Strings are borrowed from opts; stow_httpc_new copies. */
void stow_httpc_config_init(stow_httpc_config *cfg, const stow_backend_opts *opts);

int stow_httpc_new(stow_httpc **out, const stow_httpc_config *cfg, stow_error *err);
void stow_httpc_free(stow_httpc *h);

typedef struct stow_httpc_request stow_httpc_request;

/* What one attempt is about to send. range_* describe the Range header the transport adds
 * (has_range 0: none); range_end is inclusive, UINT64_MAX for an open range "bytes=N-". */
typedef struct stow_httpc_attempt {
    const stow_httpc_request *req;
    const char *method;
    const char *url;
    int attempt; /* 1 for the first try of this request (or of this part), 2 for the first retry */
    int has_range;
    uint64_t range_start;
    uint64_t range_end;
} stow_httpc_attempt;

/* Called before every attempt. *headers already holds the configured headers, the request
 * headers and Range/If-Match; append to it with curl_slist_append (the transport frees the
 * list after the attempt). Return 0, or a STOW_* code with err set to fail the request
 * without retrying. Called from worker threads during a parallel get: must be thread-safe. */
typedef int (*stow_httpc_prepare_fn)(void *ud, const stow_httpc_attempt *att,
                                     struct curl_slist **headers, stow_error *err);

/* A non-2xx answer, as seen by on_error. */
typedef struct stow_httpc_response {
    const char *method;
    const char *url_redacted;
    long status;
    const char *body; /* NUL-terminated, at most STOW_HTTPC_ERROR_BODY_MAX bytes, never NULL */
    size_t body_len;
    int body_truncated;
    const char *content_type; /* NULL if absent */
    int attempt;
} stow_httpc_response;

/* Called for every non-2xx answer after the default mapping (stow_httpc_map_status) has
 * set err and *retry. Return the final code (usually err->code after changing err); set
 * *retry to 1/0 to force or forbid a retry. Returning STOW_OK accepts the answer as a
 * success (e.g. a 404 to a DELETE); the request then returns STOW_OK with res->status set. */
typedef int (*stow_httpc_error_fn)(void *ud, const stow_httpc_response *resp, int *retry,
                                   stow_error *err);

/* Called with each header of the final 2xx answer once the request succeeded (for a
 * parallel get: of the first part's answer only, on the caller's thread). */
typedef void (*stow_httpc_header_fn)(void *ud, const char *name, const char *value);

typedef enum {
    STOW_HTTPC_BODY_NONE = 0,
    STOW_HTTPC_BODY_BUFFER, /* body/body_len, replayed on every attempt */
} stow_httpc_body;

struct stow_httpc_request {
    const char *method;         /* "GET", "HEAD", "PUT", "POST", "DELETE", ... */
    const char *url;            /* full URL without userinfo */
    const char *const *headers; /* extra "Name: value" lines, NULL-terminated, may be NULL */

    /* GET only: bytes [offset, offset+length) of the object, length 0 = to the end. No
     * Range header is sent for offset 0 / length 0 (until a resume needs one). */
    uint64_t offset;
    uint64_t length;
    /* GET of something that is not a stored object (a listing, a metadata service): no
     * Range, no resume; a retry delivers the whole body again from the start, like for
     * other methods (offset/length are ignored). */
    int no_resume;

    stow_httpc_body body_type;
    const void *body;
    size_t body_len;

    /* Receives the body of a 2xx answer. For GET, each byte once and in order across
     * retries and resumes. For other methods (and no_resume), the body of every attempt
     * that got a 2xx answer, even one that then fails and is retried: prepare runs before
     * each attempt, so a collector resets there. May be NULL. */
    stow_sink_fn sink;
    void *sink_ud;

    stow_httpc_prepare_fn prepare;
    stow_httpc_error_fn on_error;
    stow_httpc_header_fn on_header;
    void *ud; /* passed to prepare, on_error and on_header */
};

typedef struct stow_httpc_result {
    long status;            /* final HTTP status, 0 if no answer */
    int64_t content_length; /* of the final answer (parallel get: of part 0), -1 unknown */
    int64_t total_size;     /* object size from Content-Range or a full 200, -1 if unknown */
    int64_t last_modified;  /* seconds since the epoch, 0 if unknown */
    char etag[STOW_HTTPC_ETAG_MAX]; /* as sent (with quotes), "" if none */
    uint64_t bytes;                 /* body bytes delivered to the sink */
    int attempts;                   /* attempts made (all parts of a parallel get summed) */
} stow_httpc_result;

/* Default mapping of an HTTP status for method/url: sets *retry and, unless 2xx, err, and
 * returns the STOW_* code (STOW_OK for 2xx). 404/410 STOW_ENOTFOUND; 401/403/407
 * STOW_EAUTH; 412 STOW_EEXIST; 408 STOW_ETIMEOUT (retried); 409/413/507 STOW_ERR naming the
 * cause; 429 and 5xx STOW_ERR (retried); other codes STOW_ERR. */
int stow_httpc_map_status(long status, const char *method, const char *url_redacted, int *retry,
                          stow_error *err);

/* One request with retries. GET is resumed with a range request after a drop. res may be
 * NULL. */
int stow_httpc_perform(stow_httpc *h, const stow_httpc_request *req, stow_httpc_result *res,
                       stow_error *err);

/* A GET (req->method is ignored) of [req->offset, req->offset+req->length) into req->sink,
 * strictly in order. When the range is larger than one part and cfg.parallel > 1, the first
 * part is streamed while up to cfg.parallel workers fetch the next parts into buffers
 * fetched ahead: at most 4 MiB per GET, and STOW_HTTPC_AHEAD_BUDGET for all the GETs running
 * at once on h (a restore extracting a layer per core), one part per GET beyond it; any
 * failure aborts all. */
int stow_httpc_get(stow_httpc *h, const stow_httpc_request *req, stow_httpc_result *res,
                   stow_error *err);
#define STOW_HTTPC_AHEAD_BUDGET (8u * 1024u * 1024u)

/* The most read-ahead memory the GETs on h held at once: for tests. */
uint64_t stow_httpc_ahead_peak(stow_httpc *h);

/* Streamed upload: a thread runs the request (method from req, default "PUT") whose body is
 * fed by put_write through a bounded in-process pipe. size >= 0 sends Content-Length and
 * requires exactly size bytes; size < 0 streams without a length (Transfer-Encoding: chunked
 * on HTTP/1.1, plain DATA frames on HTTP/2). While the whole
 * body still fits the pipe (STOW_HTTPC_PIPE_SIZE), failed attempts are retried; once part
 * of it was sent and dropped from the pipe, a failure is final and says so.
 * req->body_type must be NONE. Strings and header lists in req are copied; req->ud must
 * outlive the upload. */
#define STOW_HTTPC_PIPE_SIZE (4u * 1024u * 1024u)

typedef struct stow_httpc_upload stow_httpc_upload;

int stow_httpc_put_begin(stow_httpc_upload **out, stow_httpc *h, const stow_httpc_request *req,
                         int64_t size, stow_error *err);
/* Blocks while the pipe is full. Fails at once if the upload already failed. */
int stow_httpc_put_write(stow_httpc_upload *u, const void *buf, size_t len, stow_error *err);
/* Ends the body, waits for the answer, frees u. res may be NULL. */
int stow_httpc_put_commit(stow_httpc_upload *u, stow_httpc_result *res, stow_error *err);
/* Kills the transfer before the body completes (so the server commits nothing), waits
 * for the thread, frees u. Accepts NULL. */
void stow_httpc_put_abort(stow_httpc_upload *u);

/* A capped collector for small answers (metadata services, STS): stow_httpc_collect as the
 * sink (sink_ud the collector, its buf initialised with a cap), stow_httpc_collect_reset in
 * prepare (a retried request delivers its body again). overflow: the cap was hit. */
typedef struct stow_httpc_collector {
    stow_buf buf;
    int overflow;
} stow_httpc_collector;
int stow_httpc_collect(void *collector, const void *data, size_t len);
void stow_httpc_collect_reset(stow_httpc_collector *c);

#endif
