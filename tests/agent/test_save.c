/* Unit tests for agent/save.c: delta planning (unchanged, changed, new and removed files; the
 * compaction triggers: live bytes under half, max_layers; parent layers gone from the store)
 * and the check after the commit point (a layer removed by a concurrent prune is uploaded
 * again; an entry that cannot be repaired is removed). A file store in a temp dir; the
 * "concurrent prune" is a thin wrapper over it that deletes objects when the manifest is put. */
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache_int.h"
#include "layout.h"
#include "log.h"
#include "test.h"

static char base[PATH_MAX];

/* ------------------------------------------------------------------------------------------
 * A file store wrapped so that putting a manifest first runs a "prune" (deletes named objects)
 * ------------------------------------------------------------------------------------------ */

typedef struct {
    stow_backend base;
    stow_backend *inner;
    char doomed[8][STOW_LAYOUT_NAME_MAX]; /* deleted when the first manifest put begins */
    size_t ndoomed;
    int fail_layer_puts_after; /* after the prune: layer puts fail (repair impossible) */
    int pruned;
} racing_backend;

static racing_backend *racing_of(stow_backend *b) { return (racing_backend *)b; }

static int r_get(stow_backend *b, const char *name, uint64_t off, uint64_t len, stow_sink_fn sink,
                 void *ud, stow_error *err)
{
    return stow_backend_get(racing_of(b)->inner, name, off, len, sink, ud, err);
}

static int r_put_begin(stow_put **out, stow_backend *b, const char *name, int64_t hint,
                       unsigned flags, stow_error *err)
{
    racing_backend *r = racing_of(b);
    if (!r->pruned && strncmp(name, "manifests/", 10) == 0) {
        r->pruned = 1;
        for (size_t i = 0; i < r->ndoomed; i++)
            stow_backend_del(r->inner, r->doomed[i], err);
    }
    if (r->pruned && r->fail_layer_puts_after && strncmp(name, "layers/", 7) == 0)
        return stow_error_set(err, STOW_ERR, "store full (test)");
    return r->inner->ops->put_begin(out, r->inner, name, hint, flags, err);
}

static int r_head(stow_backend *b, const char *name, stow_object_info *info, stow_error *err)
{
    return stow_backend_head(racing_of(b)->inner, name, info, err);
}

static int r_del(stow_backend *b, const char *name, stow_error *err)
{
    return stow_backend_del(racing_of(b)->inner, name, err);
}

static int r_write(stow_put *p, const void *buf, size_t len, stow_error *err)
{
    return stow_backend_file_ops.put_write(p, buf, len, err);
}
static int r_commit(stow_put *p, stow_error *err)
{
    return stow_backend_file_ops.put_commit(p, err);
}
static void r_abort(stow_put *p) { stow_backend_file_ops.put_abort(p); }
static void r_free(stow_backend *b) { (void)b; }

static const stow_backend_ops racing_ops = {
    .version = STOW_BACKEND_VERSION,
    .scheme = "file",
    .get = r_get,
    .put_begin = r_put_begin,
    .put_write = r_write,
    .put_commit = r_commit,
    .put_abort = r_abort,
    .head = r_head,
    .del = r_del,
    .free = r_free,
};

static stow_backend *open_store(const char *sub)
{
    char url[PATH_MAX + 16];
    stow_backend *b = NULL;
    stow_error err = {0};
    snprintf(url, sizeof(url), "file://%s/%s", base, sub);
    stow_backend_opts o = {.url = url, .verify_tls = 1, .max_retries = -1};
    CHECK_INT(stow_backend_open(&b, &o, &err), STOW_OK);
    return b;
}

/* ------------------------------------------------------------------------------------------
 * Delta planning
 * ------------------------------------------------------------------------------------------ */

#define RAW 2048 /* tar cost of a 1000-byte file: one 1024-byte block plus 1024 of headers */

static void add_file(stow_manifest *m, const char *path, int64_t mtime, int32_t layer)
{
    stow_error err = {0};
    stow_file_entry e = {0, (char *)path, STOW_FT_FILE, 0644, 1000, mtime, 0, layer, NULL, NULL, 0};
    CHECK_INT(stow_manifest_add_file(m, &e, &err), STOW_OK);
}

