#include "cache.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "buildx.h"
#include "cache_int.h"
#include "hash.h"
#include "layout.h"
#include "log.h"
#include "manifest.h"
#include "paths.h"
#include "progress.h"
#include "readfile.h"
#include "refs.h"
#include "safedir.h"
#include "scan.h"
#include "stage.h"
#include "trim.h"
#include "unpack.h"

/* Records that an entry was used, so prune knows what is stale. Never fails the caller. */
static void touch_access(const stow_cache_params *p, const char *scope, const char *key)
{
    stow_error err = {0};
    if (p->read_only)
        return;
    if (stow_layout_put_access(p->backend, scope, key, stow_layout_now(), &err) != STOW_OK)
        stow_debug("could not record the access to %s: %s", key, err.msg);
}

/* ------------------------------------------------------------------------------------------
 * Running per-layer work on a few threads
 * ------------------------------------------------------------------------------------------ */

typedef stow_cache_work_fn layer_fn;

typedef struct {
    pthread_mutex_t lock;
    size_t next, n;
    layer_fn fn;
    void *ctx;
    int rc;
    stow_error err;
} work_queue;

static void *worker(void *ud)
{
    work_queue *q = ud;
    for (;;) {
        pthread_mutex_lock(&q->lock);
        if (q->rc != STOW_OK || q->next >= q->n) {
            pthread_mutex_unlock(&q->lock);
            return NULL;
        }
        size_t i = q->next++;
        pthread_mutex_unlock(&q->lock);
        stow_error e = {0};
        int rc = q->fn(q->ctx, i, &e);
        if (rc != STOW_OK) {
            pthread_mutex_lock(&q->lock);
            if (q->rc == STOW_OK) {
                q->rc = rc;
                q->err = e;
            }
            pthread_mutex_unlock(&q->lock);
        }
    }
}

/* Runs fn(ctx, i) for i in [0, n) on up to nthreads threads; the first failure stops new
 * work and is returned. */
static int run_parallel(size_t n, int nthreads, layer_fn fn, void *ctx, stow_error *err)
{
    work_queue q = {.n = n, .fn = fn, .ctx = ctx, .rc = STOW_OK};
    pthread_t tids[64];
    int started = 0;
    if (nthreads < 1)
        nthreads = 1;
    if ((size_t)nthreads > n)
        nthreads = (int)n;
    if (nthreads > 64)
        nthreads = 64;
    pthread_mutex_init(&q.lock, NULL);
    for (int t = 1; t < nthreads; t++) {
        if (pthread_create(&tids[started], NULL, worker, &q) != 0)
            break;
        started++;
    }
    worker(&q);
    for (int t = 0; t < started; t++)
        pthread_join(tids[t], NULL);
    pthread_mutex_destroy(&q.lock);
    if (q.rc != STOW_OK && err != NULL)
        *err = q.err;
    return q.rc;
}

/* ------------------------------------------------------------------------------------------
 * Local state left by restore for save
 * ------------------------------------------------------------------------------------------ */

int stow_cache_state_path(char *out, size_t outsz, const stow_cache_params *p, const char *suffix)
{
    stow_sha256 *h = stow_sha256_new();
    if (h == NULL)
        return STOW_ERR;
    stow_sha256_update(h, p->store_url, strlen(p->store_url));
    for (size_t i = 0; i < p->paths->n; i++) {
        stow_sha256_update(h, "\n", 1);
        stow_sha256_update(h, p->paths->v[i], strlen(p->paths->v[i]));
    }
    uint8_t d[STOW_SHA256_LEN];
    char hex[2 * STOW_SHA256_LEN + 1];
    stow_sha256_final(h, d);
    stow_sha256_free(h);
    stow_hex(hex, d, 12);
    int n = snprintf(out, outsz, "%s/%s%s", p->state_dir, hex, suffix);
    return (n < 0 || (size_t)n >= outsz) ? STOW_ERR : STOW_OK;
}

