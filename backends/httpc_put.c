/* The streamed upload: a thread runs the request whose body is fed by put_write through a
 * bounded ring that can replay the body for a retry while it still holds all of it. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "httpc_int.h"
#include "log.h"
#include "util.h"

/* ---------------------------------------------------------------- upload pipe */

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
size_t httpc_upipe_read(upipe *p, char *buf, size_t len)
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
int httpc_upipe_rewind(upipe *p)
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
    httpc_xfer_init(&x, u->h, &u->req, u->method);
    x.pipe = &u->pipe;
    x.sink = u->req.sink;
    x.sink_ud = u->req.sink_ud;
    int rc = httpc_run_xfer(&x, &u->res, &e);
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
    httpc_free_strv(u->headers);
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
    int rc = httpc_check_request(req, err);
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
    if (u->method == NULL || u->url == NULL || httpc_dup_strv(&u->headers, req->headers) != 0 ||
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
                stow_error_set(err, STOW_ERR,
                               "%s %s: the server answered before the body was "
                               "complete",
                               u->method, u->url_red);
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
