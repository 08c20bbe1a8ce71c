#include "unpack.h"

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
#include <unistd.h>
#include <zstd.h>

#include "hash.h"
#include "log.h"
#include "paths.h"
#include "pipe.h"
#include "safedir.h"
#include "trim.h"

#define IO_CHUNK (1u << 20)
#define PIPE_CAPACITY (2u << 20) /* download -> extraction, per restore thread */

unsigned stow_unpack_mode(unsigned stored, const stow_unpack_opts *opts)
{
    unsigned mode = stored & 07777;
    if (opts == NULL || !opts->preserve_setid)
        mode &= ~(unsigned)(S_ISUID | S_ISGID);
    return mode;
}

/* ------------------------------------------------------------------------------------------
 * Links: judged against the whole entry before anything is written
 * ------------------------------------------------------------------------------------------ */

typedef struct {
    const stow_manifest *m;
    uint32_t root;
} index_view;

static stow_safedir_kind index_lookup(void *ud, const char *rel, const char **target)
{
    index_view *v = ud;
    const stow_file_entry *e = stow_manifest_find(v->m, v->root, rel);
    if (e == NULL)
        return STOW_SAFEDIR_UNKNOWN;
    if (e->type != STOW_FT_LINK)
        return STOW_SAFEDIR_NOT_LINK;
    *target = e->target;
    return STOW_SAFEDIR_LINK;
}

int stow_layer_check_links(const stow_manifest *m, stow_stage *st, stow_error *err)
{
    for (size_t i = 0; i < m->nfiles; i++) {
        const stow_file_entry *e = &m->files[i];
        int rootfd = stow_stage_rootfd(st, e->root);
        if (e->type != STOW_FT_LINK || rootfd < 0)
            continue;
        index_view v = {m, e->root};
        char why[256];
        if (!stow_path_link_ok(e->path, e->target) ||
            !stow_safedir_link_inside(rootfd, e->path, e->target, index_lookup, &v, why,
                                      sizeof(why)))
            return stow_error_set(
                err, STOW_ECORRUPT,
                "refusing entry: symlink %s/%s -> %s resolves outside its cache directory (%s)",
                stow_stage_root(st, e->root), e->path, e->target,
                stow_path_link_ok(e->path, e->target) ? why : "climbs above the root");
    }
    return STOW_OK;
}

/* ------------------------------------------------------------------------------------------
 * Download and decompression
 * ------------------------------------------------------------------------------------------ */

typedef struct {
    stow_backend *b;
    const char *object;
    stow_pipe *pipe;
    stow_progress *prog;
    stow_sha256 *sha; /* hashed here, beside the download, not in the extracting thread */
    stow_error err;
    int rc;
} fetch_job;

static int fetch_sink(void *ud, const void *buf, size_t len)
{
    fetch_job *j = ud;
    stow_progress_add(j->prog, len);
    stow_sha256_update(j->sha, buf, len);
    return stow_pipe_write(j->pipe, buf, len);
}

static void *fetch_thread(void *ud)
{
    fetch_job *j = ud;
    stow_error_clear(&j->err);
    j->rc = stow_backend_get(j->b, j->object, 0, 0, fetch_sink, j, &j->err);
    stow_pipe_close_write(j->pipe, j->rc != STOW_OK);
    return NULL;
}

typedef struct {
    stow_pipe *pipe;
    ZSTD_DCtx *dctx;
    unsigned char *inbuf, *outbuf;
    size_t incap, outcap;
    ZSTD_inBuffer in;
    size_t last_ret; /* 0 when the last zstd frame was complete */
    int input_eof, input_failed;
    uint64_t compressed;
    char zerr[256];
} unpack_reader;

