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

#include "buildx.h"
#include "hash.h"
#include "log.h"
#include "manifest.h"
#include "paths.h"
#include "progress.h"
#include "safedir.h"
#include "scan.h"
#include "stage.h"
#include "unpack.h"

#define REF_MAX_BYTES 65536

int stow_cache_manifest_name(char *out, size_t outsz, const char *scope, const char *key)
{
    int n = snprintf(out, outsz, "manifests/%s/%s.json", scope, key);
    return (n < 0 || (size_t)n >= outsz) ? STOW_ERR : STOW_OK;
}

int stow_cache_access_name(char *out, size_t outsz, const char *scope, const char *key)
{
    int n = snprintf(out, outsz, "access/%s/%s", scope, key);
    return (n < 0 || (size_t)n >= outsz) ? STOW_ERR : STOW_OK;
}

int64_t stow_cache_now(void)
{
    /* STOWAGE_NOW (seconds since the epoch) is a test clock for lifecycle tests. */
    const char *v = getenv("STOWAGE_NOW");
    if (v != NULL && v[0] != '\0') {
        char *end = NULL;
        long long t = strtoll(v, &end, 10);
        if (end != v && *end == '\0' && t > 0)
            return (int64_t)t;
    }
    return (int64_t)time(NULL);
}

/* Records that an entry was used, so prune knows what is stale. Never fails the caller. */
static void touch_access(const stow_cache_params *p, const char *scope, const char *key)
{
    char name[1024];
    char body[64];
    stow_error err = {0};
    int n = snprintf(body, sizeof(body), "{\"time\":%lld}", (long long)stow_cache_now());
    if (stow_cache_access_name(name, sizeof(name), scope, key) != STOW_OK ||
        stow_backend_put_buffer(p->backend, name, body, (size_t)n, 0, &err) != STOW_OK)
        stow_debug("could not record the access to %s: %s", key, err.msg);
}

int stow_cache_ref_name(char *out, size_t outsz, const char *scope, const char *prefix)
{
    int n = snprintf(out, outsz, "refs/%s/%s", scope, prefix);
    return (n < 0 || (size_t)n >= outsz) ? STOW_ERR : STOW_OK;
}

/* ------------------------------------------------------------------------------------------
 * Running per-layer work on a few threads
 * ------------------------------------------------------------------------------------------ */

typedef int (*layer_fn)(void *ctx, size_t i, stow_error *err);

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

static int state_path(char *out, size_t outsz, const stow_cache_params *p, const char *suffix)
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

static void save_state(const stow_cache_params *p, const stow_cache_result *res, const stow_manifest *m)
{
    stow_error err = {0};
    char path[PATH_MAX];
    if (stow_path_mkdirs(p->state_dir, 0700, &err) != STOW_OK || state_path(path, sizeof(path), p, ".json") != STOW_OK) {
        stow_warn("cannot record restore state in %s: %s", p->state_dir, err.msg);
        return;
    }
    static const char *const names[] = {"miss", "hit", "partial"};
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:I}", "outcome", names[res->outcome], "primary_key", p->key,
                          "matched_key", res->matched_key, "matched_scope", res->matched_scope, "time",
                          (json_int_t)time(NULL));
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (s == NULL || write_file_atomic(path, s, strlen(s), &err) != STOW_OK)
        stow_warn("cannot record restore state: %s", s ? err.msg : "out of memory");
    free(s);
    /* The restored manifest, for delta saves. */
    char mpath[PATH_MAX];
    if (m != NULL && state_path(mpath, sizeof(mpath), p, ".manifest.json") == STOW_OK) {
        char *mj = NULL;
        size_t ml = 0;
        if (stow_manifest_to_json(&mj, &ml, m, &err) != STOW_OK || write_file_atomic(mpath, mj, ml, &err) != STOW_OK)
            stow_warn("cannot record the restored manifest: %s", err.msg);
        free(mj);
    } else if (m == NULL && state_path(mpath, sizeof(mpath), p, ".manifest.json") == STOW_OK) {
        unlink(mpath);
    }
}

