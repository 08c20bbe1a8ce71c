#include "lifecycle.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "keys.h"
#include "log.h"

#define MARKER_MAX 4096
#define REF_MAX 65536

typedef struct {
    char **names;
    stow_object_info *infos;
    size_t n, cap;
} name_list;

static int collect(void *ud, const char *name, const stow_object_info *info)
{
    name_list *l = ud;
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 64;
        char **nn = realloc(l->names, ncap * sizeof(*nn));
        if (nn == NULL)
            return 1;
        l->names = nn;
        stow_object_info *ni = realloc(l->infos, ncap * sizeof(*ni));
        if (ni == NULL)
            return 1;
        l->infos = ni;
        l->cap = ncap;
    }
    if ((l->names[l->n] = strdup(name)) == NULL)
        return 1;
    l->infos[l->n] = *info;
    l->n++;
    return 0;
}

static void name_list_free(name_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->names[i]);
    free(l->names);
    free(l->infos);
}

static int list_prefix(name_list *l, stow_backend *b, const char *prefix, stow_error *err)
{
    memset(l, 0, sizeof(*l));
    if (!stow_backend_can_list(b))
        return stow_error_set(err, STOW_EUSAGE,
                              "this needs a store that can list objects (file:// or s3://); %s stores cannot",
                              b->ops->scheme);
    return stow_backend_list(b, prefix, collect, l, err);
}

/* Splits "<dir>/<scope>/<rest>" into scope and rest; rest may not contain '/'. */
static int split_name(char *scope, size_t ssz, char *rest, size_t rsz, const char *name, const char *dir,
                      const char *suffix)
{
    size_t dl = strlen(dir);
    if (strncmp(name, dir, dl) != 0)
        return -1;
    const char *s = name + dl;
    const char *slash = strchr(s, '/');
    if (slash == NULL || strchr(slash + 1, '/') != NULL || (size_t)(slash - s) >= ssz)
        return -1;
    snprintf(scope, ssz, "%.*s", (int)(slash - s), s);
    const char *r = slash + 1;
    size_t rl = strlen(r), sl = strlen(suffix);
    if (rl <= sl || strcmp(r + rl - sl, suffix) != 0 || rl - sl >= rsz)
        return -1;
    snprintf(rest, rsz, "%.*s", (int)(rl - sl), r);
    return 0;
}

static int64_t read_marker(stow_backend *b, const char *scope, const char *key)
{
    char name[1024];
    char *buf = NULL;
    size_t len = 0;
    stow_error err = {0};
    int64_t t = 0;
    if (stow_cache_access_name(name, sizeof(name), scope, key) != STOW_OK ||
        stow_backend_get_buffer(&buf, &len, b, name, MARKER_MAX, &err) != STOW_OK)
        return 0;
    json_error_t je;
    json_t *o = json_loadb(buf, len, 0, &je);
    json_int_t v = 0;
    if (o != NULL && json_unpack(o, "{s:I}", "time", &v) == 0 && v > 0)
        t = (int64_t)v;
    json_decref(o);
    free(buf);
    return t;
}

static int cmp_used(const void *a, const void *b)
{
    const stow_entry_info *x = a, *y = b;
    return x->last_used < y->last_used ? -1 : x->last_used > y->last_used;
}

int stow_lifecycle_load(stow_store_index **out, stow_backend *b, stow_error *err)
{
    name_list l;
    *out = NULL;
    int rc = list_prefix(&l, b, "manifests/", err);
    if (rc != STOW_OK) {
        name_list_free(&l);
        return rc;
    }
    stow_store_index *ix = calloc(1, sizeof(*ix));
    if (ix == NULL || (l.n && (ix->entries = calloc(l.n, sizeof(*ix->entries))) == NULL)) {
        free(ix);
        name_list_free(&l);
        return stow_error_set(err, STOW_ERR, "out of memory");
    }
    for (size_t i = 0; i < l.n; i++) {
        stow_entry_info *e = &ix->entries[ix->n];
        if (split_name(e->scope, sizeof(e->scope), e->key, sizeof(e->key), l.names[i], "manifests/", ".json") != 0)
            continue;
        char *buf = NULL;
        size_t len = 0;
        stow_manifest *m = NULL;
        stow_error merr = {0};
        if (stow_backend_get_buffer(&buf, &len, b, l.names[i], STOW_MANIFEST_MAX_BYTES, &merr) != STOW_OK ||
            stow_manifest_from_json(&m, buf, len, l.names[i], &merr) != STOW_OK) {
            stow_warn("skipping %s: %s", l.names[i], merr.msg);
            free(buf);
            continue;
        }
        free(buf);
        e->created = m->created;
        for (size_t f = 0; f < m->nfiles; f++)
            if (m->files[f].type == STOW_FT_FILE)
                e->logical += m->files[f].size;
        e->nlayers = m->nlayers;
        e->layers = calloc(m->nlayers ? m->nlayers : 1, sizeof(*e->layers));
        e->layer_sizes = calloc(m->nlayers ? m->nlayers : 1, sizeof(*e->layer_sizes));
        if (e->layers == NULL || e->layer_sizes == NULL) {
            free(e->layers);
            free(e->layer_sizes);
            stow_manifest_free(m);
            name_list_free(&l);
            stow_lifecycle_free(ix);
            return stow_error_set(err, STOW_ERR, "out of memory");
        }
        for (size_t k = 0; k < m->nlayers; k++) {
            memcpy(e->layers[k], m->layers[k].id, STOW_LAYER_ID_LEN + 1);
            e->layer_sizes[k] = m->layers[k].size;
            e->stored += m->layers[k].size;
        }
        stow_manifest_free(m);
        int64_t used = read_marker(b, e->scope, e->key);
        e->last_used = used > e->created ? used : e->created;
        ix->n++;
    }
    name_list_free(&l);
    if (ix->n > 1)
        qsort(ix->entries, ix->n, sizeof(*ix->entries), cmp_used);
    *out = ix;
    return STOW_OK;
}