static la_ssize_t unpack_read_cb(struct archive *a, void *ud, const void **out)
{
    unpack_reader *r = ud;
    for (;;) {
        if (r->in.pos == r->in.size && !r->input_eof) {
            ssize_t n = stow_pipe_read(r->pipe, r->inbuf, r->incap);
            if (n < 0) {
                r->input_failed = 1;
                if (a)
                    archive_set_error(a, EIO, "download failed");
                return -1;
            }
            if (n == 0) {
                r->input_eof = 1;
            } else {
                r->compressed += (uint64_t)n;
                r->in.src = r->inbuf;
                r->in.size = (size_t)n;
                r->in.pos = 0;
            }
        }
        if (r->in.pos == r->in.size && r->input_eof) {
            if (r->last_ret != 0) {
                snprintf(r->zerr, sizeof(r->zerr), "compressed stream is truncated");
                if (a)
                    archive_set_error(a, EIO, "%s", r->zerr);
                return -1;
            }
            return 0;
        }
        ZSTD_outBuffer o = {r->outbuf, r->outcap, 0};
        size_t ret = ZSTD_decompressStream(r->dctx, &o, &r->in);
        if (ZSTD_isError(ret)) {
            snprintf(r->zerr, sizeof(r->zerr), "zstd: %s", ZSTD_getErrorName(ret));
            if (a)
                archive_set_error(a, EIO, "%s", r->zerr);
            return -1;
        }
        r->last_ret = ret;
        if (o.pos > 0) {
            *out = r->outbuf;
            return (la_ssize_t)o.pos;
        }
    }
}

/* ------------------------------------------------------------------------------------------
 * Extraction into the stage
 * ------------------------------------------------------------------------------------------ */

typedef struct {
    const stow_manifest *m;
    size_t li;
    stow_stage *st;
    const stow_unpack_opts *opts;
    unsigned char *seen; /* per index entry */
    stow_stage_cursor cur;
    stow_error *err;
} extractor;

static int refuse(extractor *x, const char *name, const char *why)
{
    return stow_error_set(x->err, STOW_ECORRUPT, "layer %s: refusing entry \"%s\": %s",
                          x->m->layers[x->li].id, name, why);
}

