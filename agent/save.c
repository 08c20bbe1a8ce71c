/* Save (DESIGN.md "Save"): scan, plan the delta against the parent entry, pack and upload the
 * new layers under a lease, commit the manifest, check that every layer it names still exists
 * (repairing what a concurrent prune removed), then write the refs. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adapt.h"
#include "buildx.h"
#include "cancel.h"
#include "cache.h"
#include "cache_int.h"
#include "hash.h"
#include "layout.h"
#include "log.h"
#include "manifest.h"
#include "progress.h"
#include "refs.h"
#include "scan.h"
#include "trim.h"
#include "util.h"

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

/* Bytes a file takes in a tar stream, roughly: data rounded to blocks plus pax headers. */
static uint64_t tar_cost(const stow_file_entry *e) { return ((e->size + 511) / 512) * 512 + 1024; }

static int same_file(const stow_file_entry *a, const stow_file_entry *b)
{
    if (a->type != b->type || a->mode != b->mode || a->mtime != b->mtime ||
        a->mtime_ns != b->mtime_ns)
        return 0;
    if (a->type == STOW_FT_FILE)
        return a->size == b->size;
    if (a->type == STOW_FT_LINK)
        return strcmp(a->target, b->target) == 0;
    return 1;
}

/* With --checksum: 1 when the local file's content hash equals the parent's recorded one. */
static int same_content(const stow_file_entry *pe, const char *root, const char *path,
                        char **hash_out)
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
    char obj[STOW_LAYOUT_NAME_MAX];
    stow_error err = {0};
    return stow_layout_layer_name(obj, sizeof(obj), l->id) != STOW_OK ||
           stow_backend_head(b, obj, NULL, &err) != STOW_ENOTFOUND;
}

/* See cache_int.h. */
/* The parent's entry for e, walking both indexes once: they are sorted by (root, path), and
 * plan_delta asks in that order, so the cursor over the parent's entries of e's root only
 * moves forward (a merge of two sorted lists, no search per entry). */
typedef struct {
    int32_t root; /* the parent root the range is for, -1 before the first */
    size_t pos, end;
} parent_cursor;