/* A parent with layers of the given raw sizes; their objects exist in b unless missing. */
static stow_manifest *parent_with(stow_backend *b, size_t nlayers, const uint64_t *raw, int missing)
{
    stow_error err = {0};
    stow_manifest *m = stow_manifest_new();
    CHECK_INT(stow_manifest_set_key(m, "parent", "main", &err), STOW_OK);
    CHECK_INT(stow_manifest_add_root(m, "~/c", &err), STOW_OK);
    for (size_t i = 0; i < nlayers; i++) {
        stow_layer *l = stow_manifest_add_layer(m, &err);
        snprintf(l->id, sizeof(l->id), "%032zx", i + 1);
        l->raw_size = raw[i];
        l->size = raw[i] / 2;
        char name[STOW_LAYOUT_NAME_MAX];
        if ((int)i != missing && stow_layout_layer_name(name, sizeof(name), l->id) == STOW_OK)
            CHECK_INT(stow_backend_put_buffer(b, name, "x", 1, 0, &err), STOW_OK);
    }
    return m;
}

static stow_manifest *scan_of(void)
{
    stow_error err = {0};
    stow_manifest *m = stow_manifest_new();
    CHECK_INT(stow_manifest_set_key(m, "child", "main", &err), STOW_OK);
    CHECK_INT(stow_manifest_add_root(m, "~/c", &err), STOW_OK);
    return m;
}

static stow_cache_params params(stow_backend *b, int max_layers)
{
    stow_cache_params p = {.backend = b, .key = "child", .scope = "main", .max_layers = max_layers};
    return p;
}

static const char *layer_of(const stow_manifest *m, const char *path)
{
    const stow_file_entry *e = stow_manifest_find(m, 0, path);
    return e == NULL ? "(none)" : e->layer < 0 ? "(new)" : m->layers[e->layer].id;
}

/* Roots listed in another order than the parent's, paths that sort around each other
 * ("a-b" < "a/z" < "ab"): every unchanged file is found in one forward pass per root. */
static void plan_file(stow_manifest *m, uint32_t root, const char *path, int32_t layer)
{
    stow_error err = {0};
    stow_file_entry e = {root, (char *)path, STOW_FT_FILE, 0644, 1000, 100,
                         0,    layer,        NULL,         NULL, 0};
    CHECK_INT(stow_manifest_add_file(m, &e, &err), STOW_OK);
}

static void test_plan_roots_order(stow_backend *b)
{
    uint64_t raw[] = {2 * RAW};
    stow_manifest *parent = parent_with(b, 1, raw, -1), *m = stow_manifest_new();
    stow_error err = {0};
    CHECK_INT(stow_manifest_add_root(parent, "~/d", &err), STOW_OK); /* parent: ~/c, ~/d */
    CHECK_INT(stow_manifest_set_key(m, "child", "main", &err), STOW_OK);
    CHECK_INT(stow_manifest_add_root(m, "~/d", &err), STOW_OK); /* now: ~/d, ~/c */
    CHECK_INT(stow_manifest_add_root(m, "~/c", &err), STOW_OK);
    const char *paths[] = {"a-b", "a/z", "ab", "b"};
    for (uint32_t i = 0; i < 4; i++) {
        plan_file(parent, 0, paths[i], 0);
        plan_file(parent, 1, paths[i], 0);
        plan_file(m, 0, paths[i], -1);
        if (i != 1)
            plan_file(m, 1, paths[i], -1); /* ~/c lost a/z */
    }
    stow_manifest_sort(parent);
    stow_manifest_sort(m);
    stow_cache_params p = params(b, 8);
    stow_cache_result res = {0};
    CHECK_INT(stow_save_plan_delta(m, parent, NULL, &p, &res, &err), 1);
    CHECK_INT(res.files_changed, 0);
    CHECK_INT(res.files_removed, 1);
    for (size_t i = 0; i < m->nfiles; i++)
        CHECK_INT(m->files[i].layer, 0);
    stow_manifest_free(m);
    stow_manifest_free(parent);
}