static int extract_entry(extractor *x, struct archive *a, struct archive_entry *ae, char *buf)
{
    const char *name = archive_entry_pathname(ae);
    if (name == NULL)
        return refuse(x, "(none)", "entry has no name");
    if (archive_entry_hardlink(ae) != NULL)
        return refuse(x, name, "hard links are not allowed");
    mode_t type = archive_entry_filetype(ae);
    if (type != AE_IFREG && type != AE_IFLNK && type != AE_IFDIR)
        return refuse(x, name, "device nodes, fifos and sockets are not allowed");
    if (name[0] == '/')
        return refuse(x, name, "absolute path");
    char *end = NULL;
    errno = 0;
    unsigned long root = strtoul(name, &end, 10);
    if (end == name || *end != '/' || errno != 0)
        return refuse(x, name, "name does not start with a root index");
    const char *rel = end + 1;
    if (!stow_path_rel_ok(rel))
        return refuse(x, name, "path is empty or contains \"..\" or \".\" components");
    if (root >= x->m->nroots)
        return refuse(x, name, "root index out of range");
    if (type == AE_IFLNK) {
        const char *target = archive_entry_symlink(ae);
        if (target == NULL || !stow_path_link_ok(rel, target))
            return refuse(x, name, "symlink points outside its cache directory");
    }
    stow_file_entry *e = stow_manifest_find(x->m, (uint32_t)root, rel);
    char want = type == AE_IFREG ? STOW_FT_FILE : type == AE_IFLNK ? STOW_FT_LINK : STOW_FT_DIR;
    /* A layer shared with older entries also holds files this entry replaced or dropped:
     * only what the index assigns to this layer is written, the rest is read past. */
    if (e == NULL || want == STOW_FT_DIR || e->layer != (int32_t)x->li)
        return STOW_OK;
    if (e->type != want)
        return refuse(x, name, "type differs from the manifest");
    if (want == STOW_FT_FILE && (uint64_t)archive_entry_size(ae) != e->size)
        return refuse(x, name, "size differs from the manifest");
    if (want == STOW_FT_LINK && strcmp(archive_entry_symlink(ae), e->target) != 0)
        return refuse(x, name, "symlink target differs from the manifest");
    size_t idx = (size_t)(e - x->m->files);
    if (x->seen[idx])
        return refuse(x, name, "appears twice");
    x->seen[idx] = 1;
    if (stow_stage_rootfd(x->st, (uint32_t)root) < 0)
        return STOW_OK; /* a root not restored here is read past */

    const char *rootpath = stow_stage_root(x->st, (uint32_t)root);
    char dir[PATH_MAX];
    const char *leaf;
    if (stow_safedir_split(dir, sizeof(dir), &leaf, rel) != 0)
        return refuse(x, name, "path too long");
    int dfd = stow_stage_file_dir(x->st, &x->cur, (uint32_t)root, dir, x->err);
    if (dfd < 0)
        return x->err->code;
    /* Inside a directory new to this restore, the file goes in under its final name (the
     * directory is staged whole); elsewhere under a temporary name beside it. */
    int direct = x->cur.direct;
    char tmp[48];
    const char *wname = leaf;
    if (!direct) {
        stow_stage_temp_name(tmp, sizeof(tmp));
        wname = tmp;
    }
    struct timespec times[2] = {{.tv_sec = e->mtime, .tv_nsec = e->mtime_ns},
                                {.tv_sec = e->mtime, .tv_nsec = e->mtime_ns}};
    if (want == STOW_FT_LINK) {
        if (symlinkat(e->target, dfd, wname) != 0)
            return stow_error_set(x->err, STOW_ERR, "%s/%s: symlink: %s", rootpath, rel,
                                  strerror(errno));
        if (!direct && stow_stage_add(x->st, (uint32_t)root, dir, leaf, tmp, x->err) != STOW_OK) {
            unlinkat(dfd, tmp, 0);
            return x->err->code;
        }
        utimensat(dfd, wname, times, AT_SYMLINK_NOFOLLOW);
        return STOW_OK;
    }
    /* A regular file gets use tracking's marker atime here already (trim.h): restore does not
     * set it again for the files of an extracted layer. */
    times[0] = stow_trim_marker_atime(e->mtime, e->mtime_ns);
    unsigned mode = stow_unpack_mode(e->mode, x->opts);
    int fd = openat(dfd, wname, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                    direct ? (mode_t)(mode & 0777) : 0600);
    if (fd < 0)
        return stow_error_set(x->err, STOW_ERR, "%s/%s: create: %s", rootpath, rel,
                              strerror(errno));
    if (!direct && stow_stage_add(x->st, (uint32_t)root, dir, leaf, tmp, x->err) != STOW_OK) {
        close(fd);
        unlinkat(dfd, tmp, 0);
        return x->err->code;
    }
    int rc = STOW_OK;
    uint64_t written = 0;
    for (;;) {
        la_ssize_t n = archive_read_data(a, buf, IO_CHUNK);
        if (n == 0)
            break;
        if (n < 0) {
            rc = stow_error_set(x->err, STOW_ECORRUPT, "layer %s: %s: %s", x->m->layers[x->li].id,
                                name, archive_error_string(a));
            goto done;
        }
        const char *c = buf;
        size_t left = (size_t)n;
        while (left > 0) {
            ssize_t w = write(fd, c, left);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                rc = stow_error_set(x->err, STOW_ERR, "%s/%s: write: %s", rootpath, rel,
                                    strerror(errno));
                goto done;
            }
            c += w;
            left -= (size_t)w;
        }
        written += (uint64_t)n;
    }
    if (written != e->size) {
        rc = refuse(x, name, "archive data shorter than its header");
        goto done;
    }
    if (((!direct || stow_stage_needs_chmod(x->st, mode)) && fchmod(fd, (mode_t)mode) != 0) ||
        futimens(fd, times) != 0)
        rc = stow_error_set(x->err, STOW_ERR, "%s/%s: set mode/time: %s", rootpath, rel,
                            strerror(errno));
done:
    if (close(fd) != 0 && rc == STOW_OK)
        rc = stow_error_set(x->err, STOW_ERR, "%s/%s: close: %s", rootpath, rel, strerror(errno));
    return rc;
}