void stow_lifecycle_free(stow_store_index *ix)
{
    if (ix == NULL)
        return;
    for (size_t i = 0; i < ix->n; i++) {
        free(ix->entries[i].layers);
        free(ix->entries[i].layer_sizes);
    }
    free(ix->entries);
    free(ix);
}

/* Distinct layers of the entries not marked dead, with their sizes and reference counts. */
typedef struct {
    char id[STOW_LAYER_ID_LEN + 1];
    uint64_t size;
    size_t refs;
} layer_ref;

typedef struct {
    layer_ref *v;
    size_t n;
} layer_set;

static int cmp_id(const void *a, const void *b) { return strcmp((const char *)a, (const char *)b); }

static int layer_set_build(layer_set *s, const stow_store_index *ix, const unsigned char *dead)
{
    size_t total = 0, n = 0;
    memset(s, 0, sizeof(*s));
    for (size_t i = 0; i < ix->n; i++)
        if (!dead || !dead[i])
            total += ix->entries[i].nlayers;
    s->v = calloc(total ? total : 1, sizeof(*s->v));
    if (s->v == NULL)
        return -1;
    for (size_t i = 0; i < ix->n; i++) {
        if (dead && dead[i])
            continue;
        for (size_t k = 0; k < ix->entries[i].nlayers; k++) {
            memcpy(s->v[n].id, ix->entries[i].layers[k], STOW_LAYER_ID_LEN + 1);
            s->v[n].size = ix->entries[i].layer_sizes[k];
            n++;
        }
    }
    if (n > 1)
        qsort(s->v, n, sizeof(*s->v), cmp_id);
    size_t u = 0;
    for (size_t i = 0; i < n; i++) {
        if (u > 0 && strcmp(s->v[u - 1].id, s->v[i].id) == 0) {
            s->v[u - 1].refs++;
            continue;
        }
        s->v[u] = s->v[i];
        s->v[u].refs = 1;
        u++;
    }
    s->n = u;
    return 0;
}

static void layer_set_free(layer_set *s)
{
    free(s->v);
    s->v = NULL;
    s->n = 0;
}

static int layer_set_has(const layer_set *s, const char *id)
{
    return s->n && bsearch(id, s->v, s->n, sizeof(*s->v), cmp_id) != NULL;
}

void stow_lifecycle_totals(stow_store_totals *t, const stow_store_index *ix)
{
    memset(t, 0, sizeof(*t));
    t->entries = ix->n;
    for (size_t i = 0; i < ix->n; i++) {
        t->logical += ix->entries[i].logical;
        t->referenced += ix->entries[i].stored;
    }
    layer_set s;
    if (layer_set_build(&s, ix, NULL) == 0) {
        t->layers = s.n;
        for (size_t i = 0; i < s.n; i++) {
            t->stored += s.v[i].size;
            if (s.v[i].refs > 1)
                t->shared += s.v[i].size;
        }
    }
    layer_set_free(&s);
}

/* The layer id of "layers/<id>.tar.zst" into id; -1 for any other name. */
static int layer_id_of(char id[STOW_LAYER_ID_LEN + 1], const char *name)
{
    const char *p = name + strlen("layers/");
    if (strncmp(name, "layers/", 7) != 0 || strlen(p) != STOW_LAYER_ID_LEN + 8 || strcmp(p + STOW_LAYER_ID_LEN, ".tar.zst") != 0)
        return -1;
    memcpy(id, p, STOW_LAYER_ID_LEN);
    id[STOW_LAYER_ID_LEN] = '\0';
    return 0;
}

static void report(const stow_prune_opts *o, const char *kind, const char *name, uint64_t bytes)
{
    if (o->report)
        o->report(o->ud, kind, name, bytes);
}

