/* S3 store: objects are PREFIX/NAME in one bucket, spoken to over the shared transport
 * (httpc.h) with SigV4 (sigv4.h) and the AWS credential chain (s3_creds.h). See s3.h for
 * the URL and the addressing.
 *
 * Requests: GetObject (parallel ranged GETs and ranged resume are the transport's),
 * HeadObject, DeleteObject, ListObjectsV2 (pages followed through continuation tokens,
 * answers parsed with expat whatever their namespace), PutObject for objects smaller than
 * one part and multipart uploads otherwise. Every attempt is signed afresh in the
 * transport's prepare callback, so retries and resumed parts carry a current date, and
 * credentials that expire (instance metadata) are refreshed there before they run out.
 *
 * Uploads: put_write fills a part buffer. While everything fits in one part nothing is
 * sent; put_commit then sends one PutObject. When more data follows a full part, a
 * multipart upload is created and full parts go to a pool of upload threads while the
 * producer fills the next one. Part buffers come from one budget per backend
 * (STOW_S3_UPLOAD_BUDGET, shared by uploads running at once; s3_mem.c), which decides the
 * part size and the threads per upload (stow_s3_upload_plan). Each part
 * is signed with the SHA-256 of its bytes (hashed on the worker, about 2 GB/s) rather than
 * UNSIGNED-PAYLOAD: the part is in memory anyway, and S3 then rejects a body damaged on
 * the way, which matters on plain-HTTP endpoints. Any failure, and put_abort, aborts the
 * upload (AbortMultipartUpload), so no parts are left behind to be billed; a server that
 * lacks it (s3rver) is logged at debug level.
 * STOW_PUT_IF_ABSENT sends If-None-Match: * on the PutObject or CompleteMultipartUpload;
 * 412 becomes STOW_EEXIST. Servers that ignore the header overwrite (best effort).
 *
 * Errors: the S3 error code from the answer's <Error> body is named in every message.
 * 404 NoSuchKey (or a HEAD 404) is a miss; 404 NoSuchBucket is an error naming the bucket;
 * 403 and the token/signature 400s are STOW_EAUTH, never a miss; 5xx, 429, RequestTimeout,
 * resets and timeouts are retried by the transport with backoff and jitter.
 *
 * Listing and moto: ListObjectsV2 is sent with the exact prefix, percent-encoded as SigV4
 * requires. moto_server with authentication on computes signatures over the query as it
 * re-creates it, so it refuses correct signatures of any query value with %XX in it (a '/'
 * in the prefix is enough). When a listing whose query has %XX is refused with
 * SignatureDoesNotMatch, this backend switches (for its lifetime, logged at debug level)
 * to listing with the longest leading part of the prefix that needs no encoding and
 * filtering the keys itself, stopping at the first key past the wanted range (S3 lists in
 * key order). AWS and other servers never take that path; with wrong credentials the
 * second listing is refused too and reported as the authentication error it is.
 */
#include <errno.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "buf.h"
#include "log.h"
#include "aws_config.h"
#include "s3_int.h"
#include "util.h"

/* ------------------------------------------------------------------------------------------
 * Backend, credentials, signed requests
 * ------------------------------------------------------------------------------------------ */

static void wipe(void *p, size_t n) { OPENSSL_cleanse(p, n); }

/* Current credentials, refreshed when they are about to expire (or the server said they
 * had). A failed refresh keeps the old ones while they are still valid. */