int stow_layer_unpack(const stow_manifest *m, size_t li, stow_stage *st, stow_backend *b,
                      const stow_unpack_opts *opts, stow_progress *prog, stow_error *err)
{
    int rc = STOW_ERR;
    const stow_layer *l = &m->layers[li];
    char object[128];
    struct archive *a = NULL;
    char *buf = NULL;
    int thread_started = 0;
    pthread_t tid;
    fetch_job job = {.b = b, .object = object, .prog = prog};
    unpack_reader r = {0};
    extractor x = {
        .m = m, .li = li, .st = st, .opts = opts, .cur = STOW_STAGE_CURSOR_INIT, .err = err};

    stow_manifest_layer_object(object, sizeof(object), l);
    x.seen = calloc(m->nfiles ? m->nfiles : 1, 1);
    job.pipe = r.pipe = stow_pipe_new(PIPE_CAPACITY);
    job.sha = stow_sha256_new();
    r.dctx = ZSTD_createDCtx();
    r.incap = ZSTD_DStreamInSize();
    r.outcap = ZSTD_DStreamOutSize();
    r.inbuf = malloc(r.incap);
    r.outbuf = malloc(r.outcap);
    buf = malloc(IO_CHUNK);
    a = archive_read_new();
    if (!x.seen || !r.pipe || !job.sha || !r.dctx || !r.inbuf || !r.outbuf || !buf || !a) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    /* Bound the decompression window (memory) whatever the stream claims. */
    ZSTD_DCtx_setParameter(r.dctx, ZSTD_d_windowLogMax, 27);
    r.last_ret = 1;

    if (pthread_create(&tid, NULL, fetch_thread, &job) != 0) {
        rc = stow_error_set(err, STOW_ERR, "cannot start download thread");
        goto done;
    }
    thread_started = 1;

    archive_read_support_format_tar(a);
    if (archive_read_open(a, &r, NULL, unpack_read_cb, NULL) != ARCHIVE_OK) {
        rc = STOW_ECORRUPT;
        goto stream_error;
    }
    for (;;) {
        struct archive_entry *ae;
        int ar = archive_read_next_header(a, &ae);
        if (ar == ARCHIVE_EOF)
            break;
        if (ar != ARCHIVE_OK && ar != ARCHIVE_WARN) {
            rc = STOW_ECORRUPT;
            goto stream_error;
        }
        if (extract_entry(&x, a, ae, buf) != STOW_OK) {
            rc = err->code;
            if (r.input_failed)
                goto stream_error;
            goto done;
        }
    }
    /* Drain: the sha256 covers every stored byte, including what follows the tar's end. */
    for (;;) {
        const void *dummy;
        la_ssize_t n = unpack_read_cb(NULL, &r, &dummy);
        if (n == 0)
            break;
        if (n < 0) {
            rc = STOW_ECORRUPT;
            goto stream_error;
        }
    }
    uint8_t digest[STOW_SHA256_LEN];
    char hex[STOW_SHA256_HEX_LEN + 1];
    /* The reader saw end of stream, so the download thread has finished hashing. */
    pthread_join(tid, NULL);
    thread_started = 0;
    if (job.rc != STOW_OK) {
        *err = job.err;
        rc = job.rc;
        goto done;
    }
    stow_sha256_final(job.sha, digest);
    stow_hex(hex, digest, sizeof(digest));
    if (strcmp(hex, l->sha256) != 0) {
        rc = stow_error_set(err, STOW_ECORRUPT,
                            "layer %s: sha256 mismatch (stored object %s, manifest %s)", l->id, hex,
                            l->sha256);
        goto done;
    }
    for (size_t i = 0; i < m->nfiles; i++) {
        const stow_file_entry *e = &m->files[i];
        if (e->layer == (int32_t)li && !x.seen[i]) {
            rc = stow_error_set(err, STOW_ECORRUPT,
                                "layer %s: %s is listed in the manifest but missing from the layer",
                                l->id, e->path);
            goto done;
        }
    }
    rc = STOW_OK;
    goto done;

stream_error:
    /* The download failed (its error wins) or the stream was malformed. */
    stow_pipe_close_read(r.pipe);
    pthread_join(tid, NULL);
    thread_started = 0;
    if (job.rc != STOW_OK) {
        *err = job.err;
        rc = job.rc;
    } else {
        const char *why = r.zerr[0] ? r.zerr : archive_error_string(a);
        rc = stow_error_set(err, STOW_ECORRUPT, "layer %s is not a valid zstd tar stream: %s",
                            l->id, why ? why : "unknown error");
    }
done:
    if (thread_started) {
        stow_pipe_close_read(r.pipe);
        pthread_join(tid, NULL);
        if (rc == STOW_OK && job.rc != STOW_OK) {
            *err = job.err;
            rc = job.rc;
        }
    }
    stow_stage_cursor_close(&x.cur);
    if (a != NULL)
        archive_read_free(a);
    free(buf);
    free(r.inbuf);
    free(r.outbuf);
    ZSTD_freeDCtx(r.dctx);
    stow_sha256_free(job.sha);
    stow_pipe_free(r.pipe);
    free(x.seen);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Directories
 * ------------------------------------------------------------------------------------------ */

int stow_layer_make_dirs(const stow_manifest *m, stow_stage *st, stow_error *err)
{
    stow_safedir_cache dc = STOW_SAFEDIR_CACHE_INIT;
    int rc = STOW_OK;
    for (size_t i = 0; i < m->nfiles && rc == STOW_OK; i++) {
        const stow_file_entry *e = &m->files[i];
        if (e->type != STOW_FT_DIR || stow_stage_rootfd(st, e->root) < 0)
            continue;
        rc = stow_stage_make_dir(st, &dc, e->root, e->path, err);
    }
    stow_safedir_cache_close(&dc);
    return rc;
}

void stow_layer_finish_dirs(const stow_manifest *m, stow_stage *st, const stow_unpack_opts *opts)
{
    stow_safedir_cache dc = STOW_SAFEDIR_CACHE_INIT;
    stow_error ignored;
    /* Sorted order puts parents first; walk backwards so children are done first. Parents
     * are opened without following a symlink; the directory itself through its own fd, or,
     * when it cannot be read (mode 0300, say), by name after checking it is a directory. */
    for (size_t i = m->nfiles; i-- > 0;) {
        const stow_file_entry *e = &m->files[i];
        int rootfd = stow_stage_rootfd(st, e->root);
        if (e->type != STOW_FT_DIR || rootfd < 0)
            continue;
        char dir[PATH_MAX];
        const char *leaf;
        if (stow_safedir_split(dir, sizeof(dir), &leaf, e->path) != 0)
            continue;
        int dfd = stow_safedir_cache_get(&dc, rootfd, dir, 0, NULL, NULL, &ignored);
        if (dfd < 0)
            continue;
        mode_t mode = (mode_t)stow_unpack_mode(e->mode, opts);
        struct timespec times[2] = {{.tv_sec = e->mtime, .tv_nsec = e->mtime_ns},
                                    {.tv_sec = e->mtime, .tv_nsec = e->mtime_ns}};
        int fd = openat(dfd, leaf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int rc;
        if (fd >= 0) {
            rc = fchmod(fd, mode) == 0 && futimens(fd, times) == 0 ? 0 : -1;
            close(fd);
        } else {
            struct stat sb;
            rc = errno == EACCES && fstatat(dfd, leaf, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
                         S_ISDIR(sb.st_mode) && fchmodat(dfd, leaf, mode, 0) == 0 &&
                         utimensat(dfd, leaf, times, AT_SYMLINK_NOFOLLOW) == 0
                     ? 0
                     : -1;
        }
        if (rc != 0)
            stow_debug("%s/%s: cannot set mode/time: %s", stow_stage_root(st, e->root), e->path,
                       strerror(errno));
    }
    stow_safedir_cache_close(&dc);
}