static void test_plan_files(stow_backend *b)
{
    /* Parent: layer 1 holds a and b, layer 2 holds c. Now: a, b unchanged, c removed, d new,
     * e changed (it was in layer 2 as well). */
    uint64_t raw[] = {2 * RAW, 2 * RAW};
    stow_manifest *parent = parent_with(b, 2, raw, -1), *m = scan_of();
    stow_error err = {0};
    add_file(parent, "a", 100, 0);
    add_file(parent, "b", 100, 0);
    add_file(parent, "c", 100, 1);
    add_file(parent, "e", 100, 1);
    stow_manifest_sort(parent);
    add_file(m, "a", 100, -1);
    add_file(m, "b", 100, -1);
    add_file(m, "d", 100, -1);
    add_file(m, "e", 101, -1);
    stow_manifest_sort(m);
    stow_cache_params p = params(b, 8);
    stow_cache_result res = {0};
    CHECK_INT(stow_save_plan_delta(m, parent, NULL, &p, &res, &err), 1);
    CHECK_INT(res.files_changed, 2);   /* d, e */
    CHECK_INT(res.files_removed, 1);   /* c */
    CHECK_INT(res.layers_repacked, 0); /* layer 2 has nothing live: dropped, not repacked */
    CHECK_INT(m->nlayers, 1);
    CHECK_STR(layer_of(m, "a"), parent->layers[0].id);
    CHECK_STR(layer_of(m, "b"), parent->layers[0].id);
    CHECK_STR(layer_of(m, "d"), "(new)");
    CHECK_STR(layer_of(m, "e"), "(new)");
    CHECK_INT(stow_save_assign_new_layers(m, 1 << 20, &err), STOW_OK);
    CHECK_INT(m->nlayers, 2);
    CHECK(strcmp(layer_of(m, "d"), layer_of(m, "e")) == 0 &&
          strcmp(layer_of(m, "d"), parent->layers[0].id) != 0);
    stow_manifest_free(m);

    /* Nothing changed: 0, and every file keeps its layer. */
    m = scan_of();
    add_file(m, "a", 100, -1);
    add_file(m, "b", 100, -1);
    add_file(m, "c", 100, -1);
    add_file(m, "e", 100, -1);
    stow_manifest_sort(m);
    memset(&res, 0, sizeof(res));
    CHECK_INT(stow_save_plan_delta(m, parent, NULL, &p, &res, &err), 0);
    CHECK_INT(m->nlayers, 2);
    CHECK_STR(layer_of(m, "c"), parent->layers[1].id);
    stow_manifest_free(m);
    stow_manifest_free(parent);
}

static void test_plan_compaction(stow_backend *b)
{
    /* Live bytes exactly half of the layer: kept; one byte under half: repacked. */
    for (int under = 0; under <= 1; under++) {
        uint64_t raw[] = {2 * RAW + (uint64_t)under};
        stow_manifest *parent = parent_with(b, 1, raw, -1), *m = scan_of();
        stow_error err = {0};
        add_file(parent, "a", 100, 0);
        add_file(parent, "b", 100, 0);
        stow_manifest_sort(parent);
        add_file(m, "a", 100, -1);
        stow_manifest_sort(m);
        stow_cache_params p = params(b, 8);
        stow_cache_result res = {0};
        CHECK_INT(stow_save_plan_delta(m, parent, NULL, &p, &res, &err), 1);
        CHECK_INT(res.layers_repacked, under);
        CHECK_STR(layer_of(m, "a"), under ? "(new)" : parent->layers[0].id);
        stow_manifest_free(m);
        stow_manifest_free(parent);
    }

    /* max_layers 3: room for two parent layers beside the delta; the smallest by live bytes
     * go. Layer i holds i + 1 files, all live. */
    uint64_t raw[] = {RAW, 2 * RAW, 3 * RAW, 4 * RAW};
    stow_manifest *parent = parent_with(b, 4, raw, -1), *m = scan_of();
    stow_error err = {0};
    char path[16];
    for (int l = 0; l < 4; l++)
        for (int f = 0; f <= l; f++) {
            snprintf(path, sizeof(path), "l%d-f%d", l, f);
            add_file(parent, path, 100, l);
            add_file(m, path, 100, -1);
        }
    stow_manifest_sort(parent);
    stow_manifest_sort(m);
    stow_cache_params p = params(b, 3);
    stow_cache_result res = {0};
    CHECK_INT(stow_save_plan_delta(m, parent, NULL, &p, &res, &err), 1);
    CHECK_INT(res.layers_repacked, 2);
    CHECK_INT(m->nlayers, 2);
    CHECK_STR(layer_of(m, "l0-f0"), "(new)");
    CHECK_STR(layer_of(m, "l1-f1"), "(new)");
    CHECK_STR(layer_of(m, "l2-f0"), parent->layers[2].id);
    CHECK_STR(layer_of(m, "l3-f3"), parent->layers[3].id);
    stow_manifest_free(m);
    stow_manifest_free(parent);

    /* A parent layer pruned since the restore: its live files are repacked. */
    uint64_t raw2[] = {RAW, RAW};
    parent = parent_with(b, 2, raw2, 1);
    m = scan_of();
    add_file(parent, "x", 100, 0);
    add_file(parent, "y", 100, 1);
    stow_manifest_sort(parent);
    char gone[STOW_LAYOUT_NAME_MAX];
    stow_layout_layer_name(gone, sizeof(gone), parent->layers[1].id);
    stow_backend_del(b, gone, &err);
    add_file(m, "x", 100, -1);
    add_file(m, "y", 100, -1);
    stow_manifest_sort(m);
    p = params(b, 8);
    memset(&res, 0, sizeof(res));
    CHECK_INT(stow_save_plan_delta(m, parent, NULL, &p, &res, &err), 1);
    CHECK_INT(res.layers_repacked, 1);
    CHECK_STR(layer_of(m, "x"), parent->layers[0].id);
    CHECK_STR(layer_of(m, "y"), "(new)");
    stow_manifest_free(m);
    stow_manifest_free(parent);
}