static int write_file_atomic(const char *path, const char *data, size_t len, stow_error *err)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
        return stow_error_set(err, STOW_ERR, "path too long: %s", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return stow_error_set(err, STOW_ERR, "%s: %s", tmp, strerror(errno));
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            return stow_error_set(err, STOW_ERR, "%s: %s", tmp, strerror(e));
        }
        off += (size_t)n;
    }
    if (close(fd) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return stow_error_set(err, STOW_ERR, "%s: %s", path, strerror(e));
    }
    return STOW_OK;
}

static void save_state(const stow_cache_params *p, const stow_cache_result *res,
                       const stow_manifest *m)
{
    stow_error err = {0};
    char path[PATH_MAX];
    if (stow_path_mkdirs(p->state_dir, 0700, &err) != STOW_OK ||
        stow_cache_state_path(path, sizeof(path), p, ".json") != STOW_OK) {
        stow_warn("cannot record restore state in %s: %s", p->state_dir, err.msg);
        return;
    }
    static const char *const names[] = {"miss", "hit", "partial"};
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:I}", "outcome", names[res->outcome],
                          "primary_key", p->key, "matched_key", res->matched_key, "matched_scope",
                          res->matched_scope, "time", (json_int_t)time(NULL));
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (s == NULL || write_file_atomic(path, s, strlen(s), &err) != STOW_OK)
        stow_warn("cannot record restore state: %s", s ? err.msg : "out of memory");
    free(s);
    /* The restored manifest, for delta saves. */
    char mpath[PATH_MAX];
    if (m != NULL && stow_cache_state_path(mpath, sizeof(mpath), p, ".manifest.json") == STOW_OK) {
        char *mj = NULL;
        size_t ml = 0;
        if (stow_manifest_encode(&mj, &ml, m, &err) != STOW_OK ||
            write_file_atomic(mpath, mj, ml, &err) != STOW_OK)
            stow_warn("cannot record the restored manifest: %s", err.msg);
        free(mj);
    } else if (m == NULL &&
               stow_cache_state_path(mpath, sizeof(mpath), p, ".manifest.json") == STOW_OK) {
        unlink(mpath);
    }
}

static void clear_state(const stow_cache_params *p)
{
    char path[PATH_MAX];
    if (stow_cache_state_path(path, sizeof(path), p, ".json") == STOW_OK)
        unlink(path);
    if (stow_cache_state_path(path, sizeof(path), p, ".manifest.json") == STOW_OK)
        unlink(path);
}

/* Loads the manifest restore (or the last save) left in the state directory; NULL if none. */
static stow_manifest *state_manifest(const stow_cache_params *p)
{
    char path[PATH_MAX];
    if (stow_cache_state_path(path, sizeof(path), p, ".manifest.json") != STOW_OK)
        return NULL;
    /* A regular file within the manifest limit, checked before reading (a FIFO or a device
     * put there must not hang or exhaust the save). */
    stow_manifest *m = NULL;
    stow_error err = {0};
    stow_buf text;
    stow_buf_init(&text, STOW_MANIFEST_MAX_BYTES);
    int rc = stow_read_file(&text, path, STOW_MANIFEST_MAX_BYTES, &err);
    if (rc == STOW_OK && text.len > 0 &&
        stow_manifest_decode(&m, text.ptr, text.len, path, &err) != STOW_OK)
        rc = STOW_ERR;
    if (rc != STOW_OK && rc != STOW_ENOTFOUND)
        stow_warn("ignoring restore state: %s", err.msg);
    stow_buf_free(&text);
    return m;
}

/* For save.c (cache_int.h). */
int stow_cache_run_parallel(size_t n, int nthreads, stow_cache_work_fn fn, void *ctx,
                            stow_error *err)
{
    return run_parallel(n, nthreads, fn, ctx, err);
}

