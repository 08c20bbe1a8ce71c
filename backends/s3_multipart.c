/* S3 put: PutObject for objects smaller than one part, multipart uploads otherwise (see
 * the top of s3.c). */
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
#include "s3_int.h"
#include "util.h"

/* ------------------------------------------------------------------------------------------
 * put: PutObject or multipart
 * ------------------------------------------------------------------------------------------ */

/* The first part stays in a small growing buffer up to this much: objects smaller than that
 * (manifests, refs) take no part buffer from the budget. */
#define S3_SMALL_PART (1u << 20)

typedef struct part_job {
    unsigned number;
    s3_part_buf data; /* the part's bytes, from the backend's budget */
} part_job;

typedef struct part_etag {
    char etag[STOW_HTTPC_ETAG_MAX];
} part_etag;

struct stow_put {
    s3_backend *b;
    char name[S3_KEY_MAX + 1];
    unsigned flags;
    int64_t size_hint;
    uint64_t total;

    /* the part being filled: the first S3_SMALL_PART bytes of part 1 in small, then a part
     * buffer from the budget in cur */
    stow_buf small;
    s3_part_buf cur;
    uint64_t part_size; /* of the part being filled */
    unsigned part_no;   /* its number, 1-based */

    /* multipart, once started */
    char upload_id[S3_UPLOAD_ID_MAX + 1];
    int started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t *threads;
    int nthreads;
    part_job *queue; /* ring of qcap jobs */
    size_t qcap, q_head, q_len;
    int inflight;   /* jobs queued or being uploaded */
    stow_buf etags; /* part_etag records, index part number - 1; see etag_at */
    int stop;       /* workers exit once the queue is empty */
    _Atomic int cancel;
    int failed;
    stow_error err;
    int64_t t0;
};

static const char *content_type(const char *name)
{
    size_t n = strlen(name);
    if (n >= 5 && strcmp(name + n - 5, ".json") == 0)
        return "Content-Type: application/json";
    return "Content-Type: application/octet-stream";
}

int s3_put_begin(stow_put **out, stow_backend *sb, const char *name, int64_t size_hint,
                 unsigned flags, stow_error *err)
{
    s3_backend *b = (s3_backend *)sb;
    *out = NULL;
    if (!stow_backend_name_ok(name) || strlen(name) > S3_KEY_MAX)
        return stow_error_set(err, STOW_EUSAGE, "invalid object name \"%.200s\"", name ? name : "");
    stow_put *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    p->b = b;
    memcpy(p->name, name, strlen(name) + 1);
    p->flags = flags;
    p->size_hint = size_hint;
    p->part_no = 1;
    p->part_size = stow_s3_part_size(b->part_base, size_hint, 1);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    atomic_init(&p->cancel, 0);
    p->t0 = stow_now_ms();
    stow_buf_init(&p->etags, (size_t)STOW_S3_MAX_PARTS * sizeof(part_etag));
    stow_buf_init(&p->small, S3_SMALL_PART);
    *out = p;
    return STOW_OK;
}

/* The ETag record of part number n (1-based); the caller holds p->lock. */
static part_etag *etag_at(stow_put *p, unsigned n)
{
    return (part_etag *)(void *)p->etags.ptr + (n - 1);
}