/* ------------------------------------------------------------------------------------------
 * The check after the commit point
 * ------------------------------------------------------------------------------------------ */

static void write_file(const char *dir, const char *name, const char *content)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(content, f);
        fclose(f);
    }
}

static int count_names(void *ud, const char *name, const stow_object_info *info)
{
    (void)name;
    (void)info;
    (*(size_t *)ud)++;
    return 0;
}

static void test_commit_check(int repairable)
{
    char root[PATH_MAX], state[PATH_MAX], sub[32];
    snprintf(sub, sizeof(sub), "store%d", repairable);
    snprintf(root, sizeof(root), "%s/root%d", base, repairable);
    snprintf(state, sizeof(state), "%s/state%d", base, repairable);
    mkdir(root, 0755);
    write_file(root, "old.txt", "from the parent entry\n");
    stow_backend *inner = open_store(sub);
    if (inner == NULL)
        return;
    char *paths_v[] = {"~/c"}, *abs[] = {root};
    stow_strlist paths = {1, paths_v}, none = {0, NULL};
    stow_cache_params p = {.backend = inner,
                           .store_url = sub,
                           .key = "k-parent",
                           .restore_keys = &none,
                           .scope = "main",
                           .fallback_scopes = &none,
                           .paths = &paths,
                           .abs_paths = abs,
                           .state_dir = state,
                           .pack = {.level = 1},
                           .layer_size = 1 << 20,
                           .parallel = 1,
                           .update = 1,
                           .max_layers = 8};
    stow_cache_result res;
    stow_error err = {0};
    CHECK_INT(stow_cache_save(&res, &p, &err), STOW_OK);
    stow_manifest *parent = NULL;
    CHECK_INT(stow_layout_fetch_manifest(&parent, inner, "main", "k-parent", &err), STOW_OK);
    if (parent == NULL) {
        stow_backend_free(inner);
        return;
    }

    /* The child keeps old.txt in the parent's layer; a prune removes that layer (and the
     * parent entry) right after the save checked its layers, before its manifest lands. */
    write_file(root, "new.txt", "only in the child\n");
    racing_backend rb = {.base = {&racing_ops},
                         .inner = inner,
                         .fail_layer_puts_after = !repairable};
    snprintf(rb.doomed[0], sizeof(rb.doomed[0]), "manifests/main/k-parent.json");
    stow_layout_layer_name(rb.doomed[1], sizeof(rb.doomed[1]), parent->layers[0].id);
    rb.ndoomed = 2;
    p.backend = &rb.base;
    p.key = "k-child";
    int rc = stow_cache_save(&res, &p, &err);
    stow_manifest *child = NULL;
    int got = stow_layout_fetch_manifest(&child, inner, "main", "k-child", &err);
    if (repairable) {
        CHECK_INT(rc, STOW_OK);
        CHECK_INT(got, STOW_OK);
        /* Every layer the committed manifest names exists; the parent's is not among them. */
        for (size_t i = 0; child != NULL && i < child->nlayers; i++) {
            char name[STOW_LAYOUT_NAME_MAX];
            stow_layout_layer_name(name, sizeof(name), child->layers[i].id);
            CHECK_INT(stow_backend_head(inner, name, NULL, &err), STOW_OK);
            CHECK(strcmp(child->layers[i].id, parent->layers[0].id) != 0);
        }
        CHECK(child != NULL && child->nlayers == 2);
    } else {
        /* Repair impossible: the save fails and leaves no broken entry behind. */
        CHECK(rc != STOW_OK);
        CHECK_INT(got, STOW_ENOTFOUND);
    }
    /* No lease outlives the save. */
    size_t nleases = 0;
    CHECK_INT(stow_backend_list(inner, "leases/", count_names, &nleases, &err), STOW_OK);
    CHECK_INT(nleases, 0);
    stow_manifest_free(child);
    stow_manifest_free(parent);
    stow_backend_free(inner);
}