static int creds_get(s3_backend *b, stow_s3_creds *out, stow_error *err)
{
    int rc = STOW_OK;
    pthread_mutex_lock(&b->creds_lock);
    time_t now = time(NULL);
    int forced = atomic_exchange(&b->force_refresh, 0);
    if ((forced || stow_s3_creds_near_expiry(&b->creds, now, STOW_S3_CREDS_REFRESH_MARGIN)) &&
        (forced || now >= b->next_refresh)) {
        stow_s3_creds *fresh = malloc(sizeof(*fresh));
        stow_error e;
        stow_error_clear(&e);
        if (fresh != NULL && stow_s3_creds_resolve_opts(fresh, &b->sts, &e) == STOW_OK) {
            stow_debug("%s: AWS credentials refreshed from %s", b->url_red, fresh->source);
            b->creds = *fresh;
            /* the source may hand out the same soon-expiring credentials again: do not ask
             * it before every request */
            b->next_refresh = now + S3_REFRESH_RETRY_S;
        } else {
            b->next_refresh = now + S3_REFRESH_RETRY_S;
            if (b->creds.expiry != 0 && b->creds.expiry <= now) {
                rc = stow_error_set(err, STOW_EAUTH,
                                    "%s: the AWS credentials from %s expired and could not be "
                                    "refreshed: %s",
                                    b->url_red, b->creds.source, fresh ? e.msg : "out of memory");
            } else {
                stow_warn("%s: could not refresh the AWS credentials (still using those from "
                          "%s): %s",
                          b->url_red, b->creds.source, fresh ? e.msg : "out of memory");
            }
        }
        if (fresh != NULL) {
            stow_s3_creds_clear(fresh);
            free(fresh);
        }
    }
    if (rc == STOW_OK)
        *out = b->creds;
    pthread_mutex_unlock(&b->creds_lock);
    return rc;
}

static void creds_source(s3_backend *b, char *out, size_t cap)
{
    pthread_mutex_lock(&b->creds_lock);
    stow_strlcpy(out, b->creds.source, cap);
    pthread_mutex_unlock(&b->creds_lock);
}

static int append(struct curl_slist **list, const char *line)
{
    struct curl_slist *n = curl_slist_append(*list, line);
    if (n == NULL)
        return -1;
    *list = n;
    return 0;
}

typedef struct sign_scratch {
    stow_s3_creds cr;
    stow_sigv4_headers h;
    char host_line[STOW_S3_ORIGIN_MAX + 8];
} sign_scratch;