/* The upload ID as a query value. */
static int upload_query(char *out, size_t cap, const stow_put *p, unsigned part)
{
    char enc[3 * S3_UPLOAD_ID_MAX + 1];
    if (stow_sigv4_uri_encode(enc, sizeof(enc), p->upload_id, 1) != 0)
        return -1;
    int n = part ? snprintf(out, cap, "partNumber=%u&uploadId=%s", part, enc)
                 : snprintf(out, cap, "uploadId=%s", enc);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* Uploads one part from a worker thread; fills etag. */
static int upload_part(stow_put *p, const part_job *j, char *etag, stow_error *err)
{
    s3_call *c = malloc(sizeof(*c));
    if (c == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    int rc = s3_call_init(c, p->b, p->name, err);
    if (rc != STOW_OK)
        goto done;
    if (upload_query(c->query, sizeof(c->query), p, j->number) != 0) {
        rc = stow_error_set(err, STOW_ERR, "upload ID too long");
        goto done;
    }
    c->cancel = &p->cancel;
    stow_sigv4_payload_hash(c->payload_hash, j->data.ptr, j->data.len);
    stow_httpc_request req = {0};
    stow_httpc_result res;
    req.method = "PUT";
    req.body_type = STOW_HTTPC_BODY_BUFFER;
    req.body = j->data.ptr;
    req.body_len = j->data.len;
    rc = s3_call_perform(c, &req, &res, 0, err);
    if (rc == STOW_OK) {
        if (res.etag[0] == '\0')
            rc = stow_error_set(err, STOW_ERR, "PUT %s part %u: the server sent no ETag", c->desc,
                                j->number);
        else
            memcpy(etag, res.etag, sizeof(res.etag));
    } else {
        stow_error_wrap(err, "part %u", j->number);
    }
done:
    s3_call_free(c);
    free(c);
    return rc;
}

static void *part_worker(void *arg)
{
    stow_put *p = arg;
    char etag[STOW_HTTPC_ETAG_MAX];
    for (;;) {
        pthread_mutex_lock(&p->lock);
        while (p->q_len == 0 && !p->stop)
            pthread_cond_wait(&p->cond, &p->lock);
        if (p->q_len == 0) {
            pthread_mutex_unlock(&p->lock);
            break;
        }
        part_job j = p->queue[p->q_head];
        p->q_head = (p->q_head + 1) % p->qcap;
        p->q_len--;
        int skip = p->failed;
        pthread_mutex_unlock(&p->lock);

        stow_error e;
        stow_error_clear(&e);
        int rc = skip ? STOW_ERR : upload_part(p, &j, etag, &e);

        pthread_mutex_lock(&p->lock);
        if (!skip && rc == STOW_OK) {
            memcpy(etag_at(p, j.number)->etag, etag, sizeof(etag));
        } else if (!skip && !p->failed) {
            p->failed = 1;
            p->err = e;
            atomic_store(&p->cancel, 1);
        }
        p->inflight--;
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
        s3_mem_put(&p->b->mem, &j.data); /* for the next part, of this upload or another */
    }
    return NULL;
}

/* Runs a POST (create or complete) on the object; body may be NULL. The answer is left in
 * c->body / c->body_len. */
static int post_xml(stow_put *p, const char *query, const char *body, size_t body_len,
                    const char *const *headers, s3_call *c, stow_error *err)
{
    int rc = s3_call_init(c, p->b, p->name, err);
    if (rc != STOW_OK)
        return rc;
    stow_strlcpy(c->query, query, sizeof(c->query));
    c->collect = 1;
    c->keep_error = 1;
    for (int i = 0; headers && headers[i] && i < 3; i++)
        c->headers[i] = headers[i];
    if (body)
        stow_sigv4_payload_hash(c->payload_hash, body, body_len);
    stow_httpc_request req = {0};
    req.method = "POST";
    if (body) {
        req.body_type = STOW_HTTPC_BODY_BUFFER;
        req.body = body;
        req.body_len = body_len;
    }
    return s3_call_perform(c, &req, NULL, 0, err);
}

static int multipart_start(stow_put *p, stow_error *err)
{
    s3_backend *b = p->b;
    s3_call *c = malloc(sizeof(*c));
    int rc;
    if (c == NULL) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    const char *hdrs[] = {content_type(p->name), NULL};
    rc = post_xml(p, "uploads", NULL, 0, hdrs, c, err);
    if (rc != STOW_OK) {
        stow_error_wrap(err, "CreateMultipartUpload");
        goto done;
    }
    if (stow_s3_xml_upload_id(p->upload_id, c->body ? c->body : "", c->body_len) != 0) {
        rc = stow_error_set(err, STOW_ECORRUPT, "POST %s?uploads: no usable UploadId in the answer",
                            c->desc);
        goto done;
    }

    int nt = b->put_threads;
    p->queue = calloc((size_t)nt, sizeof(*p->queue));
    p->qcap = (size_t)nt;
    p->threads = calloc((size_t)nt, sizeof(*p->threads));
    if (!p->queue || !p->threads) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    p->started = 1; /* from here on, failures abort the upload */
    for (int i = 0; i < nt; i++) {
        if (pthread_create(&p->threads[i], NULL, part_worker, p) != 0)
            break;
        p->nthreads++;
    }
    if (p->nthreads == 0) {
        rc = stow_error_set(err, STOW_ERR, "cannot start upload threads");
        goto done;
    }
    stow_debug("PUT %s: multipart upload started (%" PRIu64 " MiB parts, %d threads)", c->desc,
               p->part_size >> 20, p->nthreads);
done:
    if (c)
        s3_call_free(c);
    free(c);
    return rc;
}

/* Hands the full current part to the workers and gets a buffer for the next one. */
static int dispatch_part(stow_put *p, stow_error *err)
{
    int rc;
    if (!p->started && (rc = multipart_start(p, err)) != STOW_OK)
        return rc;
    if (p->part_no > STOW_S3_MAX_PARTS)
        return stow_error_set(err, STOW_ERR, "PUT %s: more than %u parts", p->name,
                              STOW_S3_MAX_PARTS);
    pthread_mutex_lock(&p->lock); /* workers write into etags */
    static const part_etag none;
    if (p->etags.len < (size_t)p->part_no * sizeof(part_etag) &&
        stow_buf_add(&p->etags, &none, sizeof(none), err) != STOW_OK) {
        pthread_mutex_unlock(&p->lock);
        return err && err->code != STOW_OK ? err->code : STOW_ERR;
    }
    /* memory bound: nthreads parts with the workers, one being filled */
    while (!p->failed && p->inflight >= p->nthreads)
        pthread_cond_wait(&p->cond, &p->lock);
    if (p->failed) {
        if (err)
            *err = p->err;
        rc = p->err.code != STOW_OK ? p->err.code : STOW_ERR;
        pthread_mutex_unlock(&p->lock);
        return rc;
    }
    size_t at = (p->q_head + p->q_len) % p->qcap;
    p->queue[at] = (part_job){p->part_no, p->cur};
    memset(&p->cur, 0, sizeof(p->cur)); /* the next write takes a buffer from the budget */
    p->q_len++;
    p->inflight++;
    pthread_cond_broadcast(&p->cond);
    p->part_no++;
    p->part_size = stow_s3_part_size(p->b->part_base, p->size_hint, p->part_no);
    pthread_mutex_unlock(&p->lock);
    return STOW_OK;
}

int s3_put_write(stow_put *p, const void *buf, size_t len, stow_error *err)
{
    const unsigned char *src = buf;
    while (len > 0) {
        if (atomic_load(&p->cancel)) {
            pthread_mutex_lock(&p->lock);
            stow_error e = p->err;
            pthread_mutex_unlock(&p->lock);
            if (err)
                *err = e;
            return e.code != STOW_OK ? e.code : STOW_ERR;
        }
        size_t filled = p->cur.ptr ? p->cur.len : p->small.len;
        if (filled == p->part_size) {
            int rc = dispatch_part(p, err);
            if (rc != STOW_OK)
                return rc;
            continue;
        }
        size_t room = (size_t)(p->part_size - filled);
        size_t n = len < room ? len : room;
        if (p->cur.ptr == NULL && (p->part_no > 1 || p->small.len + n > S3_SMALL_PART)) {
            /* a full-size part buffer from the budget (may wait for one to come back) */
            if (s3_mem_get(&p->cur, &p->b->mem, (size_t)p->part_size) != 0)
                return stow_error_set(err, STOW_ERR,
                                      "PUT %s: out of memory for a %" PRIu64 " MiB part", p->name,
                                      p->part_size >> 20);
            if (p->small.len > 0)
                memcpy(p->cur.ptr, p->small.ptr, p->small.len);
            p->cur.len = p->small.len;
            stow_buf_free(&p->small);
            stow_buf_init(&p->small, S3_SMALL_PART);
        }
        if (p->cur.ptr != NULL) {
            memcpy(p->cur.ptr + p->cur.len, src, n);
            p->cur.len += n;
        } else if (stow_buf_add(&p->small, src, n, err) != STOW_OK) {
            return STOW_ERR;
        }
        p->total += n;
        src += n;
        len -= n;
    }
    return STOW_OK;
}

/* Stops the workers (after the queue drained, or at once when cancelled) and joins them. */
static void workers_stop(stow_put *p, int cancel)
{
    pthread_mutex_lock(&p->lock);
    if (cancel)
        atomic_store(&p->cancel, 1);
    if (cancel)
        p->failed = p->failed ? p->failed : 1;
    p->stop = 1;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    p->nthreads = 0;
}

static void multipart_abort(stow_put *p)
{
    s3_call *c = malloc(sizeof(*c));
    stow_error e;
    stow_error_clear(&e);
    if (c == NULL || s3_call_init(c, p->b, p->name, &e) != STOW_OK ||
        upload_query(c->query, sizeof(c->query), p, 0) != 0) {
        stow_warn("cannot abort the multipart upload of %s: %s", p->name, e.msg);
        free(c);
        return;
    }
    c->keep_error = 1;
    stow_httpc_request req = {0};
    req.method = "DELETE";
    int rc = s3_call_perform(c, &req, NULL, 0, &e);
    if (rc == STOW_OK || rc == STOW_ENOTFOUND || strcmp(c->last.code, "NoSuchUpload") == 0)
        stow_debug("DELETE %s: multipart upload aborted%s", c->desc,
                   rc == STOW_OK ? "" : " (it was already gone)");
    else if (strcmp(c->last.code, "MethodNotAllowed") == 0 ||
             strcmp(c->last.code, "NotImplemented") == 0)
        stow_debug("DELETE %s: this server cannot abort multipart uploads (%s); its parts "
                   "stay until it cleans them up",
                   c->desc, c->last.code);
    else
        stow_warn("could not abort the multipart upload of %s, its parts may stay billed until "
                  "a lifecycle rule removes them: %s",
                  c->desc, e.msg);
    s3_call_free(c);
    free(c);
}

static void put_free(stow_put *p)
{
    if (p == NULL)
        return;
    stow_buf_free(&p->small);
    s3_mem_put(&p->b->mem, &p->cur);
    for (size_t i = 0; i < p->q_len; i++)
        s3_mem_put(&p->b->mem, &p->queue[(p->q_head + i) % p->qcap].data);
    free(p->queue);
    free(p->threads);
    stow_buf_free(&p->etags);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
    free(p);
}

/* Appends s with XML's five entities escaped; a failure shows in b->failed. */
static void add_xml_text(stow_buf *b, const char *s)
{
    for (; *s; s++) {
        const char *esc = NULL;
        switch (*s) {
        case '&': esc = "&amp;"; break;
        case '<': esc = "&lt;"; break;
        case '>': esc = "&gt;"; break;
        case '"': esc = "&quot;"; break;
        case '\'': esc = "&apos;"; break;
        default: break;
        }
        if (esc)
            (void)stow_buf_adds(b, esc, NULL);
        else
            (void)stow_buf_add(b, s, 1, NULL);
    }
}

static int multipart_complete(stow_put *p, unsigned nparts, stow_error *err)
{
    static const char *const if_absent = "If-None-Match: *";
    stow_buf x;
    stow_buf_init(&x, (size_t)STOW_S3_MAX_PARTS * 512 + 1024);
    s3_call *c = malloc(sizeof(*c));
    char query[3 * S3_UPLOAD_ID_MAX + 32];
    int rc = STOW_ERR;
    if (c == NULL || upload_query(query, sizeof(query), p, 0) != 0) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    /* adds that fail show in x.failed, checked once */
    (void)stow_buf_adds(&x,
                        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CompleteMultipartUpload "
                        "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">",
                        NULL);
    for (unsigned i = 1; i <= nparts && !x.failed; i++) {
        (void)stow_buf_addf(&x, NULL, "<Part><PartNumber>%u</PartNumber><ETag>", i);
        add_xml_text(&x, etag_at(p, i)->etag);
        (void)stow_buf_adds(&x, "</ETag></Part>", NULL);
    }
    (void)stow_buf_adds(&x, "</CompleteMultipartUpload>", NULL);
    if (x.failed) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    const char *hdrs[] = {"Content-Type: application/xml",
                          (p->flags & STOW_PUT_IF_ABSENT) ? if_absent : NULL, NULL};
    for (int attempt = 1;; attempt++) {
        rc = post_xml(p, query, stow_buf_str(&x), x.len, hdrs, c, err);
        if (rc != STOW_OK)
            break;
        /* "200 OK" can still carry an <Error> (S3 sends it when it fails late) */
        stow_s3_error_info e;
        int bad = stow_s3_xml_error(&e, c->body ? c->body : "", c->body_len) != 0;
        if (!bad && strcmp(e.root, "Error") == 0) {
            rc = stow_error_set(err, STOW_ERR, "POST %s: CompleteMultipartUpload failed (%s%s%s)",
                                c->desc, e.code, e.message[0] ? ": " : "", e.message);
            if ((strcmp(e.code, "InternalError") == 0 || strcmp(e.code, "SlowDown") == 0) &&
                attempt < S3_COMPLETE_TRIES) {
                stow_warn("%s; retrying", err ? err->msg : "CompleteMultipartUpload failed");
                struct timespec ts = {attempt, 0};
                nanosleep(&ts, NULL);
                s3_call_free(c);
                continue;
            }
            break;
        }
        /* AWS answers <CompleteMultipartUploadResult>, moto <...Response>: a 200 without
         * <Error> is success */
        if (bad || strcmp(e.root, "CompleteMultipartUploadResult") != 0)
            stow_debug("POST %s: CompleteMultipartUpload answered 200 with <%s>", c->desc,
                       bad ? "unparsable XML" : e.root);
        break;
    }
done:
    if (c)
        s3_call_free(c);
    free(c);
    stow_buf_free(&x);
    return rc;
}

static int put_single(stow_put *p, stow_error *err)
{
    static const char *const if_absent = "If-None-Match: *";
    s3_call *c = malloc(sizeof(*c));
    if (c == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    int rc = s3_call_init(c, p->b, p->name, err);
    if (rc == STOW_OK) {
        c->headers[0] = content_type(p->name);
        c->headers[1] = (p->flags & STOW_PUT_IF_ABSENT) ? if_absent : NULL;
        const void *body = p->cur.ptr ? (const void *)p->cur.ptr : stow_buf_str(&p->small);
        size_t body_len = p->cur.ptr ? p->cur.len : p->small.len;
        stow_sigv4_payload_hash(c->payload_hash, body, body_len);
        stow_httpc_request req = {0};
        req.method = "PUT";
        req.body_type = STOW_HTTPC_BODY_BUFFER;
        req.body = body;
        req.body_len = body_len;
        rc = s3_call_perform(c, &req, NULL, 0, err);
    }
    s3_call_free(c);
    free(c);
    return rc;
}

int s3_put_commit(stow_put *p, stow_error *err)
{
    int rc;
    if (atomic_load(&p->cancel)) {
        pthread_mutex_lock(&p->lock);
        if (err)
            *err = p->err;
        rc = p->err.code != STOW_OK ? p->err.code : STOW_ERR;
        pthread_mutex_unlock(&p->lock);
        goto fail;
    }
    if (!p->started) {
        rc = put_single(p, err);
        put_free(p);
        return rc;
    }
    unsigned nparts = p->part_no; /* the last part is the one being filled (never empty) */
    rc = dispatch_part(p, err);
    if (rc != STOW_OK)
        goto fail;
    workers_stop(p, 0);
    if (p->failed) {
        if (err)
            *err = p->err;
        rc = p->err.code != STOW_OK ? p->err.code : STOW_ERR;
        goto fail;
    }
    for (unsigned i = 0; i < nparts; i++)
        if (etag_at(p, i + 1)->etag[0] == '\0') {
            rc = stow_error_set(err, STOW_ERR, "PUT %s: part %u has no ETag", p->name, i + 1);
            goto fail;
        }
    rc = multipart_complete(p, nparts, err);
    if (rc != STOW_OK)
        goto fail;
    int64_t ms = stow_now_ms() - p->t0;
    stow_debug("PUT %s/%s: multipart upload complete, %u parts, %" PRIu64 " bytes, %" PRId64
               " ms (%.1f MB/s)",
               p->b->url_red, p->name, nparts, p->total, ms,
               ms > 0 ? (double)p->total / 1e3 / (double)ms : 0.0);
    put_free(p);
    return STOW_OK;
fail:
    if (p->started) {
        workers_stop(p, 1);
        multipart_abort(p);
    }
    put_free(p);
    return rc;
}

void s3_put_abort(stow_put *p)
{
    if (p == NULL)
        return;
    if (p->started) {
        workers_stop(p, 1);
        multipart_abort(p);
    }
    put_free(p);
}