static void clear_state(const stow_cache_params *p)
{
    char path[PATH_MAX];
    if (state_path(path, sizeof(path), p, ".json") == STOW_OK)
        unlink(path);
    if (state_path(path, sizeof(path), p, ".manifest.json") == STOW_OK)
        unlink(path);
}

/* Loads the manifest restore (or the last save) left in the state directory; NULL if none. */
static stow_manifest *state_manifest(const stow_cache_params *p)
{
    char path[PATH_MAX];
    if (state_path(path, sizeof(path), p, ".manifest.json") != STOW_OK)
        return NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    stow_manifest *m = NULL;
    char *buf = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long len = ftell(f);
        if (len > 0 && (unsigned long)len <= STOW_MANIFEST_MAX_BYTES && fseek(f, 0, SEEK_SET) == 0 &&
            (buf = malloc((size_t)len)) != NULL && fread(buf, 1, (size_t)len, f) == (size_t)len) {
            stow_error err = {0};
            if (stow_manifest_from_json(&m, buf, (size_t)len, path, &err) != STOW_OK)
                stow_warn("ignoring restore state: %s", err.msg);
        }
    }
    free(buf);
    fclose(f);
    return m;
}

/* ------------------------------------------------------------------------------------------
 * Lookup
 * ------------------------------------------------------------------------------------------ */

static int fetch_manifest(stow_manifest **out, stow_backend *b, const char *scope, const char *key, stow_error *err)
{
    char name[1024];
    if (stow_cache_manifest_name(name, sizeof(name), scope, key) != STOW_OK || !stow_backend_name_ok(name))
        return stow_error_set(err, STOW_EUSAGE, "bad scope or key: %s / %s", scope, key);
    char *buf = NULL;
    size_t len = 0;
    int rc = stow_backend_get_buffer(&buf, &len, b, name, STOW_MANIFEST_MAX_BYTES, err);
    if (rc != STOW_OK)
        return rc;
    rc = stow_manifest_from_json(out, buf, len, name, err);
    free(buf);
    if (rc == STOW_OK && strcmp((*out)->key, key) != 0) {
        rc = stow_error_set(err, STOW_ECORRUPT, "%s: manifest names another key, \"%s\"", name, (*out)->key);
        stow_manifest_free(*out);
        *out = NULL;
    }
    return rc;
}

/* Reads refs/<scope>/<prefix>; *key is malloc'd. */
static int read_ref(char **key, stow_backend *b, const char *scope, const char *prefix, stow_error *err)
{
    char name[1024];
    *key = NULL;
    if (stow_cache_ref_name(name, sizeof(name), scope, prefix) != STOW_OK || !stow_backend_name_ok(name))
        return stow_error_set(err, STOW_EUSAGE, "bad scope or restore key: %s / %s", scope, prefix);
    char *buf = NULL;
    size_t len = 0;
    int rc = stow_backend_get_buffer(&buf, &len, b, name, REF_MAX_BYTES, err);
    if (rc != STOW_OK)
        return rc;
    json_error_t je;
    json_t *o = json_loadb(buf, len, 0, &je);
    free(buf);
    const char *k = NULL;
    if (o == NULL || json_unpack(o, "{s:s}", "key", &k) != 0 || strncmp(k, prefix, strlen(prefix)) != 0 ||
        strlen(k) > 255) {
        json_decref(o);
        return stow_error_set(err, STOW_ECORRUPT, "%s: not a valid ref", name);
    }
    *key = strdup(k);
    json_decref(o);
    return *key ? STOW_OK : stow_error_set(err, STOW_ERR, "out of memory");
}

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

