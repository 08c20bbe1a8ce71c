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
#include <unistd.h>
#include <zstd.h>

#include "hash.h"
#include "log.h"
#include "paths.h"
#include "pipe.h"
#include "scan.h"

#define IO_CHUNK (1u << 20)
#define PIPE_CAPACITY (8u << 20)        /* download -> extraction */

/* ------------------------------------------------------------------------------------------
 * Safe directory handling shared by pack and unpack
 * ------------------------------------------------------------------------------------------ */

/* Opens dirrel below rootfd one component at a time without following symlinks, creating
 * missing directories when create is set. Returns an fd or -1 with err set. */
static int open_dir_rel(int rootfd, const char *dirrel, int create, stow_error *err)
{
    int fd = dup(rootfd);
    if (fd < 0)
        return stow_error_set(err, STOW_ERR, "dup: %s", strerror(errno)), -1;
    const char *p = dirrel;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        char comp[NAME_MAX + 1];
        if (n == 0 || n > NAME_MAX) {
            close(fd);
            return stow_error_set(err, STOW_ECORRUPT, "bad path component in %s", dirrel), -1;
        }
        memcpy(comp, p, n);
        comp[n] = '\0';
        int sub = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0 && errno == ENOENT && create) {
            if (mkdirat(fd, comp, 0755) != 0 && errno != EEXIST) {
                int e = errno;
                close(fd);
                return stow_error_set(err, STOW_ERR, "cannot create directory %s: %s", dirrel, strerror(e)), -1;
            }
            sub = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        if (sub < 0) {
            int e = errno;
            close(fd);
            if (e == ELOOP || e == ENOTDIR)
                return stow_error_set(err, STOW_ECORRUPT,
                                      "refusing to write through %s: a component is a symlink or not a directory",
                                      dirrel), -1;
            return stow_error_set(err, STOW_ERR, "%s: %s", dirrel, strerror(e)), -1;
        }
        close(fd);
        fd = sub;
        p += n;
        if (*p == '/')
            p++;
    }
    return fd;
}

/* A one-entry cache of the last directory opened: archives are sorted, so consecutive
 * entries almost always share their directory. */
typedef struct {
    int fd;
    uint32_t root;
    char rel[PATH_MAX];
} dir_cache;

static int dir_cache_get(dir_cache *c, const int *rootfds, uint32_t root, const char *dirrel, int create,
                         stow_error *err)
{
    if (c->fd >= 0 && c->root == root && strcmp(c->rel, dirrel) == 0)
        return c->fd;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = open_dir_rel(rootfds[root], dirrel, create, err);
    c->root = root;
    snprintf(c->rel, sizeof(c->rel), "%s", dirrel);
    return c->fd;
}

static void dir_cache_close(dir_cache *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

/* Splits rel into its directory ("" for the root) and leaf name. */
static void split_path(char *dir, size_t dirsz, const char **leaf, const char *rel)
{
    const char *slash = strrchr(rel, '/');
    if (slash == NULL) {
        dir[0] = '\0';
        *leaf = rel;
    } else {
        snprintf(dir, dirsz, "%.*s", (int)(slash - rel), rel);
        *leaf = slash + 1;
    }
}

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
    stow_error *err;
    int failed; /* compression or upload failed, err says why */
} pack_writer;

static int emit(pack_writer *w, const void *buf, size_t len)
{
    if (len == 0)
        return 0;
    stow_sha256_update(w->sha, buf, len);
    w->stored += len;
    if (w->b->ops->put_write(w->put, buf, len, w->err) != STOW_OK) {
        if (w->err && w->err->code == STOW_OK)
            stow_error_set(w->err, STOW_ERR, "upload failed");
        w->failed = 1;
        return -1;
    }
    return 0;
}