int stow_lifecycle_prune(stow_prune_result *res, stow_backend *b, const stow_prune_opts *o, stow_error *err)
{
    stow_store_index *ix = NULL;
    unsigned char *dead = NULL;
    name_list layers = {0}, refs = {0}, markers = {0};
    layer_set live = {0};
    int rc;
    int64_t now = stow_cache_now();

    memset(res, 0, sizeof(*res));
    rc = stow_lifecycle_load(&ix, b, err);
    if (rc != STOW_OK)
        goto done;
    rc = list_prefix(&layers, b, "layers/", err);
    if (rc != STOW_OK)
        goto done;
    dead = calloc(ix->n ? ix->n : 1, 1);
    if (dead == NULL) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    /* 1. Entries unused for longer than max_age. */
    for (size_t i = 0; i < ix->n; i++)
        if (o->max_age > 0 && now - ix->entries[i].last_used > o->max_age)
            dead[i] = 1;
    /* 2. Least recently used first until the distinct layers of the rest fit max_size. */
    if (o->max_size > 0) {
        for (size_t i = 0;; i++) {
            layer_set_free(&live);
            if (layer_set_build(&live, ix, dead) != 0) {
                rc = stow_error_set(err, STOW_ERR, "out of memory");
                goto done;
            }
            uint64_t total = 0;
            for (size_t k = 0; k < live.n; k++)
                total += live.v[k].size;
            if (total <= o->max_size)
                break;
            while (i < ix->n && dead[i])
                i++;
            if (i >= ix->n)
                break;
            dead[i] = 1;
        }
    }
    for (size_t i = 0; i < ix->n; i++) {
        if (!dead[i])
            continue;
        stow_entry_info *e = &ix->entries[i];
        char name[1024], marker[1024];
        stow_cache_manifest_name(name, sizeof(name), e->scope, e->key);
        stow_cache_access_name(marker, sizeof(marker), e->scope, e->key);
        report(o, "entry", name, e->logical);
        res->entries++;
        if (!o->dry_run) {
            rc = stow_backend_del(b, name, err);
            if (rc != STOW_OK)
                goto done;
            stow_error ignored;
            stow_backend_del(b, marker, &ignored);
        }
    }
    /* 3. Layers no remaining entry references, once older than the grace period (a save in
     * progress uploads its layers before its manifest). */
    layer_set_free(&live);
    if (layer_set_build(&live, ix, dead) != 0) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    for (size_t k = 0; k < layers.n; k++) {
        char idbuf[STOW_LAYER_ID_LEN + 1];
        if (layer_id_of(idbuf, layers.names[k]) != 0)
            continue; /* not ours */
        if (layer_set_has(&live, idbuf))
            continue;
        if (layers.infos[k].mtime == 0 || now - layers.infos[k].mtime < o->grace) {
            stow_debug("keeping unreferenced %s: younger than the grace period", layers.names[k]);
            continue;
        }
        report(o, "layer", layers.names[k], layers.infos[k].size);
        res->layers++;
        res->bytes_freed += layers.infos[k].size;
        if (!o->dry_run && (rc = stow_backend_del(b, layers.names[k], err)) != STOW_OK)
            goto done;
    }
    /* 4. Refs that point at no remaining entry, and stray access markers. */
    rc = list_prefix(&refs, b, "refs/", err);
    if (rc != STOW_OK)
        goto done;
    for (size_t k = 0; k < refs.n; k++) {
        char scope[256], prefix[256], *buf = NULL;
        size_t len = 0;
        stow_error rerr = {0};
        if (split_name(scope, sizeof(scope), prefix, sizeof(prefix), refs.names[k], "refs/", "") != 0)
            continue;
        int gone = 1;
        if (stow_backend_get_buffer(&buf, &len, b, refs.names[k], REF_MAX, &rerr) == STOW_OK) {
            json_error_t je;
            json_t *obj = json_loadb(buf, len, 0, &je);
            const char *key = NULL;
            if (obj != NULL && json_unpack(obj, "{s:s}", "key", &key) == 0)
                for (size_t i = 0; i < ix->n; i++)
                    if (!dead[i] && strcmp(ix->entries[i].scope, scope) == 0 && strcmp(ix->entries[i].key, key) == 0)
                        gone = 0;
            json_decref(obj);
        }
        free(buf);
        if (!gone)
            continue;
        report(o, "ref", refs.names[k], 0);
        res->refs++;
        if (!o->dry_run && (rc = stow_backend_del(b, refs.names[k], err)) != STOW_OK)
            goto done;
    }
    rc = list_prefix(&markers, b, "access/", err);
    if (rc != STOW_OK)
        goto done;
    for (size_t k = 0; k < markers.n; k++) {
        char scope[256], key[256];
        if (split_name(scope, sizeof(scope), key, sizeof(key), markers.names[k], "access/", "") != 0)
            continue;
        int gone = 1;
        for (size_t i = 0; i < ix->n; i++)
            if (strcmp(ix->entries[i].scope, scope) == 0 && strcmp(ix->entries[i].key, key) == 0)
                gone = 0; /* dead entries' markers went with them */
        if (gone && !o->dry_run) {
            stow_error ignored;
            stow_backend_del(b, markers.names[k], &ignored);
        }
    }
    rc = STOW_OK;
done:
    layer_set_free(&live);
    name_list_free(&layers);
    name_list_free(&refs);
    name_list_free(&markers);
    free(dead);
    stow_lifecycle_free(ix);
    return rc;
}