/* Before every attempt: a fresh date and signature. */
static int s3_prepare(void *ud, const stow_httpc_attempt *att, struct curl_slist **headers,
                      stow_error *err)
{
    s3_call *c = ud;
    s3_backend *b = c->b;
    if (c->cancel && atomic_load(c->cancel))
        return stow_error_set(err, STOW_ERR, "%s %s: upload aborted", att->method, c->desc);
    if (c->collect) {
        c->body_len = 0;
        c->body_over = 0;
    }
    sign_scratch *s = malloc(sizeof(*s));
    if (s == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    int rc = creds_get(b, &s->cr, err);
    if (rc != STOW_OK)
        goto done;
    char date[STOW_SIGV4_AMZ_DATE_SIZE];
    if (stow_sigv4_amz_date(date, time(NULL)) != 0) {
        rc = stow_error_set(err, STOW_ERR, "the system clock cannot be formatted");
        goto done;
    }
    stow_sigv4_request r = {
        .method = att->method,
        .host = b->loc.host,
        .path = c->path,
        .query = c->query[0] ? c->query : NULL,
        .headers = NULL,
        .payload_hash = c->payload_hash,
        .amz_date = date,
        .region = b->loc.region,
        .service = "s3",
        .access_key = s->cr.access_key,
        .secret_key = s->cr.secret_key,
        .session_token = s->cr.session_token,
    };
    rc = stow_sigv4_sign(&s->h, &r, err);
    if (rc != STOW_OK)
        goto done;
    snprintf(s->host_line, sizeof(s->host_line), "Host: %s", b->loc.host);
    if (append(headers, s->host_line) != 0 || append(headers, s->h.authorization) != 0 ||
        append(headers, s->h.amz_date) != 0 || append(headers, s->h.content_sha256) != 0 ||
        (s->h.security_token[0] && append(headers, s->h.security_token) != 0)) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
done:
    wipe(s, sizeof(*s));
    free(s);
    return rc;
}

static int collect_sink(void *ud, const void *buf, size_t len)
{
    s3_call *c = ud;
    if (len > S3_ANSWER_MAX - c->body_len) {
        c->body_over = 1;
        return -1;
    }
    if (c->body == NULL && (c->body = malloc(S3_ANSWER_MAX + 1)) == NULL)
        return -1;
    memcpy(c->body + c->body_len, buf, len);
    c->body_len += len;
    c->body[c->body_len] = '\0';
    return 0;
}

static int is_code(const stow_s3_error_info *e, const char *code)
{
    return strcmp(e->code, code) == 0;
}

/* Maps a non-2xx answer: the S3 code goes into the message. */
static int s3_on_error(void *ud, const stow_httpc_response *resp, int *retry, stow_error *err)
{
    s3_call *c = ud;
    s3_backend *b = c->b;
    stow_s3_error_info e;
    if (stow_s3_xml_error(&e, resp->body, resp->body_len) != 0 && e.code[0] == '\0')
        e.root[0] = '\0';
    if (c->keep_error)
        c->last = e;
    char detail[512];
    if (e.code[0])
        snprintf(detail, sizeof(detail), "HTTP %ld %s%s%s", resp->status, e.code,
                 e.message[0] ? ": " : "", e.message);
    else
        snprintf(detail, sizeof(detail), "HTTP %ld%s", resp->status,
                 strcmp(resp->method, "HEAD") == 0 ? ", no S3 error code in a HEAD answer" : "");
    const char *m = resp->method;
    char src[STOW_S3_SOURCE_MAX];
    long st = resp->status;

    if (is_code(&e, "ExpiredToken") || is_code(&e, "TokenRefreshRequired")) {
        /* refresh and try again, at most twice per request */
        creds_source(b, src, sizeof(src));
        if (atomic_fetch_add(&c->refreshes, 1) < 2) {
            atomic_store(&b->force_refresh, 1);
            *retry = 1;
        } else {
            *retry = 0;
        }
        return stow_error_set(err, STOW_EAUTH,
                              "%s %s: the session credentials expired (%s; credentials from %s)", m,
                              c->desc, detail, src);
    }
    if (st == 403 || st == 401 || is_code(&e, "InvalidAccessKeyId") ||
        is_code(&e, "InvalidToken") || is_code(&e, "AuthorizationHeaderMalformed") ||
        is_code(&e, "SignatureDoesNotMatch")) {
        *retry = 0;
        creds_source(b, src, sizeof(src));
        const char *hint = "";
        if (is_code(&e, "RequestTimeTooSkewed"))
            hint = "; the system clock is off";
        else if (is_code(&e, "AuthorizationHeaderMalformed"))
            hint = "; check the region";
        else if (is_code(&e, "AccessDenied") || (st == 403 && e.code[0] == '\0'))
            hint = "; the credentials are not allowed to do this";
        return stow_error_set(err, STOW_EAUTH,
                              "%s %s: S3 refused the request (%s; credentials from %s%s)", m,
                              c->desc, detail, src, hint);
    }
    if (st == 404) {
        *retry = 0;
        if (is_code(&e, "NoSuchBucket"))
            return stow_error_set(err, STOW_ERR, "%s %s: bucket \"%s\" does not exist (%s)", m,
                                  c->desc, b->loc.bucket, detail);
        if (is_code(&e, "NoSuchUpload"))
            return stow_error_set(err, STOW_ERR, "%s %s: the multipart upload is gone (%s)", m,
                                  c->desc, detail);
        return stow_error_set(err, STOW_ENOTFOUND, "%s %s: not found (%s)", m, c->desc, detail);
    }
    if (st == 416 && is_code(&e, "InvalidRange") && e.actual_size[0]) {
        char *end = NULL;
        errno = 0;
        long long sz = strtoll(e.actual_size, &end, 10);
        if (errno == 0 && end != e.actual_size && *end == '\0' && sz >= 0)
            atomic_store(&c->range_size, (int64_t)sz);
    }
    if (st == 412) {
        *retry = 0;
        return stow_error_set(err, STOW_EEXIST, "%s %s: the object already exists (%s)", m, c->desc,
                              detail);
    }
    if (st >= 300 && st < 400) {
        *retry = 0;
        return stow_error_set(err, STOW_ERR,
                              "%s %s: the bucket is elsewhere (%s%s%s%s%s); set the region or "
                              "the endpoint",
                              m, c->desc, detail, e.region[0] ? ", region " : "", e.region,
                              e.endpoint[0] ? ", endpoint " : "", e.endpoint);
    }
    if (is_code(&e, "RequestTimeout") || is_code(&e, "SlowDown") || is_code(&e, "InternalError") ||
        is_code(&e, "ServiceUnavailable") || is_code(&e, "OperationAborted") ||
        is_code(&e, "ConditionalRequestConflict"))
        *retry = 1;
    if (is_code(&e, "RequestTimeout"))
        return stow_error_set(err, STOW_ETIMEOUT, "%s %s: %s", m, c->desc, detail);
    if (st >= 500 || st == 429)
        return stow_error_set(err, STOW_ERR, "%s %s: server error (%s)", m, c->desc, detail);
    return stow_error_set(err, STOW_ERR, "%s %s: %s", m, c->desc, detail);
}

/* Sets up a call for the object name (NULL: the bucket itself). */
int s3_call_init(s3_call *c, s3_backend *b, const char *name, stow_error *err)
{
    memset(c, 0, offsetof(s3_call, path));
    c->b = b;
    c->path[0] = '\0';
    c->query[0] = '\0';
    c->desc[0] = '\0';
    c->collect = 0;
    c->body = NULL;
    c->body_len = 0;
    c->body_over = 0;
    c->keep_error = 0;
    c->cancel = NULL;
    atomic_init(&c->refreshes, 0);
    atomic_init(&c->range_size, -1);
    memset(c->headers, 0, sizeof(c->headers));
    memset(&c->last, 0, sizeof(c->last));
    memcpy(c->payload_hash, STOW_SIGV4_EMPTY_SHA256, sizeof(STOW_SIGV4_EMPTY_SHA256));
    if (name == NULL) {
        snprintf(c->path, sizeof(c->path), "%s%s", b->loc.base_path, b->loc.path_style ? "" : "/");
        stow_strlcpy(c->desc, b->url_red, sizeof(c->desc));
        return STOW_OK;
    }
    if (!stow_backend_name_ok(name))
        return stow_error_set(err, STOW_EUSAGE, "invalid object name \"%.200s\"", name);
    char key[STOW_S3_PREFIX_MAX + S3_KEY_MAX + 2];
    int n = snprintf(key, sizeof(key), "%s%s", b->loc.prefix, name);
    if (n < 0 || (size_t)n >= sizeof(key) || n > S3_KEY_MAX)
        return stow_error_set(err, STOW_EUSAGE, "object key %s%s is longer than %d bytes",
                              b->loc.prefix, name, S3_KEY_MAX);
    size_t bp = strlen(b->loc.base_path);
    memcpy(c->path, b->loc.base_path, bp);
    c->path[bp] = '/';
    if (stow_sigv4_uri_encode(c->path + bp + 1, sizeof(c->path) - bp - 1, key, 0) != 0)
        return stow_error_set(err, STOW_EUSAGE, "object key %s is too long once encoded", key);
    snprintf(c->desc, sizeof(c->desc), "s3://%s/%s", b->loc.bucket, key);
    return STOW_OK;
}

void s3_call_free(s3_call *c)
{
    free(c->body);
    c->body = NULL;
}

/* Runs the call once (with the transport's retries). */
int s3_call_perform(s3_call *c, stow_httpc_request *req, stow_httpc_result *res, int get,
                    stow_error *err)
{
    char *url = malloc(S3_URL_MAX);
    if (url == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    int n = snprintf(url, S3_URL_MAX, "%s%s%s%s", c->b->loc.origin, c->path, c->query[0] ? "?" : "",
                     c->query);
    if (n < 0 || n >= S3_URL_MAX) {
        free(url);
        return stow_error_set(err, STOW_EUSAGE, "%s: request URL too long", c->desc);
    }
    req->url = url;
    req->headers = c->headers[0] ? c->headers : NULL;
    req->prepare = s3_prepare;
    req->on_error = s3_on_error;
    req->ud = c;
    if (c->collect) {
        req->sink = collect_sink;
        req->sink_ud = c;
    }
    int rc = get ? stow_httpc_get(c->b->hc, req, res, err)
                 : stow_httpc_perform(c->b->hc, req, res, err);
    if (rc != STOW_OK && c->collect && c->body_over)
        rc = stow_error_set(err, STOW_ECORRUPT, "%s %s: the answer is larger than %d bytes",
                            req->method, c->desc, S3_ANSWER_MAX);
    free(url);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * open / free
 * ------------------------------------------------------------------------------------------ */

static void s3_free(stow_backend *sb)
{
    s3_backend *b = (s3_backend *)sb;
    if (b == NULL)
        return;
    stow_httpc_free(b->hc);
    s3_mem_destroy(&b->mem);
    stow_s3_creds_clear(&b->creds);
    pthread_mutex_destroy(&b->creds_lock);
    free(b);
}

static int s3_open(stow_backend **out, const stow_backend_opts *opts, stow_error *err)
{
    *out = NULL;
    if (opts == NULL || opts->url == NULL)
        return stow_error_set(err, STOW_EUSAGE, "no store URL");
    s3_backend *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    b->base.ops = &stow_backend_s3_ops;
    pthread_mutex_init(&b->creds_lock, NULL);
    s3_mem_init(&b->mem, STOW_S3_UPLOAD_BUDGET);
    /* region: the setting, AWS_REGION, AWS_DEFAULT_REGION, then the profile's region */
    char profile_region[STOW_S3_REGION_MAX] = "";
    const char *region = opts->region;
    const char *env_rg = getenv("AWS_REGION"), *env_drg = getenv("AWS_DEFAULT_REGION");
    if ((region == NULL || region[0] == '\0') && (env_rg == NULL || env_rg[0] == '\0') &&
        (env_drg == NULL || env_drg[0] == '\0')) {
        stow_aws_profile_region(profile_region, sizeof(profile_region));
        region = profile_region[0] ? profile_region : NULL;
    }
    int rc = stow_s3_location_parse(&b->loc, opts->url, opts->endpoint, region, opts->path_style,
                                    err);
    if (rc != STOW_OK)
        goto done;
    snprintf(b->url_red, sizeof(b->url_red), "s3://%s%s%.*s", b->loc.bucket,
             b->loc.prefix[0] ? "/" : "", b->loc.prefix[0] ? (int)strlen(b->loc.prefix) - 1 : 0,
             b->loc.prefix);
    b->parallel = opts->parallel > 0 ? opts->parallel : S3_PARALLEL_DEFAULT;
    if (b->parallel > 64)
        b->parallel = 64;
    stow_s3_upload_plan(&b->part_base, &b->put_threads, b->mem.budget, b->parallel);

    stow_httpc_config cfg;
    stow_httpc_config_init(&cfg, opts);
    cfg.netrc = 0;
    cfg.userpwd = NULL;
    if (cfg.ca_bundle == NULL && getenv("AWS_CA_BUNDLE") != NULL && *getenv("AWS_CA_BUNDLE"))
        cfg.ca_bundle = getenv("AWS_CA_BUNDLE"); /* the ca_bundle option wins */
    cfg.headers = NULL;
    rc = stow_httpc_new(&b->hc, &cfg, err);
    if (rc != STOW_OK)
        goto done;

    if ((opts->sts_endpoint &&
         stow_strlcpy(b->sts_endpoint, opts->sts_endpoint, sizeof(b->sts_endpoint))) ||
        (opts->ca_bundle && stow_strlcpy(b->ca_bundle, opts->ca_bundle, sizeof(b->ca_bundle)))) {
        rc = stow_error_set(err, STOW_EUSAGE, "sts_endpoint or ca_bundle too long");
        goto done;
    }
    b->sts.endpoint = b->sts_endpoint[0] ? b->sts_endpoint : NULL;
    b->sts.ca_bundle = b->ca_bundle[0] ? b->ca_bundle : NULL;
    b->sts.region = b->loc.region;
    rc = stow_s3_creds_resolve_opts(&b->creds, &b->sts, err);
    if (rc != STOW_OK) {
        stow_error_wrap(err, "%s: no usable AWS credentials", b->url_red);
        if (err)
            err->code = STOW_EAUTH;
        rc = STOW_EAUTH;
        goto done;
    }
    stow_debug("s3 store %s: %s %s (endpoint from %s), region %s, credentials from %s", b->url_red,
               b->loc.path_style ? "path-style" : "virtual-hosted", b->loc.origin,
               b->loc.endpoint_from, b->loc.region, b->creds.source);
done:
    if (rc != STOW_OK) {
        s3_free(&b->base);
        return rc;
    }
    *out = &b->base;
    return STOW_OK;
}

/* ------------------------------------------------------------------------------------------
 * get / head / delete
 * ------------------------------------------------------------------------------------------ */

static int s3_get(stow_backend *sb, const char *name, uint64_t offset, uint64_t length,
                  stow_sink_fn sink, void *ud, stow_error *err)
{
    s3_backend *b = (s3_backend *)sb;
    s3_call *c = malloc(sizeof(*c));
    if (c == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    int rc = s3_call_init(c, b, name, err);
    if (rc == STOW_OK) {
        stow_httpc_request req = {0};
        req.method = "GET";
        req.offset = offset;
        req.length = length;
        req.sink = sink;
        req.sink_ud = ud;
        rc = s3_call_perform(c, &req, NULL, 1, err);
        /* A range starting at the end of the object is empty, not an error: S3 answers
         * 416 InvalidRange with ActualObjectSize (and an empty object always gets it,
         * since the first part of a GET is a range request) */
        if (rc != STOW_OK && atomic_load(&c->range_size) >= 0 &&
            (uint64_t)atomic_load(&c->range_size) == offset) {
            stow_error_clear(err);
            rc = STOW_OK;
        }
    }
    s3_call_free(c);
    free(c);
    return rc;
}

static int discard_sink(void *ud, const void *buf, size_t len)
{
    (void)ud;
    (void)buf;
    (void)len;
    return 0;
}

/* A refused HEAD has no body, so no S3 error code: a 1-byte GET of the same object gets the
 * code for the message (only after a failure other than a miss). */
static int head_diagnose(s3_call *c, const char *name, int rc, stow_error *err)
{
    stow_error e;
    stow_error_clear(&e);
    if (s3_call_init(c, c->b, name, &e) != STOW_OK)
        return rc;
    c->keep_error = 1;
    stow_httpc_request req = {0};
    req.method = "GET";
    req.offset = 0;
    req.length = 1;
    req.sink = discard_sink;
    int rc2 = s3_call_perform(c, &req, NULL, 0, &e);
    if (rc2 == STOW_OK || c->last.code[0] == '\0')
        return rc;
    stow_debug("HEAD %s failed; a 1-byte GET gave the S3 error code %s", c->desc, c->last.code);
    if (err)
        *err = e;
    return rc2;
}

static int s3_head(stow_backend *sb, const char *name, stow_object_info *info, stow_error *err)
{
    s3_backend *b = (s3_backend *)sb;
    s3_call *c = malloc(sizeof(*c));
    if (c == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    int rc = s3_call_init(c, b, name, err);
    if (rc == STOW_OK) {
        stow_httpc_request req = {0};
        stow_httpc_result res = {0};
        req.method = "HEAD";
        rc = s3_call_perform(c, &req, &res, 0, err);
        if (rc == STOW_OK && info) {
            info->size = res.content_length >= 0 ? (uint64_t)res.content_length : 0;
            info->mtime = res.last_modified;
        }
        if (rc != STOW_OK && res.status != 404 && res.status >= 300 && res.status < 500)
            rc = head_diagnose(c, name, rc, err);
    }
    s3_call_free(c);
    free(c);
    return rc;
}

static int s3_del(stow_backend *sb, const char *name, stow_error *err)
{
    s3_backend *b = (s3_backend *)sb;
    s3_call *c = malloc(sizeof(*c));
    if (c == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    int rc = s3_call_init(c, b, name, err);
    if (rc == STOW_OK) {
        stow_httpc_request req = {0};
        req.method = "DELETE";
        rc = s3_call_perform(c, &req, NULL, 0, err);
        if (rc == STOW_ENOTFOUND) {
            stow_error_clear(err);
            rc = STOW_OK;
        }
    }
    s3_call_free(c);
    free(c);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * list (ListObjectsV2)
 * ------------------------------------------------------------------------------------------ */

typedef struct list_ctx {
    s3_backend *b;
    const char *want; /* full key prefix the caller asked for (store prefix + prefix) */
    size_t want_len;
    size_t strip; /* bytes of store prefix removed from keys */
    stow_list_fn fn;
    void *ud;
    stow_s3_list_parser *page;
    int page_rc; /* of the last feed: 0, 1 stopped, -1 bad */
    int stopped; /* the caller's fn asked to stop, or the keys went past the wanted range */
    uint64_t seen, matched;
} list_ctx;

static int list_key(void *ud, const char *key, uint64_t size, int64_t mtime)
{
    list_ctx *l = ud;
    l->seen++;
    if (strncmp(key, l->want, l->want_len) != 0) {
        if (strcmp(key, l->want) > 0) {
            /* keys come in order: everything from here on is past the wanted range */
            l->stopped = 1;
            return 1;
        }
        return 0;
    }
    const char *name = key + l->strip;
    if (!stow_backend_name_ok(name)) {
        stow_debug("%s: skipping key \"%.200s\" (not a stowage object name)", l->b->url_red, key);
        return 0;
    }
    stow_object_info info = {size, mtime};
    l->matched++;
    if (l->fn(l->ud, name, &info) != 0) {
        l->stopped = 1;
        return 1;
    }
    return 0;
}

static int list_sink(void *ud, const void *buf, size_t len)
{
    list_ctx *l = ud;
    l->page_rc = stow_s3_list_parser_feed(l->page, buf, len, 0);
    return l->page_rc == 0 ? 0 : -1;
}

/* Length of the leading part of s that SigV4 encoding leaves alone. */
static size_t unencoded_len(const char *s)
{
    size_t n = 0;
    while (s[n] && s3_unreserved((unsigned char)s[n]))
        n++;
    return n;
}

static int s3_list(stow_backend *sb, const char *prefix, stow_list_fn fn, void *ud, stow_error *err)
{
    s3_backend *b = (s3_backend *)sb;
    char want[STOW_S3_PREFIX_MAX + S3_KEY_MAX + 2];
    char enc[3 * (STOW_S3_PREFIX_MAX + S3_KEY_MAX) + 1];
    char tok_enc[3 * S3_TOKEN_MAX + 1];
    int n = snprintf(want, sizeof(want), "%s%s", b->loc.prefix, prefix ? prefix : "");
    if (n < 0 || (size_t)n >= sizeof(want) || n > S3_KEY_MAX)
        return stow_error_set(err, STOW_EUSAGE, "list prefix too long");
    list_ctx *l = calloc(1, sizeof(*l));
    s3_call *c = malloc(sizeof(*c));
    int rc = STOW_OK;
    if (l == NULL || c == NULL) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    l->b = b;
    l->want = want;
    l->want_len = (size_t)n;
    l->strip = strlen(b->loc.prefix);
    l->fn = fn;
    l->ud = ud;
    char token[S3_TOKEN_MAX + 1] = "";
    int fallback_tried = 0;
    unsigned long pages = 0;
restart:
    token[0] = '\0';
    for (;;) {
        int unenc = atomic_load(&b->list_unencoded);
        char sent[sizeof(want)];
        size_t sl = unenc ? unencoded_len(want) : (size_t)n;
        memcpy(sent, want, sl);
        sent[sl] = '\0';
        if (stow_sigv4_uri_encode(enc, sizeof(enc), sent, 1) != 0 ||
            stow_sigv4_uri_encode(tok_enc, sizeof(tok_enc), token, 1) != 0) {
            rc = stow_error_set(err, STOW_ERR, "list query too long");
            goto done;
        }
        rc = s3_call_init(c, b, NULL, err);
        if (rc != STOW_OK)
            goto done;
        c->keep_error = 1;
        snprintf(c->desc, sizeof(c->desc), "%s (listing %s)", b->url_red,
                 prefix && *prefix ? prefix : "everything");
        int qn = snprintf(c->query, sizeof(c->query), "list-type=2&prefix=%s%s%s", enc,
                          token[0] ? "&continuation-token=" : "", token[0] ? tok_enc : "");
        if (qn < 0 || (size_t)qn >= sizeof(c->query)) {
            rc = stow_error_set(err, STOW_ERR, "list query too long");
            goto done;
        }
        stow_s3_list_parser_free(l->page);
        l->page = NULL;
        l->page_rc = 0;
        if (stow_s3_list_parser_new(&l->page, list_key, l) != STOW_OK) {
            rc = stow_error_set(err, STOW_ERR, "out of memory");
            goto done;
        }
        stow_httpc_request req = {0};
        req.method = "GET";
        req.sink = list_sink;
        req.sink_ud = l;
        rc = s3_call_perform(c, &req, NULL, 0, err);
        if (rc == STOW_OK && l->page_rc == 0)
            l->page_rc = stow_s3_list_parser_feed(l->page, "", 0, 1);
        if (l->page_rc == 1) {
            stow_error_clear(err);
            rc = STOW_OK;
            pages++;
            break;
        }
        if (l->page_rc < 0) {
            rc = stow_error_set(err, STOW_ECORRUPT, "GET %s: %s", c->desc,
                                stow_s3_list_parser_error(l->page));
            goto done;
        }
        if (rc == STOW_EAUTH && !unenc && !fallback_tried && pages == 0 &&
            strcmp(c->last.code, "SignatureDoesNotMatch") == 0 && strchr(enc, '%') != NULL) {
            fallback_tried = 1;
            atomic_store(&b->list_unencoded, 1);
            stow_debug("%s: the server refused the signature of a listing with an encoded "
                       "prefix; listing with the prefix \"%.*s\" and filtering from now on",
                       b->url_red, (int)unencoded_len(want), want);
            goto restart;
        }
        if (rc != STOW_OK)
            goto done;
        pages++;
        if (!stow_s3_list_parser_truncated(l->page))
            break;
        const char *next = stow_s3_list_parser_token(l->page);
        if (next == NULL || next[0] == '\0') {
            rc = stow_error_set(err, STOW_ECORRUPT,
                                "GET %s: a truncated listing without a usable continuation "
                                "token",
                                c->desc);
            goto done;
        }
        stow_strlcpy(token, next, sizeof(token));
        if (pages >= S3_LIST_PAGES_MAX) {
            rc = stow_error_set(err, STOW_ERR, "GET %s: more than %d pages", c->desc,
                                S3_LIST_PAGES_MAX);
            goto done;
        }
    }
    stow_debug("%s: listed %s: %" PRIu64 " keys seen, %" PRIu64 " matched, %lu pages", b->url_red,
               prefix && *prefix ? prefix : "everything", l->seen, l->matched, pages);
done:
    if (c != NULL)
        s3_call_free(c);
    free(c);
    if (l != NULL)
        stow_s3_list_parser_free(l->page);
    free(l);
    return rc;
}

const stow_backend_ops stow_backend_s3_ops = {
    .version = STOW_BACKEND_VERSION,
    .scheme = "s3",
    .open = s3_open,
    .get = s3_get,
    .put_begin = s3_put_begin,
    .put_write = s3_put_write,
    .put_commit = s3_put_commit,
    .put_abort = s3_put_abort,
    .head = s3_head,
    .del = s3_del,
    .list = s3_list,
    .free = s3_free,
};