static int compress_feed(pack_writer *w, const void *buf, size_t len, ZSTD_EndDirective mode)
{
    ZSTD_inBuffer in = {buf, len, 0};
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
            return 0;
    }
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
                    const char *root_path, char *buf, stow_sha256 *content, stow_progress *prog, pack_writer *w)
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
                       : stow_error_set(err, STOW_ERR, "%s/%s: archive header: %s", root_path, e->path,
                                        archive_error_string(a));
        goto done;
    }
    uint64_t left = e->type == STOW_FT_FILE ? e->size : 0;
    while (left > 0) {
        size_t want = left < IO_CHUNK ? (size_t)left : IO_CHUNK;
        ssize_t n = read(fd, buf, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = stow_error_set(err, STOW_ERR, "%s/%s: read: %s", root_path, e->path, strerror(errno));
            goto done;
        }
        if (n == 0) {
            rc = stow_error_set(err, STOW_ERR, "%s/%s: file shrank while it was being saved", root_path, e->path);
            goto done;
        }
        if (archive_write_data(a, buf, (size_t)n) != n) {
            rc = w->failed ? err->code
                           : stow_error_set(err, STOW_ERR, "%s/%s: archive write: %s", root_path, e->path,
                                            archive_error_string(a));
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
            rc = stow_error_set(err, STOW_ERR, "%s/%s: file changed size while it was being saved", root_path, e->path);
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
    if (!w.cctx || !w.out || !w.sha || !buf || !ae || !a ||
        (opts->checksum && content == NULL)) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    ZSTD_CCtx_setParameter(w.cctx, ZSTD_c_compressionLevel, opts->level);
    ZSTD_CCtx_setParameter(w.cctx, ZSTD_c_checksumFlag, 1);
    if (opts->threads > 0 && ZSTD_isError(ZSTD_CCtx_setParameter(w.cctx, ZSTD_c_nbWorkers, opts->threads)))
        stow_debug("zstd without multi-threading support; compressing on one thread");
    else if (opts->threads > 0)
        /* Each worker holds a job's input and output: bound them (the default at level 3 is
         * 8 MiB jobs, which alone costs tens of MB with two workers). */
        ZSTD_CCtx_setParameter(w.cctx, ZSTD_c_jobSize, 4 << 20);

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
    stow_put *p = w.put;
    w.put = NULL;
    rc = b->ops->put_commit(p, err);
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

/* ------------------------------------------------------------------------------------------
 * Unpack
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

typedef struct {
    uint32_t root;
    char *dir;
    char *name;
    char tmp[48];
} pending_file;

typedef struct {
    pending_file *items;
    size_t n, cap;
} pending_list;

static int pending_add(pending_list *pl, uint32_t root, const char *dir, const char *name, const char *tmp)
{
    if (pl->n == pl->cap) {
        size_t ncap = pl->cap ? pl->cap * 2 : 64;
        pending_file *ni = realloc(pl->items, ncap * sizeof(*ni));
        if (ni == NULL)
            return -1;
        pl->items = ni;
        pl->cap = ncap;
    }
    pending_file *p = &pl->items[pl->n];
    p->root = root;
    p->dir = strdup(dir);
    p->name = strdup(name);
    snprintf(p->tmp, sizeof(p->tmp), "%s", tmp);
    if (p->dir == NULL || p->name == NULL) {
        free(p->dir);
        free(p->name);
        return -1;
    }
    pl->n++;
    return 0;
}

static void pending_free(pending_list *pl)
{
    for (size_t i = 0; i < pl->n; i++) {
        free(pl->items[i].dir);
        free(pl->items[i].name);
    }
    free(pl->items);
}

/* Removes every temp file (failure path). */
static void pending_discard(pending_list *pl, const int *rootfds)
{
    dir_cache dc = {.fd = -1};
    stow_error ignored;
    for (size_t i = 0; i < pl->n; i++) {
        int dfd = dir_cache_get(&dc, rootfds, pl->items[i].root, pl->items[i].dir, 0, &ignored);
        if (dfd >= 0)
            unlinkat(dfd, pl->items[i].tmp, 0);
    }
    dir_cache_close(&dc);
}

/* Renames every temp file over its final name (success path). */
static int pending_commit(pending_list *pl, const int *rootfds, char *const *roots, size_t *done,
                          stow_error *err)
{
    dir_cache dc = {.fd = -1};
    int rc = STOW_OK;
    for (*done = 0; *done < pl->n; (*done)++) {
        pending_file *p = &pl->items[*done];
        int dfd = dir_cache_get(&dc, rootfds, p->root, p->dir, 0, err);
        if (dfd < 0) {
            rc = err->code;
            break;
        }
        if (renameat(dfd, p->tmp, dfd, p->name) != 0) {
            rc = stow_error_set(err, STOW_ERR, "%s/%s%s%s: cannot replace: %s", roots[p->root], p->dir,
                                p->dir[0] ? "/" : "", p->name, strerror(errno));
            break;
        }
    }
    dir_cache_close(&dc);
    return rc;
}

typedef struct {
    const stow_manifest *m;
    size_t li;
    char *const *roots;
    const int *rootfds;
    unsigned char *seen; /* per index entry */
    pending_list pending;
    dir_cache dc;
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
    if (x->roots[root] == NULL)
        return STOW_OK; /* a root not restored here is read past */

    char dir[PATH_MAX];
    const char *leaf;
    split_path(dir, sizeof(dir), &leaf, rel);
    int dfd = dir_cache_get(&x->dc, x->rootfds, (uint32_t)root, dir, 1, x->err);
    if (dfd < 0)
        return x->err->code;
    char tmp[48], rnd[17];
    stow_random_hex(rnd, 8);
    snprintf(tmp, sizeof(tmp), STOW_TEMP_PREFIX "%s" STOW_TEMP_SUFFIX, rnd);
    struct timespec times[2] = {{.tv_sec = e->mtime, .tv_nsec = e->mtime_ns},
                                {.tv_sec = e->mtime, .tv_nsec = e->mtime_ns}};
    if (want == STOW_FT_LINK) {
        if (symlinkat(e->target, dfd, tmp) != 0)
            return stow_error_set(x->err, STOW_ERR, "%s/%s: symlink: %s", x->roots[root], rel, strerror(errno));
        if (pending_add(&x->pending, (uint32_t)root, dir, leaf, tmp) != 0) {
            unlinkat(dfd, tmp, 0);
            return stow_error_set(x->err, STOW_ERR, "out of memory");
        }
        utimensat(dfd, tmp, times, AT_SYMLINK_NOFOLLOW);
        return STOW_OK;
    }
    int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return stow_error_set(x->err, STOW_ERR, "%s/%s: create: %s", x->roots[root], rel, strerror(errno));
    if (pending_add(&x->pending, (uint32_t)root, dir, leaf, tmp) != 0) {
        close(fd);
        unlinkat(dfd, tmp, 0);
        return stow_error_set(x->err, STOW_ERR, "out of memory");
    }
    int rc = STOW_OK;
    uint64_t written = 0;
    for (;;) {
        la_ssize_t n = archive_read_data(a, buf, IO_CHUNK);
        if (n == 0)
            break;
        if (n < 0) {
            rc = stow_error_set(x->err, STOW_ECORRUPT, "layer %s: %s: %s", x->m->layers[x->li].id, name,
                                archive_error_string(a));
            goto done;
        }
        const char *c = buf;
        size_t left = (size_t)n;
        while (left > 0) {
            ssize_t w = write(fd, c, left);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                rc = stow_error_set(x->err, STOW_ERR, "%s/%s: write: %s", x->roots[root], rel, strerror(errno));
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
    if (fchmod(fd, (mode_t)e->mode) != 0 || futimens(fd, times) != 0)
        rc = stow_error_set(x->err, STOW_ERR, "%s/%s: set mode/time: %s", x->roots[root], rel, strerror(errno));
done:
    if (close(fd) != 0 && rc == STOW_OK)
        rc = stow_error_set(x->err, STOW_ERR, "%s/%s: close: %s", x->roots[root], rel, strerror(errno));
    return rc;
}

int stow_layer_unpack(const stow_manifest *m, size_t li, char *const *roots, stow_backend *b,
                      stow_progress *prog, stow_error *err)
{
    int rc = STOW_ERR;
    const stow_layer *l = &m->layers[li];
    char object[128];
    struct archive *a = NULL;
    char *buf = NULL;
    int *rootfds = NULL;
    int thread_started = 0;
    pthread_t tid;
    fetch_job job = {.b = b, .object = object, .prog = prog};
    unpack_reader r = {0};
    extractor x = {.m = m, .li = li, .roots = roots, .dc = {.fd = -1}, .err = err};

    stow_manifest_layer_object(object, sizeof(object), l);
    rootfds = open_roots(m, roots, 1, err);
    if (rootfds == NULL)
        goto done;
    x.rootfds = rootfds;
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
        rc = stow_error_set(err, STOW_ECORRUPT, "layer %s: sha256 mismatch (stored object %s, manifest %s)",
                            l->id, hex, l->sha256);
        goto done;
    }
    for (size_t i = 0; i < m->nfiles; i++) {
        const stow_file_entry *e = &m->files[i];
        if (e->layer == (int32_t)li && !x.seen[i]) {
            rc = stow_error_set(err, STOW_ECORRUPT, "layer %s: %s is listed in the manifest but missing from the layer",
                                l->id, e->path);
            goto done;
        }
    }
    dir_cache_close(&x.dc);
    size_t committed = 0;
    rc = pending_commit(&x.pending, rootfds, roots, &committed, err);
    /* Files already renamed are complete and verified; only the rest are discarded. */
    for (size_t i = 0; i < committed; i++) {
        free(x.pending.items[i].dir);
        free(x.pending.items[i].name);
    }
    x.pending.n -= committed;
    memmove(x.pending.items, x.pending.items + committed, x.pending.n * sizeof(*x.pending.items));
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
        rc = stow_error_set(err, STOW_ECORRUPT, "layer %s is not a valid zstd tar stream: %s", l->id,
                            why ? why : "unknown error");
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
    dir_cache_close(&x.dc);
    if (rootfds != NULL)
        pending_discard(&x.pending, rootfds);
    pending_free(&x.pending);
    if (a != NULL)
        archive_read_free(a);
    free(buf);
    free(r.inbuf);
    free(r.outbuf);
    ZSTD_freeDCtx(r.dctx);
    stow_sha256_free(job.sha);
    stow_pipe_free(r.pipe);
    free(x.seen);
    close_fds(rootfds, m->nroots);
    return rc;
}

int stow_layer_make_dirs(const stow_manifest *m, char *const *roots, stow_error *err)
{
    int *rootfds = open_roots(m, roots, 1, err);
    if (rootfds == NULL)
        return err->code;
    int rc = STOW_OK;
    for (size_t i = 0; i < m->nfiles && rc == STOW_OK; i++) {
        const stow_file_entry *e = &m->files[i];
        if (e->type != STOW_FT_DIR || roots[e->root] == NULL)
            continue;
        int fd = open_dir_rel(rootfds[e->root], e->path, 1, err);
        if (fd < 0)
            rc = err->code;
        else
            close(fd);
    }
    close_fds(rootfds, m->nroots);
    return rc;
}

void stow_layer_finish_dirs(const stow_manifest *m, char *const *roots)
{
    stow_error ignored;
    int *rootfds = open_roots(m, roots, 0, &ignored);
    if (rootfds == NULL)
        return;
    /* Sorted order puts parents first; walk backwards so children are done first. */
    for (size_t i = m->nfiles; i-- > 0;) {
        const stow_file_entry *e = &m->files[i];
        if (e->type != STOW_FT_DIR || roots[e->root] == NULL)
            continue;
        char dir[PATH_MAX];
        const char *leaf;
        split_path(dir, sizeof(dir), &leaf, e->path);
        int dfd = open_dir_rel(rootfds[e->root], dir, 0, &ignored);
        if (dfd < 0)
            continue;
        struct stat st;
        if (fstatat(dfd, leaf, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
            struct timespec times[2] = {{.tv_sec = e->mtime, .tv_nsec = e->mtime_ns},
                                        {.tv_sec = e->mtime, .tv_nsec = e->mtime_ns}};
            fchmodat(dfd, leaf, (mode_t)e->mode, 0);
            utimensat(dfd, leaf, times, AT_SYMLINK_NOFOLLOW);
        }
        close(dfd);
    }
    close_fds(rootfds, m->nroots);
}