/* ------------------------------------------------------------------------------------------
 * Splitting new files into layers (issue 16)
 * ------------------------------------------------------------------------------------------ */

static void add_sized(stow_manifest *m, const char *path, uint64_t size)
{
    stow_error err = {0};
    stow_file_entry e = {0, (char *)path, STOW_FT_FILE, 0644, size, 1, 0, -1, NULL, NULL, 0};
    CHECK_INT(stow_manifest_add_file(m, &e, &err), STOW_OK);
}

/* n files of size bytes, "f000000".."fNNNNNN", after an optional big file "a-big". */
static stow_manifest *files_of(size_t n, uint64_t size, uint64_t big)
{
    stow_manifest *m = scan_of();
    char name[32];
    if (big > 0)
        add_sized(m, "a-big", big);
    for (size_t i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "f%06zu", i);
        add_sized(m, name, size);
    }
    return m;
}

static uint64_t cost_of(uint64_t size) { return ((size + 511) / 512) * 512 + 1024; }

/* Per new layer: files and tar bytes; checks every file got a layer at or above first. */
static void layer_loads(const stow_manifest *m, size_t first, size_t *files, uint64_t *bytes)
{
    for (size_t l = 0; l < m->nlayers; l++) {
        files[l] = 0;
        bytes[l] = 0;
    }
    for (size_t i = 0; i < m->nfiles; i++) {
        const stow_file_entry *e = &m->files[i];
        CHECK(e->layer >= (int32_t)first && (size_t)e->layer < m->nlayers);
        if (e->layer >= 0 && (size_t)e->layer < m->nlayers) {
            files[e->layer]++;
            bytes[e->layer] += cost_of(e->size);
        }
    }
}

static stow_split_opts split_opts(size_t min_layers, uint64_t layer_size, size_t file_cap,
                                  size_t max_layers)
{
    stow_split_opts o = {.layer_size = layer_size,
                         .min_layers = min_layers,
                         .max_layers = max_layers,
                         .file_cap = file_cap,
                         .min_layer_bytes = STOW_SPLIT_MIN_LAYER_BYTES};
    return o;
}

