/* The parallel ranged GET: part 0 streams while workers fetch the next parts into bounded
 * buffers, delivered strictly in order. */
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

/* ---------------------------------------------------------------- parallel ranged get */

/* Memory for the parts fetched ahead, per GET, whatever parallel and part_size say: a restore
 * runs a GET per layer it extracts at once, and each worker's part sits in memory until it is
 * delivered. With 4 workers and 8 MiB parts that was 32 MiB per layer, most of the extra peak
 * RSS of a restore from nginx over one from the file store. Parts shrink to fit (never below
 * PGET_PART_MIN) before connections are given up. All the GETs running at once on one
 * transport share STOW_HTTPC_AHEAD_BUDGET (httpc.h), so a restore on more cores (a GET per
 * layer thread) does not multiply it. */
#define PGET_AHEAD_MAX (4u << 20)
#define PGET_PART_MIN (256u << 10)
/* The drain hands bytes to the caller's sink in pieces of at least this much (or the rest of
 * a part), and a worker wakes it only when this much more arrived: one wake-up per MiB
 * instead of one per network read (futex calls and context switches were 10x and 4x the file
 * store's). */
#define PGET_DELIVER_MIN (1u << 20)

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
    uint64_t ahead; /* bytes of h's read-ahead budget taken */
    int sequential; /* no budget left: parts 1.. stream on part 0's thread, no read-ahead */
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
        return -1;                        /* cannot happen: the transfer is cut at the part end */
    memcpy(s->buf + s->filled, buf, len); /* the reader only looks below filled */
    pthread_mutex_lock(&ws->pg->lock);
    uint64_t before = s->filled;
    s->filled += len;
    /* the drain waits for PGET_DELIVER_MIN more or for the part's end (done wakes it too) */
    if (before / PGET_DELIVER_MIN != s->filled / PGET_DELIVER_MIN || s->filled == s->len)
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
        httpc_xfer_init(&x, pg->h, pg->req, "GET");
        httpc_xfer_range(&x, off, s->len);
        x.sink = slot_sink;
        x.sink_ud = &ws;
        x.abort_flag = &pg->abort;
        x.no_headers = 1;
        x.expect_total = pg->total;
        memcpy(x.if_match, pg->if_match, sizeof(x.if_match));
        int rc = httpc_run_xfer(&x, NULL, &e);
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

/* Takes up to want parts of read-ahead from h's budget; 0 when it has no room for one part
 * (the GET then streams the rest on one connection). */
static size_t ahead_take(pget *pg, size_t want)
{
    stow_httpc *h = pg->h;
    pthread_mutex_lock(&h->ahead_lock);
    uint64_t left = h->ahead_held < STOW_HTTPC_AHEAD_BUDGET
                        ? STOW_HTTPC_AHEAD_BUDGET - h->ahead_held
                        : 0;
    if (want > left / pg->part)
        want = (size_t)(left / pg->part);
    pg->ahead = (uint64_t)want * pg->part;
    h->ahead_held += pg->ahead;
    if (h->ahead_held > h->ahead_peak)
        h->ahead_peak = h->ahead_held;
    pthread_mutex_unlock(&h->ahead_lock);
    return want;
}

static void ahead_give_back(pget *pg)
{
    stow_httpc *h = pg->h;
    pthread_mutex_lock(&h->ahead_lock);
    h->ahead_held -= pg->ahead;
    pthread_mutex_unlock(&h->ahead_lock);
    pg->ahead = 0;
}

uint64_t stow_httpc_ahead_peak(stow_httpc *h)
{
    pthread_mutex_lock(&h->ahead_lock);
    uint64_t peak = h->ahead_peak;
    pthread_mutex_unlock(&h->ahead_lock);
    return peak;
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
    httpc_copy_etag(pg->if_match, etag);
    pg->nparts = (size_t)nparts;
    pg->next_part = 1;
    size_t want = (size_t)pg->h->cfg.parallel;
    if (want > pg->nparts - 1)
        want = pg->nparts - 1;
    if (want > PGET_AHEAD_MAX / pg->part)
        want = PGET_AHEAD_MAX / pg->part > 0 ? (size_t)(PGET_AHEAD_MAX / pg->part) : 1;
    want = ahead_take(pg, want);
    if (want == 0) {
        pg->sequential = 1;
        return;
    }
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
            while (!pg->failed &&
                   (s->part != p ||
                    (!s->done && s->filled - sent < PGET_DELIVER_MIN && s->filled < s->len)))
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
    int rc = httpc_check_request(req, err);
    if (rc != STOW_OK)
        return rc;
    uint64_t part = h->cfg.part_size;
    if (h->cfg.parallel > 1) {
        uint64_t ahead = (uint64_t)h->cfg.parallel, fit = PGET_AHEAD_MAX / ahead;
        if (fit < PGET_PART_MIN)
            fit = PGET_PART_MIN;
        if (part > fit)
            part = fit & ~(uint64_t)0xffff; /* whole 64 KiB */
    }
    xfer x;
    httpc_xfer_init(&x, h, req, "GET");
    if (req->no_resume)
        return httpc_run_xfer(&x, res, err); /* whole body per attempt, no ranges */
    if (h->cfg.parallel <= 1 || (req->length > 0 && req->length <= part)) {
        httpc_xfer_range(&x, req->offset, req->length);
        return httpc_run_xfer(&x, res, err);
    }

    pget pg;
    memset(&pg, 0, sizeof(pg));
    pg.h = h;
    pg.req = req;
    pthread_mutex_init(&pg.lock, NULL);
    pthread_cond_init(&pg.cond, NULL);
    pg.start = req->offset;
    pg.end = req->length > 0 && req->length <= UINT64_MAX - req->offset ? req->offset + req->length
                                                                        : UINT64_MAX;
    pg.part = part;
    pg.total = -1;

    /* Part 0 streams straight into the caller's sink; its answer tells the size. */
    httpc_xfer_range(&x, req->offset, part);
    x.full_end = pg.end;
    x.on_total = pget_on_total;
    x.total_ud = &pg;
    x.abort_flag = &pg.abort;
    rc = httpc_run_xfer(&x, res, err);
    uint64_t delivered = x.delivered;
    if (rc == STOW_OK && pg.sequential) {
        /* the rest in one ranged transfer of the same object version, straight to the sink */
        xfer rest;
        httpc_xfer_init(&rest, h, req, "GET");
        httpc_xfer_range(&rest, pg.start + pg.part, pg.end - pg.start - pg.part);
        rest.no_headers = 1;
        rest.expect_total = pg.total;
        memcpy(rest.if_match, pg.if_match, sizeof(rest.if_match));
        rc = httpc_run_xfer(&rest, NULL, err);
        delivered += rest.delivered;
        pg.attempts += rest.attempts;
    } else if (rc == STOW_OK && pg.nparts > 1) {
        rc = pget_drain(&pg, &delivered, err);
    }

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
    if (pg.ahead > 0)
        ahead_give_back(&pg);
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