static int lookup(stow_manifest **out, stow_cache_result *res, const stow_cache_params *p, stow_error *err)
{
    const char *scopes[65];
    size_t ns = lookup_scopes(scopes, 65, p);
    *out = NULL;
    for (size_t s = 0; s < ns; s++) {
        int rc = fetch_manifest(out, p->backend, scopes[s], p->key, err);
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
            char *key = NULL;
            int rc = read_ref(&key, p->backend, scopes[s], prefix, err);
            if (rc == STOW_ENOTFOUND)
                continue;
            if (rc != STOW_OK)
                return rc;
            rc = fetch_manifest(out, p->backend, scopes[s], key, err);
            if (rc == STOW_OK) {
                res->outcome = strcmp(key, p->key) == 0 ? STOW_HIT : STOW_PARTIAL;
                snprintf(res->matched_key, sizeof(res->matched_key), "%s", key);
                snprintf(res->matched_scope, sizeof(res->matched_scope), "%s", scopes[s]);
                free(key);
                return STOW_OK;
            }
            free(key);
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
    unsigned char *need; /* per layer */
} restore_ctx;

/* 1 when every file and link of layer li already exists locally as the index describes,
 * looked at without following a symlink in any directory component. */
static int layer_present(const stow_manifest *m, size_t li, stow_stage *st)
{
    stow_safedir_cache dc = STOW_SAFEDIR_CACHE_INIT;
    stow_error ignored;
    int present = 0;
    for (size_t i = 0; i < m->nfiles; i++) {
        const stow_file_entry *e = &m->files[i];
        int rootfd = stow_stage_rootfd(st, e->root);
        if (e->layer != (int32_t)li || rootfd < 0)
            continue;
        char dir[PATH_MAX];
        const char *leaf;
        if (stow_safedir_split(dir, sizeof(dir), &leaf, e->path) != 0)
            goto done;
        int dfd = stow_safedir_cache_get(&dc, rootfd, dir, 0, NULL, NULL, &ignored);
        struct stat sb;
        if (dfd < 0 || fstatat(dfd, leaf, &sb, AT_SYMLINK_NOFOLLOW) != 0)
            goto done;
        if (e->type == STOW_FT_FILE) {
            if (!S_ISREG(sb.st_mode) || (uint64_t)sb.st_size != e->size || sb.st_mtim.tv_sec != e->mtime ||
                sb.st_mtim.tv_nsec != e->mtime_ns)
                goto done;
        } else if (e->type == STOW_FT_LINK) {
            char target[PATH_MAX];
            ssize_t n = readlinkat(dfd, leaf, target, sizeof(target) - 1);
            if (n < 0)
                goto done;
            target[n] = '\0';
            if (strcmp(target, e->target) != 0)
                goto done;
        } else if (!S_ISDIR(sb.st_mode)) {
            goto done;
        }
    }
    present = 1;
done:
    stow_safedir_cache_close(&dc);
    return present;
}

/* Stages one layer; nothing is renamed into place until every layer is staged. */
static int restore_layer(void *ud, size_t i, stow_error *err)
{
    restore_ctx *c = ud;
    if (!c->need[i])
        return STOW_OK;
    stow_debug("restoring layer %s (%llu bytes)", c->m->layers[i].id, (unsigned long long)c->m->layers[i].size);
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
            stow_warn("entry %s holds %s, which is not among the configured paths; not restoring it",
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
    if (ctx.need == NULL) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    uint64_t to_download = 0;
    for (size_t i = 0; i < m->nlayers; i++) {
        ctx.need[i] = !layer_present(m, i, stage);
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
    rc = run_parallel(m->nlayers, p->parallel, restore_layer, &ctx, err);
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
    save_state(p, res, m);
done:
    if (stage != NULL && rc != STOW_OK)
        stow_stage_discard(stage);
    stow_stage_free(stage);
    res->seconds = stow_now() - t0;
    stow_progress_free(prog);
    free(ctx.need);
    free(roots);
    stow_manifest_free(m);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Save
 * ------------------------------------------------------------------------------------------ */

typedef struct {
    stow_manifest *m;
    char *const *roots;
    stow_backend *b;
    const stow_pack_opts *pack;
    stow_progress *prog;
    size_t first_new; /* layers below this index come from the parent and are not packed */
} save_ctx;

static int save_layer(void *ud, size_t i, stow_error *err)
{
    save_ctx *c = ud;
    return stow_layer_pack(c->m, c->first_new + i, c->roots, c->b, c->pack, c->prog, err);
}

static int new_layer(stow_manifest *m, stow_error *err)
{
    stow_layer *l = stow_manifest_add_layer(m, err);
    if (l == NULL)
        return err->code;
    if (stow_random_hex(l->id, STOW_LAYER_ID_LEN / 2) != STOW_OK)
        return stow_error_set(err, STOW_ERR, "no randomness for layer ids");
    return STOW_OK;
}

/* Assigns every file and link whose layer is -1 to new layers of about layer_size raw bytes
 * each, in index order. */
static int assign_new_layers(stow_manifest *m, uint64_t layer_size, stow_error *err)
{
    uint64_t cur = 0;
    int32_t li = -1;
    for (size_t i = 0; i < m->nfiles; i++) {
        stow_file_entry *e = &m->files[i];
        if (e->type == STOW_FT_DIR || e->layer != -1)
            continue;
        if (li < 0 || (cur > 0 && cur + e->size > layer_size)) {
            int rc = new_layer(m, err);
            if (rc != STOW_OK)
                return rc;
            li = (int32_t)(m->nlayers - 1);
            cur = 0;
        }
        e->layer = li;
        cur += e->size + 1024; /* data plus a pax header, roughly */
    }
    return STOW_OK;
}

/* Bytes a file takes in a tar stream, roughly: data rounded to blocks plus pax headers. */
static uint64_t tar_cost(const stow_file_entry *e) { return ((e->size + 511) / 512) * 512 + 1024; }

static int same_file(const stow_file_entry *a, const stow_file_entry *b)
{
    if (a->type != b->type || a->mode != b->mode || a->mtime != b->mtime || a->mtime_ns != b->mtime_ns)
        return 0;
    if (a->type == STOW_FT_FILE)
        return a->size == b->size;
    if (a->type == STOW_FT_LINK)
        return strcmp(a->target, b->target) == 0;
    return 1;
}

/* With --checksum: 1 when the local file's content hash equals the parent's recorded one. */
static int same_content(const stow_file_entry *pe, const char *root, const char *path, char **hash_out)
{
    if (pe->sha256 == NULL)
        return 0; /* the parent has no hashes: treat as changed so this save records them */
    char full[PATH_MAX];
    uint8_t d[STOW_SHA256_LEN];
    char hex[STOW_SHA256_HEX_LEN + 1];
    stow_error err = {0};
    if (snprintf(full, sizeof(full), "%s/%s", root, path) >= (int)sizeof(full) ||
        stow_sha256_file(d, full, &err) != STOW_OK)
        return 0;
    stow_hex(hex, d, sizeof(d));
    if (strcmp(hex, pe->sha256) != 0)
        return 0;
    *hash_out = strdup(hex);
    return *hash_out != NULL;
}

/* 1 unless the store says the layer object does not exist (other errors count as present:
 * the upload that follows will meet them). */
static int layer_exists(stow_backend *b, const stow_layer *l)
{
    char obj[128];
    stow_error err = {0};
    return stow_manifest_layer_object(obj, sizeof(obj), l) != STOW_OK ||
           stow_backend_head(b, obj, NULL, &err) != STOW_ENOTFOUND;
}

/* Computes the delta of m (a fresh scan, every layer -1) against parent: unchanged files point
 * at the parent's layers (renumbered into m), mostly-dead or surplus parent layers are dropped
 * so their live files are repacked; everything else stays -1 for new layers. Fills the
 * counters in res. Returns 1 when m differs from parent in any way. */
static int plan_delta(stow_manifest *m, const stow_manifest *parent, char *const *roots, const stow_cache_params *p,
                      stow_cache_result *res, stow_error *err)
{
    size_t np = parent->nlayers;
    int32_t *map = NULL;     /* parent layer -> index in m, or -1 when dropped */
    uint64_t *live = NULL;   /* live tar bytes per parent layer */
    unsigned char *used = NULL;
    int32_t *proot = NULL;   /* m root -> parent root */
    int changed = 0, rc = -1;

    map = malloc((np ? np : 1) * sizeof(*map));
    live = calloc(np ? np : 1, sizeof(*live));
    used = calloc(parent->nfiles ? parent->nfiles : 1, 1);
    proot = malloc((m->nroots ? m->nroots : 1) * sizeof(*proot));
    if (!map || !live || !used || !proot) {
        stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    for (size_t r = 0; r < m->nroots; r++) {
        proot[r] = -1;
        for (size_t q = 0; q < parent->nroots; q++)
            if (strcmp(m->roots[r], parent->roots[q]) == 0)
                proot[r] = (int32_t)q;
    }
    /* Match every scanned entry with the parent's. Parent layer indices are stored as
     * -(2 + index) until the parent layers kept in m are known. */
    for (size_t i = 0; i < m->nfiles; i++) {
        stow_file_entry *e = &m->files[i];
        const stow_file_entry *pe = proot[e->root] < 0 ? NULL : stow_manifest_find(parent, (uint32_t)proot[e->root], e->path);
        if (pe != NULL)
            used[pe - parent->files] = 1;
        if (e->type == STOW_FT_DIR) {
            if (pe == NULL || pe->type != STOW_FT_DIR)
                changed = 1;
            continue;
        }
        char *hash = NULL;
        if (pe != NULL && same_file(e, pe) &&
            (!p->checksum || e->type != STOW_FT_FILE || same_content(pe, roots[e->root], e->path, &hash))) {
            e->layer = -(2 + pe->layer);
            live[pe->layer] += tar_cost(e);
            free(e->sha256);
            e->sha256 = hash ? hash : (pe->sha256 ? strdup(pe->sha256) : NULL);
        } else {
            free(hash);
            res->files_changed++;
            changed = 1;
        }
    }
    for (size_t i = 0; i < parent->nfiles; i++) {
        if (!used[i] && parent->files[i].type != STOW_FT_DIR) {
            res->files_removed++;
            changed = 1;
        } else if (!used[i]) {
            changed = 1;
        }
    }
    /* Keep a parent layer while at least half of it is live; then, past max_layers, drop the
     * smallest (by live bytes) so their files are repacked into the new layer. */
    size_t kept = 0;
    for (size_t l = 0; l < np; l++) {
        int keep = live[l] > 0 && live[l] * 2 >= parent->layers[l].raw_size;
        if (live[l] > 0 && !keep)
            res->layers_repacked++;
        if (keep && !layer_exists(p->backend, &parent->layers[l])) {
            /* Pruned since the parent was restored: its files go into the new layer. */
            stow_warn("layer %s of %s is gone from the store; repacking its files", parent->layers[l].id,
                      parent->key);
            keep = 0;
            res->layers_repacked++;
        }
        map[l] = keep ? 0 : -1;
        kept += keep;
    }
    size_t budget = p->max_layers > 1 ? (size_t)p->max_layers - 1 : 1; /* room for the delta */
    while (kept > budget) {
        size_t smallest = np;
        for (size_t l = 0; l < np; l++)
            if (map[l] == 0 && (smallest == np || live[l] < live[smallest]))
                smallest = l;
        map[smallest] = -1;
        kept--;
        res->layers_repacked++;
    }
    if (res->layers_repacked > 0)
        changed = 1;
    for (size_t l = 0; l < np; l++) {
        if (map[l] != 0)
            continue;
        stow_layer *nl = stow_manifest_add_layer(m, err);
        if (nl == NULL)
            goto done;
        *nl = parent->layers[l];
        map[l] = (int32_t)(m->nlayers - 1);
    }
    for (size_t i = 0; i < m->nfiles; i++) {
        stow_file_entry *e = &m->files[i];
        if (e->layer <= -2)
            e->layer = map[-(e->layer + 2)];
    }
    rc = changed;
done:
    free(map);
    free(live);
    free(used);
    free(proot);
    return rc;
}

static int write_refs(const stow_cache_params *p, int64_t created)
{
    for (size_t r = 0; r < p->restore_keys->n; r++) {
        const char *prefix = p->restore_keys->v[r];
        if (strncmp(p->key, prefix, strlen(prefix)) != 0)
            continue;
        char ref[1024];
        json_t *o = json_pack("{s:s, s:I}", "key", p->key, "created", (json_int_t)created);
        char *rj = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        stow_error rerr = {0};
        if (rj == NULL || stow_cache_ref_name(ref, sizeof(ref), p->scope, prefix) != STOW_OK ||
            stow_backend_put_buffer(p->backend, ref, rj, strlen(rj), 0, &rerr) != STOW_OK)
            stow_warn("entry saved, but updating ref %s failed: %s", prefix, rerr.msg);
        free(rj);
    }
    return STOW_OK;
}

static void prune_one(const char *dir)
{
    stow_buildx_stats st;
    stow_error err = {0};
    if (stow_buildx_prune(&st, dir, &err) != STOW_OK) {
        stow_warn("buildx cache %s: %s", dir, err.msg);
        return;
    }
    char freed[32];
    stow_format_bytes(freed, sizeof(freed), st.bytes_deleted);
    stow_info("buildx cache %s: kept %llu blobs, deleted %llu unreferenced (%s)%s", dir,
              (unsigned long long)st.blobs_kept, (unsigned long long)st.blobs_deleted, freed,
              st.missing ? ", some referenced blobs are missing" : "");
}

/* Prunes buildx local caches before scanning: detected roots, and directories named in the
 * configuration (which must hold an OCI layout to be touched). */
static void prune_buildx(const stow_cache_params *p)
{
    if (!p->prune_buildx)
        return;
    for (size_t i = 0; i < p->paths->n; i++)
        if (stow_buildx_detect(p->abs_paths[i]))
            prune_one(p->abs_paths[i]);
    for (size_t i = 0; i < p->nbuildx_dirs; i++) {
        int done_already = 0;
        for (size_t j = 0; j < p->paths->n; j++)
            done_already |= strcmp(p->abs_paths[j], p->buildx_dirs[i]) == 0;
        if (done_already)
            continue;
        if (stow_buildx_detect(p->buildx_dirs[i]))
            prune_one(p->buildx_dirs[i]);
        else
            stow_warn("%s is named as a buildx cache but has no oci-layout and index.json; not pruning it",
                      p->buildx_dirs[i]);
    }
}

int stow_cache_save(stow_cache_result *res, const stow_cache_params *p, stow_error *err)
{
    int rc;
    stow_manifest *m = NULL, *parent = NULL;
    stow_progress *prog = NULL;
    char *json = NULL;
    size_t jlen = 0, first_new = 0;
    char name[1024];
    double t0 = stow_now();

    memset(res, 0, sizeof(*res));
    if (stow_cache_manifest_name(name, sizeof(name), p->scope, p->key) != STOW_OK || !stow_backend_name_ok(name))
        return stow_error_set(err, STOW_EUSAGE, "bad scope or key: %s / %s", p->scope, p->key);

    /* The parent: what restore left here, else the entry already stored under this key
     * (one GET: a miss means there is none). */
    parent = state_manifest(p);
    int same_entry = parent != NULL && strcmp(parent->key, p->key) == 0 && strcmp(parent->scope, p->scope) == 0;
    if (!p->update) {
        rc = same_entry ? STOW_OK : stow_backend_head(p->backend, name, NULL, err);
        if (rc == STOW_OK) {
            stow_info("entry %s already exists in scope %s; not saving (--no-update)", p->key, p->scope);
            snprintf(res->matched_key, sizeof(res->matched_key), "%s", p->key);
            goto done;
        }
        if (rc != STOW_ENOTFOUND)
            goto done;
    }
    if (parent == NULL) {
        rc = fetch_manifest(&parent, p->backend, p->scope, p->key, err);
        if (rc == STOW_OK)
            same_entry = 1;
        else if (rc != STOW_ENOTFOUND)
            goto done;
    }

    prune_buildx(p);
    m = stow_manifest_new();
    if (m == NULL) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    rc = stow_manifest_set_key(m, p->key, p->scope, err);
    for (size_t i = 0; rc == STOW_OK && i < p->paths->n; i++)
        rc = stow_manifest_add_root(m, p->paths->v[i], err);
    for (size_t i = 0; rc == STOW_OK && i < p->paths->n; i++)
        rc = stow_scan_root(m, (uint32_t)i, p->abs_paths[i], err);
    if (rc != STOW_OK)
        goto done;
    stow_manifest_sort(m);
    for (size_t i = 0; i < m->nfiles; i++) {
        if (m->files[i].type == STOW_FT_FILE)
            res->bytes_total += m->files[i].size;
        if (m->files[i].type != STOW_FT_DIR)
            res->files++;
    }
    if (parent != NULL) {
        snprintf(res->parent_key, sizeof(res->parent_key), "%s", parent->key);
        int changed = plan_delta(m, parent, p->abs_paths, p, res, err);
        if (changed < 0) {
            rc = err->code;
            goto done;
        }
        if (!changed && same_entry) {
            stow_info("no changes since %s was restored; nothing to upload", p->key);
            snprintf(res->matched_key, sizeof(res->matched_key), "%s", p->key);
            rc = STOW_OK;
            goto done;
        }
    } else {
        res->files_changed = res->files;
    }
    first_new = m->nlayers;
    rc = assign_new_layers(m, p->layer_size, err);
    if (rc != STOW_OK)
        goto done;
    m->created = stow_cache_now();
    uint64_t to_pack = 0;
    for (size_t i = 0; i < m->nfiles; i++)
        if (m->files[i].type == STOW_FT_FILE && (size_t)m->files[i].layer >= first_new)
            to_pack += m->files[i].size;
    prog = stow_progress_new("save", to_pack);
    save_ctx ctx = {m, p->abs_paths, p->backend, &p->pack, prog, first_new};
    /* One layer at a time: zstd already spreads a layer over every core, and each packer
     * holds its compression context and buffers (about 90 MB with two zstd workers), so
     * packing layers side by side would break the memory bound for a 10-15% gain. */
    rc = run_parallel(m->nlayers - first_new, 1, save_layer, &ctx, err);
    stow_progress_finish(prog);
    if (rc != STOW_OK) {
        /* New layers already uploaded are unreferenced: remove them. Parent layers stay. */
        for (size_t i = first_new; i < m->nlayers; i++) {
            char obj[128];
            stow_error ignored;
            if (m->layers[i].size > 0 && stow_manifest_layer_object(obj, sizeof(obj), &m->layers[i]) == STOW_OK)
                stow_backend_del(p->backend, obj, &ignored);
        }
        goto done;
    }
    for (size_t i = first_new; i < m->nlayers; i++)
        res->bytes_moved += m->layers[i].size;
    res->layers_total = m->nlayers;
    res->layers_moved = m->nlayers - first_new;

    /* Commit point: the manifest, written after every layer it names (a whole-object put,
     * so concurrent saves of one key leave one complete manifest: the last one). */
    rc = stow_manifest_to_json(&json, &jlen, m, err);
    if (rc == STOW_OK)
        rc = stow_backend_put_buffer(p->backend, name, json, jlen, 0, err);
    if (rc != STOW_OK) {
        stow_error_wrap(err, "writing %s", name);
        goto done;
    }
    res->bytes_moved += jlen;
    res->saved = 1;
    snprintf(res->matched_key, sizeof(res->matched_key), "%s", p->key);
    write_refs(p, m->created);
    /* The saved entry becomes the parent of the next save from this runner. */
    res->outcome = STOW_HIT;
    snprintf(res->matched_scope, sizeof(res->matched_scope), "%s", p->scope);
    save_state(p, res, m);
done:
    res->seconds = stow_now() - t0;
    stow_progress_free(prog);
    free(json);
    stow_manifest_free(m);
    stow_manifest_free(parent);
    return rc;
}