void stow_cache_state_save(const stow_cache_params *p, const stow_cache_result *res,
                           const stow_manifest *m)
{
    save_state(p, res, m);
}

stow_manifest *stow_cache_state_manifest(const stow_cache_params *p) { return state_manifest(p); }

/* ------------------------------------------------------------------------------------------
 * Lookup
 * ------------------------------------------------------------------------------------------ */

/* Scopes in lookup order: own scope, then fallbacks (duplicates skipped). */
static size_t lookup_scopes(const char **out, size_t max, const stow_cache_params *p)
{
    size_t n = 0;
    out[n++] = p->scope;
    for (size_t i = 0; i < p->fallback_scopes->n && n < max; i++) {
        int dup = 0;
        for (size_t j = 0; j < n; j++)
            dup |= strcmp(out[j], p->fallback_scopes->v[i]) == 0;
        if (!dup)
            out[n++] = p->fallback_scopes->v[i];
    }
    return n;
}

/* One candidate entry; with a signing key, one that is unsigned or mis-signed is refused:
 * a warning naming it and a miss (STOW_ENOTFOUND), or an error with --strict. */
static int fetch_checked(stow_manifest **out, const stow_cache_params *p, const char *scope,
                         const char *key, stow_error *err)
{
    int refused = 0;
    int rc = stow_layout_fetch_manifest_verified(out, &refused, p->backend, scope, key, p->signer,
                                                 err);
    if (rc == STOW_OK || !refused)
        return rc;
    if (p->strict)
        return rc;
    stow_warn("%s; treated as a miss (--strict makes this an error)", err->msg);
    return STOW_ENOTFOUND;
}

static int lookup(stow_manifest **out, stow_cache_result *res, const stow_cache_params *p,
                  stow_error *err)
{
    const char *scopes[65];
    size_t ns = lookup_scopes(scopes, 65, p);
    *out = NULL;
    for (size_t s = 0; s < ns; s++) {
        int rc = fetch_checked(out, p, scopes[s], p->key, err);
        if (rc == STOW_OK) {
            res->outcome = STOW_HIT;
            snprintf(res->matched_key, sizeof(res->matched_key), "%s", p->key);
            snprintf(res->matched_scope, sizeof(res->matched_scope), "%s", scopes[s]);
            return STOW_OK;
        }
        if (rc != STOW_ENOTFOUND)
            return rc;
        stow_debug("no entry %s in scope %s", p->key, scopes[s]);
    }
    for (size_t r = 0; r < p->restore_keys->n; r++) {
        const char *prefix = p->restore_keys->v[r];
        for (size_t s = 0; s < ns; s++) {
            char key[STOW_LAYOUT_PART_MAX];
            int rc = stow_layout_fetch_ref(key, sizeof(key), p->backend, scopes[s], prefix, err);
            /* Save writes refs only for prefixes ending at a separator (refs.h): list for
             * the others where the store can. */
            if (rc == STOW_ENOTFOUND && prefix[0] && !stow_refs_is_sep(prefix[strlen(prefix) - 1]))
                rc = stow_refs_list_newest(key, sizeof(key), p->backend, scopes[s], prefix, err);
            if (rc == STOW_ENOTFOUND)
                continue;
            if (rc != STOW_OK)
                return rc;
            rc = fetch_checked(out, p, scopes[s], key, err);
            if (rc == STOW_OK) {
                res->outcome = strcmp(key, p->key) == 0 ? STOW_HIT : STOW_PARTIAL;
                snprintf(res->matched_key, sizeof(res->matched_key), "%s", key);
                snprintf(res->matched_scope, sizeof(res->matched_scope), "%s", scopes[s]);
                return STOW_OK;
            }
            if (rc != STOW_ENOTFOUND)
                return rc;
            stow_debug("ref %s/%s points to a missing entry", scopes[s], prefix);
        }
    }
    res->outcome = STOW_MISS;
    return STOW_ENOTFOUND;
}