static void test_split(void)
{
    stow_error err = {0};
    size_t files[64];
    uint64_t bytes[64];

    /* The default split: a 100 MB cold save is at least two layers (it was one under 1 GiB). */
    stow_manifest *m = files_of(1000, 100000, 0);
    CHECK_INT(stow_save_assign_new_layers(m, 1ull << 30, &err), STOW_OK);
    CHECK(m->nlayers >= 2);
    stow_manifest_free(m);

    /* Four cores: four layers, each within 15% of the mean. */
    m = files_of(1000, 100000, 0);
    stow_split_opts o = split_opts(4, 1ull << 30, 50000, 0);
    CHECK_INT(stow_save_split_new_layers(m, &o, &err), STOW_OK);
    CHECK_INT(m->nlayers, 4);
    layer_loads(m, 0, files, bytes);
    uint64_t mean = 1000 * cost_of(100000) / 4;
    for (size_t l = 0; l < m->nlayers && l < 64; l++) {
        CHECK(files[l] > 0);
        CHECK(bytes[l] * 100 <= mean * 115 && bytes[l] * 100 >= mean * 85);
    }
    stow_manifest_free(m);

    /* One file bigger than everything else: alone in its layer, the rest in the other. */
    m = files_of(500, 100000, 1000 * cost_of(100000));
    o = split_opts(2, 1ull << 30, 50000, 0);
    CHECK_INT(stow_save_split_new_layers(m, &o, &err), STOW_OK);
    CHECK_INT(m->nlayers, 2);
    layer_loads(m, 0, files, bytes);
    CHECK((files[0] == 1 && files[1] == 500) || (files[0] == 500 && files[1] == 1));
    stow_manifest_free(m);

    /* A small cache stays one layer (no layer under 8 MiB just for the cores). */
    m = files_of(100, 1000, 0);
    o = split_opts(8, 1ull << 30, 50000, 0);
    CHECK_INT(stow_save_split_new_layers(m, &o, &err), STOW_OK);
    CHECK_INT(m->nlayers, 1);
    stow_manifest_free(m);

    /* The file cap: 1000 tiny files, 300 a layer: four layers, none over the cap. */
    m = files_of(1000, 100, 0);
    o = split_opts(2, 1ull << 30, 300, 0);
    CHECK_INT(stow_save_split_new_layers(m, &o, &err), STOW_OK);
    CHECK_INT(m->nlayers, 4);
    layer_loads(m, 0, files, bytes);
    for (size_t l = 0; l < m->nlayers && l < 64; l++)
        CHECK(files[l] > 0 && files[l] <= 300);
    stow_manifest_free(m);

    /* layer_size stays an upper bound: 100 MB in layers of 10 MB at most. */
    m = files_of(1000, 100000, 0);
    o = split_opts(2, 10u << 20, 50000, 0);
    CHECK_INT(stow_save_split_new_layers(m, &o, &err), STOW_OK);
    CHECK(m->nlayers >= 10 && m->nlayers <= 64);
    layer_loads(m, 0, files, bytes);
    for (size_t l = 0; l < m->nlayers && l < 64; l++)
        CHECK(files[l] > 0 && bytes[l] <= 10u << 20);
    stow_manifest_free(m);

    /* A delta beside two kept parent layers under max_layers 4: one new layer, leaving room for
     * the next delta, even against the file cap; the parent layers keep their files. */
    m = files_of(1000, 100000, 0);
    for (size_t l = 0; l < 2; l++) {
        stow_layer *pl = stow_manifest_add_layer(m, &err);
        snprintf(pl->id, sizeof(pl->id), "%032zx", l + 1);
    }
    m->files[0].layer = 0;
    m->files[1].layer = 1;
    o = split_opts(8, 1ull << 30, 100, 4);
    CHECK_INT(stow_save_split_new_layers(m, &o, &err), STOW_OK);
    CHECK_INT(m->nlayers, 3);
    CHECK_INT(m->files[0].layer, 0);
    CHECK_INT(m->files[1].layer, 1);
    for (size_t i = 2; i < m->nfiles; i++)
        CHECK_INT(m->files[i].layer, 2);
    stow_manifest_free(m);

    /* Many files, few layers allowed: max_layers beats the file cap and no extra layer spills
     * past it (20,000 files of 0-16 KB, cap 1,000, max_layers 6: five new layers, one left for a delta). */
    m = files_of(20000, 100, 0);
    for (size_t i = 0; i < m->nfiles; i++)
        m->files[i].size = (i * 7919) % 16384; /* uneven: runs hold different file counts */
    o = split_opts(2, 1ull << 30, 1000, 6);
    CHECK_INT(stow_save_split_new_layers(m, &o, &err), STOW_OK);
    CHECK_INT(m->nlayers, 5);
    stow_manifest_free(m);

    /* Deterministic: the same scan split twice gives the same layer for every file. */
    stow_manifest *a = files_of(3000, 37000, 9000000), *b = files_of(3000, 37000, 9000000);
    for (size_t i = 0; i < a->nfiles; i += 7) {
        a->files[i].size += i * 13; /* uneven sizes */
        b->files[i].size += i * 13;
    }
    o = split_opts(3, 1ull << 30, 50000, 0);
    CHECK_INT(stow_save_split_new_layers(a, &o, &err), STOW_OK);
    CHECK_INT(stow_save_split_new_layers(b, &o, &err), STOW_OK);
    CHECK_INT(a->nlayers, 3);
    CHECK_INT(b->nlayers, 3);
    size_t same = 0;
    for (size_t i = 0; i < a->nfiles && i < b->nfiles; i++)
        same += a->files[i].layer == b->files[i].layer;
    CHECK_INT(same, a->nfiles);
    stow_manifest_free(a);
    stow_manifest_free(b);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

int main(void)
{
    stow_log_set_level(STOW_LOG_WARN);
    snprintf(base, sizeof(base), "/tmp/stowage-test-save.XXXXXX");
    if (mkdtemp(base) == NULL)
        return 1;
    stow_backend *b = open_store("plan");
    if (b != NULL) {
        test_plan_files(b);
        test_plan_roots_order(b);
        test_plan_compaction(b);
    }
    stow_backend_free(b);
    test_split();
    test_commit_check(1);
    test_commit_check(0);
    /* The temp dir is left for inspection only on failure. */
    if (stow_test_failures == 0)
        nftw(base, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    TEST_DONE();
}
