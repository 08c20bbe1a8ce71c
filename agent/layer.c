#include "layer.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
/* ZSTD_getFrameProgression (stable since 1.3.x, in the experimental section) */
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>

#include "adapt.h"
#include "cancel.h"
#include "hash.h"
#include "log.h"
#include "paths.h"
#include "scan.h"

#define IO_CHUNK (1u << 20)

/* ------------------------------------------------------------------------------------------
 * Roots (the unpack side: agent/unpack.c, agent/stage.c and common/safedir.c)
 * ------------------------------------------------------------------------------------------ */

static void close_fds(int *fds, size_t n)
{
    if (fds == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(fds);
}

/* Opens every non-NULL root (creating it); NULL roots get -1. */
static int *open_roots(const stow_manifest *m, char *const *roots, int create, stow_error *err)
{
    int *fds = malloc((m->nroots ? m->nroots : 1) * sizeof(int));
    if (fds == NULL) {
        stow_error_set(err, STOW_ERR, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < m->nroots; i++)
        fds[i] = -1;
    for (size_t i = 0; i < m->nroots; i++) {
        if (roots[i] == NULL)
            continue;
        if (create && stow_path_mkdirs(roots[i], 0755, err) != STOW_OK)
            goto fail;
        fds[i] = open(roots[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fds[i] < 0 && errno == ENOENT && !create)
            continue; /* a root that does not exist has no entries to read */
        if (fds[i] < 0) {
            stow_error_set(err, STOW_ERR, "%s: %s", roots[i], strerror(errno));
            goto fail;
        }
    }
    return fds;
fail:
    close_fds(fds, m->nroots);
    return NULL;
}

/* ------------------------------------------------------------------------------------------
 * Pack
 * ------------------------------------------------------------------------------------------ */

/* The compressed stream is hashed and handed to the backend's put_write on the compressing
 * thread: one hop. Overlap with the network comes from the backend (httpc's upload ring
 * and its curl thread, S3's part workers); zstd's own workers compress in parallel. */
typedef struct {
    ZSTD_CCtx *cctx;
    unsigned char *out;
    size_t outcap;
    stow_backend *b;
    stow_put *put;
    stow_sha256 *sha;
    uint64_t stored; /* compressed bytes handed to put_write */
    uint64_t raw;
    stow_adapt *adapt; /* the level controller (adapt.h) */
    int workers;       /* zstd workers, 0 when single-threaded (the level then stays put) */
    double sink_s;     /* seconds in put_write during the current compress_feed */
    double last_feed;  /* when the previous compress_feed ended (0: none yet) */
    double first_out;  /* when the first compressed byte went to the sink (0: none yet) */
    stow_error *err;
    int failed; /* compression or upload failed, err says why */
} pack_writer;

/* Monotonic seconds at nanosecond resolution: stow_now_ms() is too coarse for a 64 KiB feed. */
static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int emit(pack_writer *w, const void *buf, size_t len)
{
    if (len == 0)
        return 0;
    stow_sha256_update(w->sha, buf, len);
    w->stored += len;
    if (w->adapt != NULL)
        stow_adapt_add_out(w->adapt, len);
    double t0 = mono_s();
    if (w->first_out == 0)
        w->first_out = t0;
    int rc = w->b->ops->put_write(w->put, buf, len, w->err);
    w->sink_s += mono_s() - t0;
    if (rc != STOW_OK) {
        if (w->err && w->err->code == STOW_OK)
            stow_error_set(w->err, STOW_ERR, "upload failed");
        w->failed = 1;
        return -1;
    }
    return 0;
}

/* Between zstd jobs, asks the controller for the level: the time this feed spent in the
 * compressor (everything but put_write) against the time in put_write says which side is the
 * bottleneck. A new level takes effect at the next job (nbWorkers >= 1). */
static void adapt_level(pack_writer *w, double start, double end)
{
    double sink_s = w->sink_s, wall_s = w->last_feed > 0 ? end - w->last_feed : end - start;
    w->sink_s = 0;
    w->last_feed = end;
    if (w->adapt == NULL || w->adapt->pinned || w->workers < 1)
        return;
    stow_adapt_add_time(w->adapt, end - start - sink_s, sink_s, wall_s);
    ZSTD_frameProgression fp = ZSTD_getFrameProgression(w->cctx);
    int before = w->adapt->level;
    int level = stow_adapt_step(w->adapt, fp.currentJobID, w->workers);
    if (level != before) {
        if (ZSTD_isError(ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, level)))
            w->adapt->level = before; /* keep what zstd actually uses */
        else
            stow_debug("zstd level %d -> %d at job %u (%.1f MB in; out %.1f MB/s, link %.1f MB/s)",
                       before, level, fp.currentJobID, (double)w->raw / 1e6,
                       w->adapt->out_bps / 1e6, w->adapt->link_bps / 1e6);
    }
}

static int compress_feed(pack_writer *w, const void *buf, size_t len, ZSTD_EndDirective mode)
{
    ZSTD_inBuffer in = {buf, len, 0};
    double t0 = mono_s();
    w->sink_s = 0;
    if (w->adapt != NULL)
        stow_adapt_add_bytes(w->adapt, len);
    for (;;) {
        ZSTD_outBuffer out = {w->out, w->outcap, 0};
        size_t remaining = ZSTD_compressStream2(w->cctx, &out, &in, mode);
        if (ZSTD_isError(remaining)) {
            stow_error_set(w->err, STOW_ERR, "zstd compression: %s", ZSTD_getErrorName(remaining));
            w->failed = 1;
            return -1;
        }
        if (emit(w, w->out, out.pos) != 0)
            return -1;
        if (mode == ZSTD_e_end ? remaining == 0 : in.pos == in.size)
            break;
    }
    if (mode == ZSTD_e_continue)
        adapt_level(w, t0, mono_s());
    return 0;
}

static la_ssize_t pack_write_cb(struct archive *a, void *ud, const void *buf, size_t len)
{
    (void)a;
    pack_writer *w = ud;
    if (w->failed)
        return -1;
    w->raw += len;
    return compress_feed(w, buf, len, ZSTD_e_continue) == 0 ? (la_ssize_t)len : -1;
}

static int pack_one(struct archive *a, struct archive_entry *ae, int rootfd, stow_file_entry *e,
                    const char *root_path, char *buf, stow_sha256 *content, stow_progress *prog,
                    pack_writer *w)
{
    stow_error *err = w->err;
    char name[PATH_MAX + 16];
    snprintf(name, sizeof(name), "%u/%s", (unsigned)e->root, e->path);
    archive_entry_clear(ae);
    archive_entry_set_pathname(ae, name);
    archive_entry_set_perm(ae, (mode_t)e->mode);
    archive_entry_set_mtime(ae, (time_t)e->mtime, e->mtime_ns);
    archive_entry_set_uid(ae, 0);
    archive_entry_set_gid(ae, 0);
    int fd = -1;
    if (e->type == STOW_FT_LINK) {
        archive_entry_set_filetype(ae, AE_IFLNK);
        archive_entry_set_symlink(ae, e->target);
        archive_entry_set_size(ae, 0);
    } else {
        fd = openat(rootfd, e->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            return stow_error_set(err, STOW_ERR, "%s/%s: %s", root_path, e->path, strerror(errno));
        archive_entry_set_filetype(ae, AE_IFREG);
        archive_entry_set_size(ae, (la_int64_t)e->size);
#ifdef POSIX_FADV_SEQUENTIAL
        posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
    }
    int rc = STOW_OK;
    if (archive_write_header(a, ae) != ARCHIVE_OK) {
        rc = w->failed ? err->code
                       : stow_error_set(err, STOW_ERR, "%s/%s: archive header: %s", root_path,
                                        e->path, archive_error_string(a));
        goto done;
    }
    uint64_t left = e->type == STOW_FT_FILE ? e->size : 0;
    while (left > 0) {
        if (stow_cancel_requested()) {
            rc = stow_error_set(err, STOW_ERR, "interrupted by signal %d while packing %s/%s",
                                stow_cancel_requested(), root_path, e->path);
            w->failed = 1; /* the archive's final flush must not overwrite the reason */
            goto done;
        }
        size_t want = left < IO_CHUNK ? (size_t)left : IO_CHUNK;
        ssize_t n = read(fd, buf, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = stow_error_set(err, STOW_ERR, "%s/%s: read: %s", root_path, e->path,
                                strerror(errno));
            goto done;
        }
        if (n == 0) {
            rc = stow_error_set(err, STOW_ERR, "%s/%s: file shrank while it was being saved",
                                root_path, e->path);
            goto done;
        }
        if (archive_write_data(a, buf, (size_t)n) != n) {
            rc = w->failed ? err->code
                           : stow_error_set(err, STOW_ERR, "%s/%s: archive write: %s", root_path,
                                            e->path, archive_error_string(a));
            goto done;
        }
        if (content != NULL)
            stow_sha256_update(content, buf, (size_t)n);
        left -= (uint64_t)n;
        stow_progress_add(prog, (uint64_t)n);
    }
    if (content != NULL && e->type == STOW_FT_FILE) {
        uint8_t d[STOW_SHA256_LEN];
        char hex[STOW_SHA256_HEX_LEN + 1];
        stow_sha256_final(content, d);
        stow_hex(hex, d, sizeof(d));
        free(e->sha256);
        if ((e->sha256 = strdup(hex)) == NULL) {
            rc = stow_error_set(err, STOW_ERR, "out of memory");
            goto done;
        }
    }
    if (fd >= 0) {
        struct stat st;
        if (fstat(fd, &st) == 0 && (uint64_t)st.st_size != e->size) {
            rc = stow_error_set(err, STOW_ERR, "%s/%s: file changed size while it was being saved",
                                root_path, e->path);
            goto done;
        }
    }
done:
    if (fd >= 0)
        close(fd);
    return rc;
}

int stow_layer_pack(stow_manifest *m, size_t li, char *const *roots, stow_backend *b,
                    const stow_pack_opts *opts, stow_progress *prog, stow_error *err)
{
    int rc = STOW_ERR;
    struct archive *a = NULL;
    struct archive_entry *ae = NULL;
    char *buf = NULL;
    int *rootfds = NULL;
    stow_layer *l = &m->layers[li];
    pack_writer w = {.err = err, .b = b};
    stow_sha256 *content = NULL;
    stow_adapt own;
    char object[128];

    stow_manifest_layer_object(object, sizeof(object), l);
    rootfds = open_roots(m, roots, 0, err);
    w.cctx = ZSTD_createCCtx();
    w.outcap = ZSTD_CStreamOutSize();
    w.out = malloc(w.outcap);
    w.sha = stow_sha256_new();
    buf = malloc(IO_CHUNK);
    ae = archive_entry_new();
    a = archive_write_new();
    if (opts->checksum)
        content = stow_sha256_new();
    if (rootfds == NULL)
        goto done;
    if (!w.cctx || !w.out || !w.sha || !buf || !ae || !a || (opts->checksum && content == NULL)) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    w.adapt = opts->adapt;
    if (w.adapt == NULL) {
        stow_adapt_init(&own, opts->level, opts->level_min, opts->level_max);
        w.adapt = &own;
    }
    stow_adapt_new_frame(w.adapt);
    ZSTD_CCtx_setParameter(w.cctx, ZSTD_c_compressionLevel, w.adapt->level);
    ZSTD_CCtx_setParameter(w.cctx, ZSTD_c_checksumFlag, 1);
    if (!w.adapt->pinned)
        /* The window is fixed for the frame when the level changes mid-frame: take level 3's
         * (2 MiB), so higher levels find their matches and a restore needs no more memory
         * than for a level-3 layer. */
        ZSTD_CCtx_setParameter(w.cctx, ZSTD_c_windowLog, 21);
    if (opts->threads > 0 &&
        ZSTD_isError(ZSTD_CCtx_setParameter(w.cctx, ZSTD_c_nbWorkers, opts->threads)))
        stow_debug("zstd without multi-threading support; compressing on one thread");
    else if (opts->threads > 0) {
        /* Each worker holds a job's input and output: bound them (the default at level 3 is
         * 8 MiB jobs). zstd's input ring is (workers + 3) jobs and a slow upload leaves an
         * output buffer per job queued: 2 MiB jobs take about 15 MiB less than 4 MiB jobs
         * (4 GiB save, 2 workers: file 63 -> 44 MiB peak RSS, HTTP 71 -> 52). Jobs are also
         * when the level may change. */
        ZSTD_CCtx_setParameter(w.cctx, ZSTD_c_jobSize, 2 << 20);
        w.workers = opts->threads;
    }

    rc = b->ops->put_begin(&w.put, b, object, -1, 0, err);
    if (rc != STOW_OK)
        goto done;
    rc = STOW_ERR;
    archive_write_set_format_pax_restricted(a);
    archive_write_add_filter_none(a);
    archive_write_set_bytes_per_block(a, 64 * 1024);
    archive_write_set_bytes_in_last_block(a, 1);
    /* Names are stored as the bytes the filesystem has, whatever the locale (CI often runs
     * with LANG=C, where non-ASCII names cannot be "translated"). */
    archive_write_set_format_option(a, "pax", "hdrcharset", "BINARY");
    if (archive_write_open2(a, &w, NULL, pack_write_cb, NULL, NULL) != ARCHIVE_OK) {
        stow_error_set(err, STOW_ERR, "archive: %s", archive_error_string(a));
        goto done;
    }
    uint64_t nfiles = 0;
    for (size_t i = 0; i < m->nfiles; i++) {
        stow_file_entry *e = &m->files[i];
        if (e->layer != (int32_t)li || e->type == STOW_FT_DIR || roots[e->root] == NULL)
            continue;
        if (pack_one(a, ae, rootfds[e->root], e, roots[e->root], buf, content, prog, &w) != STOW_OK)
            goto done;
        nfiles++;
    }
    if (archive_write_close(a) != ARCHIVE_OK) {
        if (!w.failed)
            stow_error_set(err, STOW_ERR, "archive: %s", archive_error_string(a));
        goto done;
    }
    if (compress_feed(&w, NULL, 0, ZSTD_e_end) != 0)
        goto done;
    uint8_t digest[STOW_SHA256_LEN];
    stow_sha256_final(w.sha, digest);
    stow_hex(l->sha256, digest, sizeof(digest));
    l->size = w.stored;
    l->raw_size = w.raw;
    l->files = nfiles;
    if (stow_cancel_requested()) {
        rc = stow_error_set(err, STOW_ERR, "interrupted by signal %d before committing %s",
                            stow_cancel_requested(), object);
        w.failed = 1;
        goto done;
    }
    stow_put *p = w.put;
    w.put = NULL;
    double t_commit = mono_s();
    rc = b->ops->put_commit(p, err);
    if (rc == STOW_OK && w.workers > 0) {
        double t_end = mono_s();
        stow_adapt_end_frame(w.adapt, t_end - t_commit, w.stored,
                             w.first_out > 0 ? t_end - w.first_out : 0);
    }
    if (rc != STOW_OK)
        stow_error_wrap(err, "upload of %s", object);
done:
    if (rc != STOW_OK && w.failed && err && err->code != STOW_OK)
        rc = err->code;
    if (w.put != NULL)
        b->ops->put_abort(w.put);
    if (a != NULL)
        archive_write_free(a);
    archive_entry_free(ae);
    free(buf);
    stow_sha256_free(w.sha);
    stow_sha256_free(content);
    free(w.out);
    ZSTD_freeCCtx(w.cctx);
    close_fds(rootfds, m->nroots);
    return rc;
}