/* ------------------------------------------------------------------------------------------
 * Restore
 * ------------------------------------------------------------------------------------------ */

typedef struct {
    const stow_manifest *m;
    stow_stage *stage;
    stow_backend *b;
    stow_progress *prog;
    stow_unpack_opts opts;
    unsigned char *need;  /* per layer */
    unsigned char *known; /* 1 bit per index entry: carries use tracking's marker (trim.h) */
} restore_ctx;

/* 1 when e exists below dfd (its directory) as the index describes, not following a symlink;
 * *marked = 1 when it is such a regular file that also carries the marker atime. */
static int entry_present(int *marked, const stow_file_entry *e, int dfd, const char *leaf)
{
    struct stat sb;
    *marked = 0;
    if (fstatat(dfd, leaf, &sb, AT_SYMLINK_NOFOLLOW) != 0)
        return 0;
    if (e->type == STOW_FT_FILE) {
        int same = S_ISREG(sb.st_mode) && (uint64_t)sb.st_size == e->size &&
                   sb.st_mtim.tv_sec == e->mtime && sb.st_mtim.tv_nsec == e->mtime_ns;
        *marked = same && stow_trim_is_marked(&sb);
        return same;
    }
    if (e->type == STOW_FT_LINK) {
        char target[PATH_MAX];
        if (!S_ISLNK(sb.st_mode))
            return 0;
        ssize_t n = readlinkat(dfd, leaf, target, sizeof(target) - 1);
        if (n < 0)
            return 0;
        target[n] = '\0';
        return strcmp(target, e->target) == 0;
    }
    return S_ISDIR(sb.st_mode);
}

/* need[li] = 0 for every layer whose files and links all exist locally as the index describes
 * (1 otherwise), looked at without following a symlink in any directory component: one pass in
 * index order, one fstatat per file of a layer not yet known missing, directories opened
 * relative to the previous one, no path copied, nothing allocated per file. The same fstatat
 * tells which present files still carry use tracking's marker: their bit is set in known. */
static void layers_needed(unsigned char *need, unsigned char *known, const stow_manifest *m,
                          stow_stage *st)
{
    stow_safedir_walk w = STOW_SAFEDIR_WALK_INIT;
    stow_error ignored;
    memset(need, 0, m->nlayers);
    for (size_t i = 0; i < m->nfiles; i++) {
        const stow_file_entry *e = &m->files[i];
        if (e->layer < 0 || (size_t)e->layer >= m->nlayers || need[e->layer])
            continue;
        int rootfd = stow_stage_rootfd(st, e->root);
        if (rootfd < 0)
            continue;
        const char *slash = strrchr(e->path, '/');
        const char *leaf = slash ? slash + 1 : e->path;
        size_t dirlen = slash ? (size_t)(slash - e->path) : 0;
        int dfd = stow_safedir_walk_get(&w, rootfd, e->path, dirlen, &ignored);
        int marked = 0;
        if (dfd < 0 || !entry_present(&marked, e, dfd, leaf))
            need[e->layer] = 1;
        else if (marked)
            stow_trim_known_set(known, i);
    }
    stow_safedir_walk_close(&w);
}

/* Once every layer is in place: the files of the extracted layers were written with the
 * marker atime (extraction sets it, and a layer extracts every file the index assigns it or
 * fails), so they need no marking either. */
static void known_extracted(unsigned char *known, const stow_manifest *m, const unsigned char *need)
{
    for (size_t i = 0; i < m->nfiles; i++) {
        const stow_file_entry *e = &m->files[i];
        if (e->type == STOW_FT_FILE && e->layer >= 0 && (size_t)e->layer < m->nlayers &&
            need[e->layer])
            stow_trim_known_set(known, i);
    }
}