static size_t first_of_root(const stow_manifest *pm, uint32_t root)
{
    size_t lo = 0, hi = pm->nfiles;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (pm->files[mid].root < root)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static const stow_file_entry *parent_next(parent_cursor *c, const stow_manifest *parent,
                                          const int32_t *proot, const stow_file_entry *e)
{
    int32_t q = proot[e->root];
    if (q < 0)
        return NULL;
    if (q != c->root) {
        c->root = q;
        c->pos = first_of_root(parent, (uint32_t)q);
        c->end = first_of_root(parent, (uint32_t)q + 1);
    }
    int cmp = 1;
    while (c->pos < c->end && (cmp = strcmp(parent->files[c->pos].path, e->path)) < 0)
        c->pos++;
    return c->pos < c->end && cmp == 0 ? &parent->files[c->pos] : NULL;
}

int stow_save_plan_delta(stow_manifest *m, const stow_manifest *parent, char *const *roots,
                         const stow_cache_params *p, stow_cache_result *res, stow_error *err)
{
    size_t np = parent->nlayers;
    int32_t *map = NULL;   /* parent layer -> index in m, or -1 when dropped */
    uint64_t *live = NULL; /* live tar bytes per parent layer */
    unsigned char *used = NULL;
    int32_t *proot = NULL; /* m root -> parent root */
    int changed = 0, rc = -1;

    map = malloc((np ? np : 1) * sizeof(*map));
    live = calloc(np ? np : 1, sizeof(*live));
    used = calloc(parent->nfiles ? parent->nfiles : 1, 1);
    proot = malloc((m->nroots ? m->nroots : 1) * sizeof(*proot));
    if (!map || !live || !used || !proot) {
        stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    stow_manifest_map_roots(proot, m, parent);
    /* Match every scanned entry with the parent's. Parent layer indices are stored as
     * -(2 + index) until the parent layers kept in m are known. */
    parent_cursor cur = {.root = -1};
    for (size_t i = 0; i < m->nfiles; i++) {
        stow_file_entry *e = &m->files[i];
        const stow_file_entry *pe = parent_next(&cur, parent, proot, e);
        if (pe != NULL)
            used[pe - parent->files] = 1;
        if (e->type == STOW_FT_DIR) {
            if (pe == NULL || pe->type != STOW_FT_DIR)
                changed = 1;
            continue;
        }
        char *hash = NULL;
        if (pe != NULL && same_file(e, pe) &&
            (!p->checksum || e->type != STOW_FT_FILE ||
             same_content(pe, roots[e->root], e->path, &hash))) {
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
            stow_warn("layer %s of %s is gone from the store; repacking its files",
                      parent->layers[l].id, parent->key);
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

/* Refs for every prefix of the key that ends at a separator (capped) and for every
 * restore-key prefix the key starts with (refs.h). A failed ref costs a prefix lookup, not the
 * entry: warn only. */
static void write_refs(const stow_cache_params *p, int64_t created)
{
    stow_strlist names = {0};
    stow_error rerr = {0};
    if (stow_refs_for_save(&names, p->key, p->restore_keys, &rerr) != STOW_OK)
        stow_warn("entry saved, but its refs were not written: %s", rerr.msg);
    for (size_t r = 0; r < names.n; r++) {
        if (stow_layout_put_ref(p->backend, p->scope, names.v[r], p->key, created, &rerr) !=
            STOW_OK)
            stow_warn("entry saved, but updating ref %s failed: %s", names.v[r], rerr.msg);
    }
    stow_debug("wrote %zu refs for %s", names.n, p->key);
    stow_strlist_free(&names);
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
            stow_warn(
                "%s is named as a buildx cache but has no oci-layout and index.json; not pruning it",
                p->buildx_dirs[i]);
    }
}

/* ------------------------------------------------------------------------------------------
 * The lease: which layers this save relies on while it runs (layout.h, leases/)
 * ------------------------------------------------------------------------------------------ */

static int lease_add(stow_lease *l, const char *id, stow_error *err)
{
    for (size_t i = 0; i < l->nlayers; i++)
        if (strcmp(l->layers[i], id) == 0)
            return STOW_OK;
    void *nl = realloc(l->layers, (l->nlayers + 1) * sizeof(*l->layers));
    if (nl == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    l->layers = nl;
    memcpy(l->layers[l->nlayers++], id, STOW_LAYER_ID_LEN + 1);
    return STOW_OK;
}

/* Writes leases/<id>.json naming every layer of the parent and of m. A lease that cannot be
 * written is a warning: the check after the commit still protects the entry. */
static void lease_begin(stow_lease *l, int *written, const stow_cache_params *p,
                        const stow_manifest *m, const stow_manifest *parent)
{
    stow_error err = {0};
    int rc = stow_random_hex(l->id, STOW_LAYER_ID_LEN / 2) == STOW_OK ? STOW_OK : STOW_ERR;
    l->time = stow_layout_now();
    stow_strlcpy(l->scope, p->scope, sizeof(l->scope));
    stow_strlcpy(l->key, p->key, sizeof(l->key));
    for (size_t i = 0; rc == STOW_OK && parent != NULL && i < parent->nlayers; i++)
        rc = lease_add(l, parent->layers[i].id, &err);
    for (size_t i = 0; rc == STOW_OK && i < m->nlayers; i++)
        rc = lease_add(l, m->layers[i].id, &err);
    if (rc == STOW_OK)
        rc = stow_layout_put_lease(p->backend, l, &err);
    if (rc != STOW_OK) {
        stow_warn(
            "could not write a lease for this save (%s); a concurrent prune may force a repair",
            err.msg);
        return;
    }
    *written = 1;
    stow_debug("lease %s written for %zu layers", l->id, l->nlayers);
}

static void lease_end(stow_lease *l, int written, const stow_cache_params *p)
{
    char name[STOW_LAYOUT_NAME_MAX];
    stow_error err = {0};
    if (written && stow_layout_lease_name(name, sizeof(name), l->id) == STOW_OK &&
        stow_backend_del(p->backend, name, &err) != STOW_OK)
        stow_warn("could not remove lease %s: %s (prune drops it once it is stale)", name, err.msg);
    stow_lease_clear(l);
}

/* ------------------------------------------------------------------------------------------
 * Commit with a check: every layer the manifest names must exist after it is written
 * ------------------------------------------------------------------------------------------ */

typedef struct {
    const stow_cache_params *p;
    stow_manifest *m;
    stow_lease *lease;
    int lease_written;
    unsigned char *fresh; /* per layer: uploaded by this save (removed again on failure) */
    char name[STOW_LAYOUT_NAME_MAX];
    int committed;
    uint64_t manifest_bytes;
} commit_ctx;

/* Re-uploads, under a new id, every layer of the manifest that the store no longer has, from
 * the local files (which the scan found unchanged). Returns how many were repaired, or -1. */
static int repair_missing(commit_ctx *c, stow_error *err)
{
    stow_manifest *m = c->m;
    int repaired = 0;
    for (size_t i = 0; i < m->nlayers; i++) {
        if (layer_exists(c->p->backend, &m->layers[i]))
            continue;
        char old[STOW_LAYER_ID_LEN + 1];
        memcpy(old, m->layers[i].id, sizeof(old));
        stow_warn(
            "layer %s of %s disappeared from the store during the save (a concurrent prune?); "
            "uploading it again from the local files",
            old, m->key);
        if (stow_random_hex(m->layers[i].id, STOW_LAYER_ID_LEN / 2) != STOW_OK) {
            stow_error_set(err, STOW_ERR, "no randomness for layer ids");
            return -1;
        }
        if (c->lease_written) {
            stow_error lerr = {0};
            if (lease_add(c->lease, m->layers[i].id, &lerr) != STOW_OK ||
                stow_layout_put_lease(c->p->backend, c->lease, &lerr) != STOW_OK)
                stow_warn("could not extend the lease: %s", lerr.msg);
        }
        if (stow_layer_pack(m, i, c->p->abs_paths, c->p->backend, &c->p->pack, NULL, err) !=
            STOW_OK) {
            stow_error_wrap(err, "repairing layer %s", old);
            return -1;
        }
        c->fresh[i] = 1;
        repaired++;
    }
    return repaired;
}

static int put_manifest(commit_ctx *c, stow_error *err)
{
    char *json = NULL, *obj = NULL;
    size_t jlen = 0;
    int rc = stow_manifest_encode(&json, &jlen, c->m, err);
    if (rc == STOW_OK) /* signed when a signing key is set (layout.h) */
        rc = stow_layout_manifest_seal(&obj, &jlen, c->name, json, jlen, c->p->signer, err);
    if (rc == STOW_OK)
        rc = stow_backend_put_buffer(c->p->backend, c->name, obj, jlen, 0, err);
    free(obj);
    free(json);
    if (rc != STOW_OK)
        return stow_error_wrap(err, "writing %s", c->name);
    c->committed = 1;
    c->manifest_bytes += jlen;
    return STOW_OK;
}

/* Checks the layers (repairing), writes the manifest, checks again after the commit point
 * (a prune that listed the leases before this save wrote its own can still have removed a
 * layer), rewriting the manifest after each repair. A manifest whose layers cannot be
 * made whole is deleted again: the store never keeps a broken entry. */
static int commit_checked(commit_ctx *c, stow_error *err)
{
    int rc = repair_missing(c, err) < 0 ? err->code : STOW_OK;
    if (rc == STOW_OK)
        rc = put_manifest(c, err);
    for (int round = 0; rc == STOW_OK; round++) {
        int n = repair_missing(c, err);
        if (n == 0)
            break;
        if (n < 0)
            rc = err->code;
        else if (round == 2)
            rc = stow_error_set(err, STOW_ERR, "layers of %s keep disappearing from the store",
                                c->m->key);
        else
            rc = put_manifest(c, err);
    }
    if (rc != STOW_OK && c->committed) {
        stow_error derr = {0};
        if (stow_backend_del(c->p->backend, c->name, &derr) != STOW_OK)
            stow_error_log("could not remove the incomplete entry %s: %s", c->name, derr.msg);
        c->committed = 0;
        stow_error_wrap(err, "entry %s removed again: it referenced layers that are gone",
                        c->m->key);
        if (rc == STOW_OK || rc == STOW_ENOTFOUND)
            rc = STOW_ECORRUPT;
        err->code = rc;
    }
    return rc;
}

/* New layers of a failed save are unreferenced: remove them. Parent layers stay. */
static void remove_fresh(const commit_ctx *c)
{
    for (size_t i = 0; i < c->m->nlayers; i++) {
        char obj[STOW_LAYOUT_NAME_MAX];
        stow_error ignored;
        if (c->fresh[i] && c->m->layers[i].size > 0 &&
            stow_layout_layer_name(obj, sizeof(obj), c->m->layers[i].id) == STOW_OK)
            stow_backend_del(c->p->backend, obj, &ignored);
    }
}

/* ------------------------------------------------------------------------------------------
 * The save
 * ------------------------------------------------------------------------------------------ */

/* An existing entry as a parent: NULL when there is none, or (with a signing key) when it is
 * not validly signed, then with a warning: the save uploads in full. */
static int verified_parent(stow_manifest **parent, const stow_cache_params *p, const char *scope,
                           const char *key, stow_error *err)
{
    int refused = 0;
    int rc = stow_layout_fetch_manifest_verified(parent, &refused, p->backend, scope, key,
                                                 p->signer, err);
    if (rc == STOW_ENOTFOUND || (rc != STOW_OK && refused)) {
        if (refused)
            stow_warn("%s; not building on it, saving in full", err->msg);
        *parent = NULL;
        return STOW_OK;
    }
    return rc;
}

/* The parent: what restore left here, else the entry already stored under this key (one GET:
 * a miss means there is none). STOW_EEXIST when --no-update finds the key already saved. */
static int find_parent(stow_manifest **parent, int *same_entry, const stow_cache_params *p,
                       const char *name, stow_error *err)
{
    *parent = stow_cache_state_manifest(p);
    *same_entry = *parent != NULL && strcmp((*parent)->key, p->key) == 0 &&
                  strcmp((*parent)->scope, p->scope) == 0;
    if (!p->update) {
        int rc = *same_entry ? STOW_OK : stow_backend_head(p->backend, name, NULL, err);
        if (rc == STOW_OK)
            return STOW_EEXIST;
        if (rc != STOW_ENOTFOUND)
            return rc;
    }
    if (*parent != NULL && p->signer != NULL) {
        /* With a key, a delta builds only on a signed entry: the new signature would otherwise
         * vouch for layers nobody signed. The restored entry is read again, checked. */
        char scope[STOW_LAYOUT_PART_MAX], key[STOW_LAYOUT_PART_MAX];
        snprintf(scope, sizeof(scope), "%s", (*parent)->scope);
        snprintf(key, sizeof(key), "%s", (*parent)->key);
        stow_manifest_free(*parent);
        *parent = NULL;
        int rc = verified_parent(parent, p, scope, key, err);
        if (rc != STOW_OK)
            return rc;
        *same_entry = *parent != NULL && strcmp(key, p->key) == 0 && strcmp(scope, p->scope) == 0;
        if (*same_entry || *parent != NULL)
            return STOW_OK;
    }
    if (*parent == NULL) {
        int rc = verified_parent(parent, p, p->scope, p->key, err);
        if (rc != STOW_OK)
            return rc;
        *same_entry = *parent != NULL;
    }
    return STOW_OK;
}

/* A fresh manifest of the configured roots, sorted, with the totals in res. */
static int scan_roots(stow_manifest **out, stow_cache_result *res, const stow_cache_params *p,
                      stow_error *err)
{
    stow_manifest *m = stow_manifest_new();
    *out = NULL;
    if (m == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    int rc = stow_manifest_set_key(m, p->key, p->scope, err);
    for (size_t i = 0; rc == STOW_OK && i < p->paths->n; i++)
        rc = stow_manifest_add_root(m, p->paths->v[i], err);
    for (size_t i = 0; rc == STOW_OK && i < p->paths->n; i++)
        rc = stow_scan_root(m, (uint32_t)i, p->abs_paths[i], err);
    if (rc != STOW_OK) {
        stow_manifest_free(m);
        return rc;
    }
    stow_manifest_sort(m);
    for (size_t i = 0; i < m->nfiles; i++) {
        if (m->files[i].type == STOW_FT_FILE)
            res->bytes_total += m->files[i].size;
        if (m->files[i].type != STOW_FT_DIR)
            res->files++;
    }
    *out = m;
    return STOW_OK;
}

/* An entry with no files is never stored: the next restore would report a hit for a cache
 * it does not have (actions/cache's path validation does the same). */
static void refuse_empty(const stow_cache_params *p)
{
    char missing[1024] = "";
    size_t n = 0;
    for (size_t i = 0; i < p->paths->n; i++) {
        if (access(p->abs_paths[i], F_OK) == 0)
            continue;
        size_t len = strlen(missing);
        snprintf(missing + len, sizeof(missing) - len, "%s%s", n++ ? ", " : "", p->paths->v[i]);
    }
    if (n > 0)
        stow_warn("not saving %s: no files to save; %zu of %zu paths do not exist: %s", p->key, n,
                  p->paths->n, missing);
    else
        stow_warn("not saving %s: the paths hold no files (%zu paths, all empty)", p->key,
                  p->paths->n);
}

/* Packs and uploads layers [first_new, nlayers) of m. */
static int upload_new_layers(stow_manifest *m, size_t first_new, const stow_cache_params *p,
                             stow_cache_result *res, stow_error *err)
{
    uint64_t to_pack = 0;
    for (size_t i = 0; i < m->nfiles; i++)
        if (m->files[i].type == STOW_FT_FILE && (size_t)m->files[i].layer >= first_new)
            to_pack += m->files[i].size;
    stow_progress *prog = stow_progress_new("save", to_pack);
    /* One level controller for the whole save: what one layer learnt about the link carries
     * over to the next. */
    stow_adapt adapt;
    stow_pack_opts pack = p->pack;
    stow_adapt_init(&adapt, pack.level, pack.level_min, pack.level_max);
    pack.adapt = &adapt;
    save_ctx ctx = {m, p->abs_paths, p->backend, &pack, prog, first_new};
    /* One layer at a time: zstd already spreads a layer over every core, and each packer
     * holds its compression context and buffers (about 90 MB with two zstd workers), so
     * packing layers side by side would break the memory bound for a 10-15% gain. */
    int rc = stow_cache_run_parallel(m->nlayers - first_new, 1, save_layer, &ctx, err);
    stow_progress_finish(prog);
    stow_progress_free(prog);
    res->level_lo = adapt.lo_used;
    res->level_hi = adapt.hi_used;
    res->level_final = adapt.level;
    res->level_mean = stow_adapt_mean(&adapt);
    res->level_auto = !adapt.pinned;
    if (adapt.pinned)
        stow_debug("zstd level %d (pinned by compression_level)", adapt.level);
    else
        stow_debug("zstd level auto %d..%d: used %d..%d, mean %.1f, final %d, %u changes",
                   adapt.min, adapt.max, adapt.lo_used, adapt.hi_used, res->level_mean, adapt.level,
                   adapt.changes);
    return rc;
}

int stow_cache_save(stow_cache_result *res, const stow_cache_params *p, stow_error *err)
{
    int rc, same_entry = 0, lease_written = 0;
    stow_manifest *m = NULL, *parent = NULL;
    stow_lease lease = {.nlayers = 0};
    commit_ctx cc = {.p = p};
    stow_trim_stats trim = {0};
    stow_trim_dropped *dropped = NULL;
    size_t first_new = 0;
    double t0 = stow_now();

    memset(res, 0, sizeof(*res));
    if (stow_layout_manifest_name(cc.name, sizeof(cc.name), p->scope, p->key) != STOW_OK)
        return stow_error_set(err, STOW_EUSAGE, "bad scope or key: %s / %s", p->scope, p->key);

    rc = find_parent(&parent, &same_entry, p, cc.name, err);
    if (rc == STOW_EEXIST) {
        stow_info("entry %s already exists in scope %s; not saving (--no-update)", p->key,
                  p->scope);
        snprintf(res->matched_key, sizeof(res->matched_key), "%s", p->key);
        rc = STOW_OK;
        goto done;
    }
    if (rc != STOW_OK)
        goto done;

    prune_buildx(p);
    rc = scan_roots(&m, res, p, err);
    if (rc != STOW_OK)
        goto done;
    if (res->files == 0) {
        refuse_empty(p);
        res->empty = 1;
        goto done;
    }
    if (parent != NULL) {
        snprintf(res->parent_key, sizeof(res->parent_key), "%s", parent->key);
        /* Before anything of this save reads a file (--checksum, packing): atimes are the
         * build's own. */
        rc = stow_trim_apply(&trim, &dropped, m, parent, p, err);
        if (rc != STOW_OK)
            goto done;
        res->trim_tracked = trim.tracked;
        res->files_trimmed = trim.files_trimmed;
        res->bytes_trimmed = trim.bytes_trimmed;
        res->bytes_unread = trim.bytes_unread;
        res->files -= trim.files_trimmed + trim.files_kept_out;
        res->bytes_total -= trim.bytes_trimmed + trim.bytes_kept_out;
        int changed = stow_save_plan_delta(m, parent, p->abs_paths, p, res, err);
        if (changed < 0) {
            rc = err->code;
            goto done;
        }
        /* With trimming on, changed unread counts are worth a new manifest (no layers): they
         * are what lets a later save trim. With it off they wait for the next real change. */
        if (!changed && same_entry && trim.counts_changed && p->trim_unused_after > 0) {
            stow_info("no file changes since %s was restored; updating its unread counts", p->key);
            changed = 1;
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
    stow_split_opts split;
    stow_save_split_defaults(&split, p->layer_size, p->max_layers);
    rc = stow_save_split_new_layers(m, &split, err);
    if (rc != STOW_OK)
        goto done;
    m->created = stow_layout_now();
    cc.m = m;
    cc.fresh = calloc(m->nlayers ? m->nlayers : 1, 1);
    if (cc.fresh == NULL) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    for (size_t i = first_new; i < m->nlayers; i++)
        cc.fresh[i] = 1;

    /* From here until the refs are written, prune keeps every layer this save relies on. */
    lease_begin(&lease, &lease_written, p, m, parent);
    cc.lease = &lease;
    cc.lease_written = lease_written;
    rc = upload_new_layers(m, first_new, p, res, err);
    if (rc == STOW_OK && stow_cancel_requested())
        rc = stow_error_set(err, STOW_ERR, "interrupted by signal %d before the commit",
                            stow_cancel_requested());
    if (rc == STOW_OK)
        rc = commit_checked(&cc, err);
    if (rc == STOW_ETIMEOUT) {
        /* The store stalled: cleaning up would wait out another deadline. The new layers are
         * unreferenced and the lease goes stale; prune removes both later. */
        stow_info("store stalled: leaving the uploaded layers and the lease for prune to remove");
        lease_written = 0;
        goto done;
    }
    if (rc != STOW_OK) {
        remove_fresh(&cc);
        goto done;
    }
    for (size_t i = 0; i < m->nlayers; i++) {
        if (cc.fresh[i]) {
            res->bytes_moved += m->layers[i].size;
            res->layers_moved++;
        }
    }
    res->bytes_moved += cc.manifest_bytes;
    res->layers_total = m->nlayers;
    res->saved = 1;
    snprintf(res->matched_key, sizeof(res->matched_key), "%s", p->key);
    write_refs(p, m->created);
    /* The saved entry becomes the parent of the next save from this runner. */
    res->outcome = STOW_HIT;
    snprintf(res->matched_scope, sizeof(res->matched_scope), "%s", p->scope);
    stow_cache_state_save(p, res, m);
    if (p->trim_local)
        stow_trim_remove_local(dropped, p);
    /* The next save on this runner judges the builds after this one. */
    stow_trim_mark_restored(m, p->abs_paths, p, NULL);
done:
    stow_trim_dropped_free(dropped);
    lease_end(&lease, lease_written, p);
    res->seconds = stow_now() - t0;
    free(cc.fresh);
    stow_manifest_free(m);
    stow_manifest_free(parent);
    return rc;
}