/* Layers extracted side by side: the parallel option, but no more than the cores (extraction
 * is decompression and file writes: more threads than cores only add memory) and no more
 * than a quarter of the free memory allows at RESTORE_WORKER_BYTES each (decompression
 * window, download pipe and I/O buffers). */
#define RESTORE_WORKER_BYTES (32ull << 20)
static int restore_threads(int parallel)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN), pages = sysconf(_SC_AVPHYS_PAGES),
         psz = sysconf(_SC_PAGESIZE);
    int n = parallel < 1 ? 1 : parallel;
    if (cpus >= 1 && n > cpus && cpus >= 2)
        n = (int)cpus;
    else if (cpus >= 1 && n > 2 && cpus < 2)
        n = 2; /* one core: still overlap one download with one extraction */
    if (pages > 0 && psz > 0) {
        uint64_t by_mem = (uint64_t)pages * (uint64_t)psz / 4 / RESTORE_WORKER_BYTES;
        if (by_mem < (uint64_t)n)
            n = by_mem < 1 ? 1 : (int)by_mem;
    }
    return n;
}

/* Stages one layer; nothing is renamed into place until every layer is staged. */
static int restore_layer(void *ud, size_t i, stow_error *err)
{
    restore_ctx *c = ud;
    if (!c->need[i])
        return STOW_OK;
    stow_debug("restoring layer %s (%llu bytes)", c->m->layers[i].id,
               (unsigned long long)c->m->layers[i].size);
    return stow_layer_unpack(c->m, i, c->stage, c->b, &c->opts, c->prog, err);
}

/* Removes the temporary files interrupted restores left under the configured paths. */
static void sweep_temp_files(const stow_cache_params *p)
{
    uint64_t total = 0;
    for (size_t i = 0; i < p->paths->n; i++) {
        uint64_t removed = 0;
        stow_error err = {0};
        if (stow_stage_sweep(p->abs_paths[i], &removed, &err) != STOW_OK)
            stow_warn("not removing stale temporary files: %s", err.msg);
        total += removed;
    }
    if (total > 0)
        stow_info("removed %llu stale temporary files (" STOW_TEMP_PREFIX "*" STOW_TEMP_SUFFIX
                  ") left by an interrupted restore",
                  (unsigned long long)total);
    else
        stow_debug("no stale temporary files under the paths");
}

/* 1 when the entry holds a file or link under a root that is among the configured paths. */
static int holds_files(const stow_manifest *m, const stow_cache_params *p)
{
    for (size_t i = 0; i < m->nfiles; i++) {
        const stow_file_entry *e = &m->files[i];
        if (e->type == STOW_FT_DIR || e->root >= m->nroots)
            continue;
        for (size_t j = 0; j < p->paths->n; j++)
            if (strcmp(m->roots[e->root], p->paths->v[j]) == 0)
                return 1;
    }
    return 0;
}

int stow_cache_restore(stow_cache_result *res, const stow_cache_params *p, stow_error *err)
{
    int rc;
    stow_manifest *m = NULL;
    char **roots = NULL;
    stow_progress *prog = NULL;
    stow_stage *stage = NULL;
    restore_ctx ctx = {.opts = {.preserve_setid = p->preserve_setid}};
    double t0 = stow_now();

    memset(res, 0, sizeof(*res));
    if (!p->lookup_only) {
        clear_state(p); /* a restore that fails leaves no parent for the next save */
        sweep_temp_files(p);
    }
    rc = lookup(&m, res, p, err);
    if (rc == STOW_ENOTFOUND) {
        res->seconds = stow_now() - t0;
        if (!p->lookup_only)
            save_state(p, res, NULL);
        return STOW_OK;
    }
    if (rc != STOW_OK)
        goto done;
    if (!holds_files(m, p)) {
        /* Nothing to restore is not a hit: CI would skip its install step. */
        stow_warn("entry %s holds no files for the configured paths; treating it as a miss",
                  res->matched_key);
        res->outcome = STOW_MISS;
        res->empty = 1;
        res->matched_key[0] = res->matched_scope[0] = '\0';
        res->seconds = stow_now() - t0;
        if (!p->lookup_only)
            save_state(p, res, NULL);
        goto done;
    }
    for (size_t i = 0; i < m->nfiles; i++)
        if (m->files[i].type == STOW_FT_FILE)
            res->bytes_total += m->files[i].size;
    res->layers_total = m->nlayers;
    if (p->lookup_only) {
        rc = STOW_OK;
        goto done;
    }

    /* Map the entry's roots onto the configured paths by their configured spelling. */
    roots = calloc(m->nroots ? m->nroots : 1, sizeof(*roots));
    if (roots == NULL) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    for (size_t r = 0; r < m->nroots; r++) {
        for (size_t i = 0; i < p->paths->n; i++)
            if (strcmp(m->roots[r], p->paths->v[i]) == 0)
                roots[r] = p->abs_paths[i];
        if (roots[r] == NULL)
            stow_warn(
                "entry %s holds %s, which is not among the configured paths; not restoring it",
                res->matched_key, m->roots[r]);
    }
    rc = stow_stage_new(&stage, roots, m->nroots, err);
    if (rc != STOW_OK)
        goto done;
    /* Every link is judged against the whole entry (and the disk) before anything is fetched. */
    rc = stow_layer_check_links(m, stage, err);
    if (rc != STOW_OK)
        goto done;
    ctx.m = m;
    ctx.stage = stage;
    ctx.b = p->backend;
    ctx.need = calloc(m->nlayers ? m->nlayers : 1, 1);
    ctx.known = calloc(stow_trim_known_bytes(m->nfiles), 1);
    if (ctx.need == NULL || ctx.known == NULL) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    uint64_t to_download = 0;
    layers_needed(ctx.need, ctx.known, m, stage);
    for (size_t i = 0; i < m->nlayers; i++) {
        if (ctx.need[i]) {
            to_download += m->layers[i].size;
            res->layers_moved++;
        }
    }
    if (res->layers_moved < m->nlayers)
        stow_info("%llu of %zu layers already present locally; skipping them",
                  (unsigned long long)(m->nlayers - res->layers_moved), m->nlayers);
    rc = stow_layer_make_dirs(m, stage, err);
    if (rc != STOW_OK)
        goto done;
    prog = stow_progress_new("restore", to_download);
    ctx.prog = prog;
    /* All-or-nothing: every layer is fetched, verified and staged (in parallel) before the
     * first file is renamed into place. */
    rc = run_parallel(m->nlayers, restore_threads(p->parallel), restore_layer, &ctx, err);
    stow_progress_finish(prog);
    res->bytes_moved = stow_progress_done(prog);
    if (rc != STOW_OK)
        goto done;
    size_t staged = stow_stage_count(stage), committed = 0;
    rc = stow_stage_commit(stage, &committed, err);
    if (rc != STOW_OK) {
        if (committed > 0)
            stow_error_wrap(err, "%zu of %zu files were already replaced", committed, staged);
        goto done;
    }
    stow_layer_finish_dirs(m, stage, &ctx.opts);
    touch_access(p, res->matched_scope, res->matched_key);
    for (size_t i = 0; i < m->nfiles; i++)
        if (m->files[i].type != STOW_FT_DIR && roots[m->files[i].root] != NULL)
            res->files++;
    known_extracted(ctx.known, m, ctx.need);
    stow_trim_mark_restored(m, roots, p, ctx.known);
    save_state(p, res, m);
done:
    if (stage != NULL && rc != STOW_OK)
        stow_stage_discard(stage);
    stow_stage_free(stage);
    res->seconds = stow_now() - t0;
    stow_progress_free(prog);
    free(ctx.known);
    free(ctx.need);
    free(roots);
    stow_manifest_free(m);
    return rc;
}
