#include "lifecycle.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layout.h"
#include "log.h"
#include "util.h"

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
        return stow_error_set(
            err, STOW_EUSAGE,
            "this needs a store that can list objects (file:// or s3://); %s stores cannot",
            b->ops->scheme);
    return stow_backend_list(b, prefix, collect, l, err);
}

static int cmp_used(const void *a, const void *b)
{
    const stow_entry_info *x = a, *y = b;
    return x->last_used < y->last_used ? -1 : x->last_used > y->last_used;
}

/* One entry from its manifest and access marker: 1 loaded, 0 skipped (not a manifest name, or
 * unreadable: warned), -1 out of memory. */
static int load_entry(stow_entry_info *e, stow_backend *b, const char *name)
{
    stow_manifest *m = NULL;
    stow_error merr = {0};
    char *buf = NULL, alg[STOW_SIGN_ALG_MAX], sig[STOW_SIGN_HEX_MAX];
    size_t len = 0;
    memset(e, 0, sizeof(*e));
    if (stow_layout_parse_manifest(e->scope, e->key, name) != 0)
        return 0;
    if (stow_layout_fetch(&buf, &len, b, name, STOW_MANIFEST_MAX_BYTES, &merr) != STOW_OK ||
        /* a signed entry: prune reads the manifest without the signature trailer */
        (stow_layout_manifest_unseal(&len, alg, sizeof(alg), sig, sizeof(sig), buf, len), 0) ||
        stow_manifest_decode(&m, buf, len, name, &merr) != STOW_OK) {
        stow_warn("skipping %s: %s", name, merr.msg);
        free(buf);
        return 0;
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
        memset(e, 0, sizeof(*e));
        stow_manifest_free(m);
        return -1;
    }
    for (size_t k = 0; k < m->nlayers; k++) {
        memcpy(e->layers[k], m->layers[k].id, STOW_LAYER_ID_LEN + 1);
        e->layer_sizes[k] = m->layers[k].size;
        e->stored += m->layers[k].size;
    }
    stow_manifest_free(m);
    int64_t used = stow_layout_fetch_access(b, e->scope, e->key);
    e->last_used = used > e->created ? used : e->created;
    return 1;
}

int stow_lifecycle_load(stow_store_index **out, stow_backend *b, stow_error *err)
{
    name_list l;
    *out = NULL;
    int rc = list_prefix(&l, b, STOW_LAYOUT_MANIFESTS, err);
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
        int lr = load_entry(&ix->entries[ix->n], b, l.names[i]);
        if (lr < 0) {
            name_list_free(&l);
            stow_lifecycle_free(ix);
            return stow_error_set(err, STOW_ERR, "out of memory");
        }
        ix->n += (size_t)lr;
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

/* ------------------------------------------------------------------------------------------
 * Prune, in named steps over one state
 * ------------------------------------------------------------------------------------------ */

typedef struct {
    stow_backend *b;
    const stow_prune_opts *o;
    stow_prune_result *res;
    int64_t now;
    stow_store_index *ix;
    unsigned char *dead;                   /* per entry of ix */
    layer_set live;                        /* layers of the entries that stay */
    char (*leased)[STOW_LAYER_ID_LEN + 1]; /* layers named by live leases, sorted */
    size_t nleased;
    char first_lease[STOW_LAYOUT_NAME_MAX]; /* for messages */
    int64_t first_lease_age;
} prune_state;

static void report(const prune_state *st, const char *kind, const char *name, uint64_t bytes)
{
    if (st->o->report)
        st->o->report(st->o->ud, kind, name, bytes);
}

static int is_leased(const prune_state *st, const char *id)
{
    return st->nleased && bsearch(id, st->leased, st->nleased, sizeof(*st->leased), cmp_id) != NULL;
}

static int add_leased(prune_state *st, const stow_lease *l)
{
    void *nl = realloc(st->leased, (st->nleased + l->nlayers + 1) * sizeof(*st->leased));
    if (nl == NULL)
        return -1;
    st->leased = nl;
    memcpy(st->leased[st->nleased], l->layers, l->nlayers * sizeof(*st->leased));
    st->nleased += l->nlayers;
    if (st->nleased > 1)
        qsort(st->leased, st->nleased, sizeof(*st->leased), cmp_id);
    return 0;
}

/* Reads leases/: the layers of live leases are kept whatever else happens; leases older than
 * STOW_LEASE_MAX_AGE (a save that died) are removed when remove_stale is set. Unreadable
 * leases count by their object's age. Returns how many leases are live, or an error. */
static int load_leases(prune_state *st, int remove_stale, stow_error *err)
{
    name_list l;
    int rc = list_prefix(&l, st->b, STOW_LAYOUT_LEASES, err), nlive = 0;
    for (size_t k = 0; rc == STOW_OK && k < l.n; k++) {
        char id[STOW_LAYER_ID_LEN + 1];
        stow_lease lease;
        stow_error lerr = {0};
        if (stow_layout_parse_lease(id, l.names[k]) != 0)
            continue;
        int lrc = stow_layout_fetch_lease(&lease, st->b, l.names[k], &lerr);
        if (lrc == STOW_ENOTFOUND)
            continue; /* the save ended meanwhile */
        int64_t t = lrc == STOW_OK ? lease.time : l.infos[k].mtime;
        if (lrc != STOW_OK)
            stow_warn("%s: %s", l.names[k], lerr.msg);
        int64_t age = st->now - t;
        if (t > 0 && age > STOW_LEASE_MAX_AGE) {
            stow_lease_clear(&lease);
            if (!remove_stale)
                continue;
            stow_info("lease %s is %lld s old: its save is gone; removing it", l.names[k],
                      (long long)age);
            report(st, "lease", l.names[k], 0);
            st->res->leases++;
            if (!st->o->dry_run && (rc = stow_backend_del(st->b, l.names[k], err)) != STOW_OK)
                break;
            continue;
        }
        if (nlive++ == 0) {
            stow_strlcpy(st->first_lease, l.names[k], sizeof(st->first_lease));
            st->first_lease_age = age;
        }
        stow_debug("live lease %s (%s/%s, %zu layers)", l.names[k],
                   lrc == STOW_OK ? lease.scope : "?", lrc == STOW_OK ? lease.key : "?",
                   lease.nlayers);
        if (add_leased(st, &lease) != 0)
            rc = stow_error_set(err, STOW_ERR, "out of memory");
        stow_lease_clear(&lease);
    }
    name_list_free(&l);
    return rc == STOW_OK ? nlive : rc;
}

/* Step 1: entries unused for longer than max_age (every entry with expire_all). */
static void mark_expired(prune_state *st)
{
    for (size_t i = 0; i < st->ix->n; i++)
        if (st->o->expire_all ||
            (st->o->max_age > 0 && st->now - st->ix->entries[i].last_used > st->o->max_age))
            st->dead[i] = 1;
}

/* Step 2: least recently used first (ix is sorted so) until the distinct layers of the rest
 * fit max_size. */
static int mark_over_budget(prune_state *st)
{
    if (st->o->max_size == 0)
        return 0;
    for (size_t i = 0;; i++) {
        layer_set_free(&st->live);
        if (layer_set_build(&st->live, st->ix, st->dead) != 0)
            return -1;
        uint64_t total = 0;
        for (size_t k = 0; k < st->live.n; k++)
            total += st->live.v[k].size;
        if (total <= st->o->max_size)
            return 0;
        while (i < st->ix->n && st->dead[i])
            i++;
        if (i >= st->ix->n)
            return 0;
        st->dead[i] = 1;
    }
}

/* Step 3: the marked entries' manifests and access markers. */
static int delete_entries(prune_state *st, stow_error *err)
{
    for (size_t i = 0; i < st->ix->n; i++) {
        if (!st->dead[i])
            continue;
        stow_entry_info *e = &st->ix->entries[i];
        char name[STOW_LAYOUT_NAME_MAX], marker[STOW_LAYOUT_NAME_MAX];
        if (stow_layout_manifest_name(name, sizeof(name), e->scope, e->key) != STOW_OK)
            continue;
        report(st, "entry", name, e->logical);
        st->res->entries++;
        if (st->o->dry_run)
            continue;
        int rc = stow_backend_del(st->b, name, err);
        if (rc != STOW_OK)
            return rc;
        stow_error ignored;
        if (stow_layout_access_name(marker, sizeof(marker), e->scope, e->key) == STOW_OK)
            stow_backend_del(st->b, marker, &ignored);
    }
    return STOW_OK;
}

/* Step 4: layers no remaining entry references and no live lease names, once older than the
 * grace period (a save uploads its layers before its manifest). */
static int delete_unreferenced_layers(prune_state *st, stow_error *err)
{
    name_list layers;
    int rc = list_prefix(&layers, st->b, STOW_LAYOUT_LAYERS, err);
    layer_set_free(&st->live);
    if (rc == STOW_OK && layer_set_build(&st->live, st->ix, st->dead) != 0)
        rc = stow_error_set(err, STOW_ERR, "out of memory");
    for (size_t k = 0; rc == STOW_OK && k < layers.n; k++) {
        char id[STOW_LAYER_ID_LEN + 1];
        const char *name = layers.names[k];
        if (stow_layout_parse_layer(id, name) != 0 || layer_set_has(&st->live, id))
            continue; /* not ours, or referenced */
        if (is_leased(st, id)) {
            stow_debug("keeping unreferenced %s: named by a live lease", name);
            continue;
        }
        if (layers.infos[k].mtime == 0 || st->now - layers.infos[k].mtime < st->o->grace) {
            stow_debug("keeping unreferenced %s: younger than the grace period", name);
            st->res->layers_kept++;
            st->res->bytes_kept += layers.infos[k].size;
            continue;
        }
        report(st, "layer", name, layers.infos[k].size);
        st->res->layers++;
        st->res->bytes_freed += layers.infos[k].size;
        if (!st->o->dry_run)
            rc = stow_backend_del(st->b, name, err);
    }
    name_list_free(&layers);
    return rc;
}

/* A temporary object younger than this is kept even with --grace 0: an upload is most likely
 * still writing it, and a lease's own temp object is not protected by any lease (a save whose
 * lease temp was deleted would lose its lease and then its layers). */
#define TEMP_MIN_AGE_S 600

/* Deletes the stale temporary objects listed under prefix. */
static int delete_temps_under(prune_state *st, const char *prefix, stow_error *err)
{
    name_list l;
    int64_t keep = st->o->grace > TEMP_MIN_AGE_S ? st->o->grace : TEMP_MIN_AGE_S;
    int rc = list_prefix(&l, st->b, prefix, err);
    for (size_t k = 0; rc == STOW_OK && k < l.n; k++) {
        char target[STOW_LAYOUT_NAME_MAX], id[STOW_LAYER_ID_LEN + 1];
        if (stow_layout_parse_temp(target, sizeof(target), l.names[k]) != 0)
            continue;
        if ((stow_layout_parse_layer(id, target) == 0 && is_leased(st, id)) ||
            l.infos[k].mtime == 0 || st->now - l.infos[k].mtime < keep) {
            stow_debug("keeping temporary %s: an upload may still be writing it", l.names[k]);
            continue;
        }
        report(st, "temp", l.names[k], l.infos[k].size);
        st->res->temps++;
        st->res->bytes_freed += l.infos[k].size;
        if (!st->o->dry_run)
            rc = stow_backend_del(st->b, l.names[k], err);
    }
    name_list_free(&l);
    return rc;
}

/* Adds the scope of every name in l that parse accepts to scopes (deduplicated). */
static int add_scopes(name_list *scopes, const name_list *l,
                      int (*parse)(char *, char *, const char *))
{
    for (size_t k = 0; k < l->n; k++) {
        char scope[STOW_LAYOUT_PART_MAX], rest[STOW_LAYOUT_PART_MAX];
        if (parse(scope, rest, l->names[k]) != 0)
            continue;
        size_t j = 0;
        while (j < scopes->n && strcmp(scopes->names[j], scope) != 0)
            j++;
        stow_object_info none = {0, 0};
        if (j == scopes->n && collect(scopes, scope, &none) != 0)
            return STOW_ERR;
    }
    return STOW_OK;
}

/* Step 5: temporary objects of interrupted uploads (the file store's ".<name>.<rnd>.tmp"):
 * in layers/ and leases/, and in every scope's manifests/, refs/ and access/ directory, once
 * older than the grace period and not of a leased layer. */
static int delete_stale_temps(prune_state *st, stow_error *err)
{
    static const char *const dirs[] = {STOW_LAYOUT_LAYER_TEMPS, STOW_LAYOUT_LEASE_TEMPS};
    static const char *const scoped[] = {STOW_LAYOUT_MANIFESTS, STOW_LAYOUT_REFS,
                                         STOW_LAYOUT_ACCESS};
    int (*const parse[])(char *, char *, const char *) = {stow_layout_parse_manifest,
                                                          stow_layout_parse_ref,
                                                          stow_layout_parse_access};
    int rc = STOW_OK;
    for (size_t d = 0; rc == STOW_OK && d < sizeof(dirs) / sizeof(dirs[0]); d++)
        rc = delete_temps_under(st, dirs[d], err);
    name_list scopes = {0};
    for (size_t d = 0; rc == STOW_OK && d < sizeof(scoped) / sizeof(scoped[0]); d++) {
        name_list l;
        rc = list_prefix(&l, st->b, scoped[d], err);
        if (rc == STOW_OK && add_scopes(&scopes, &l, parse[d]) != STOW_OK)
            rc = stow_error_set(err, STOW_ERR, "out of memory listing scopes");
        name_list_free(&l);
    }
    for (size_t i = 0; rc == STOW_OK && i < scopes.n; i++)
        for (size_t d = 0; rc == STOW_OK && d < sizeof(scoped) / sizeof(scoped[0]); d++) {
            char prefix[STOW_LAYOUT_NAME_MAX];
            int n = snprintf(prefix, sizeof(prefix), "%s%s/.", scoped[d], scopes.names[i]);
            if (n > 0 && (size_t)n < sizeof(prefix))
                rc = delete_temps_under(st, prefix, err);
        }
    name_list_free(&scopes);
    return rc;
}

static int entry_stays(const prune_state *st, const char *scope, const char *key, int count_dead)
{
    for (size_t i = 0; i < st->ix->n; i++)
        if ((count_dead || !st->dead[i]) && strcmp(st->ix->entries[i].scope, scope) == 0 &&
            strcmp(st->ix->entries[i].key, key) == 0)
            return 1;
    return 0;
}

/* Step 6: refs that point at no remaining entry. */
static int delete_dangling_refs(prune_state *st, stow_error *err)
{
    name_list refs;
    int rc = list_prefix(&refs, st->b, STOW_LAYOUT_REFS, err);
    for (size_t k = 0; rc == STOW_OK && k < refs.n; k++) {
        char scope[STOW_LAYOUT_PART_MAX], prefix[STOW_LAYOUT_PART_MAX], key[STOW_LAYOUT_PART_MAX];
        stow_error rerr = {0};
        if (stow_layout_parse_ref(scope, prefix, refs.names[k]) != 0)
            continue;
        if (stow_layout_fetch_ref(key, sizeof(key), st->b, scope, prefix, &rerr) == STOW_OK &&
            entry_stays(st, scope, key, 0))
            continue;
        report(st, "ref", refs.names[k], 0);
        st->res->refs++;
        if (!st->o->dry_run)
            rc = stow_backend_del(st->b, refs.names[k], err);
    }
    name_list_free(&refs);
    return rc;
}

/* Step 7: access markers of entries that do not exist (dead entries' markers went with them). */
static int delete_stray_markers(prune_state *st, stow_error *err)
{
    name_list markers;
    int rc = list_prefix(&markers, st->b, STOW_LAYOUT_ACCESS, err);
    for (size_t k = 0; rc == STOW_OK && k < markers.n; k++) {
        char scope[STOW_LAYOUT_PART_MAX], key[STOW_LAYOUT_PART_MAX];
        if (stow_layout_parse_access(scope, key, markers.names[k]) != 0 ||
            entry_stays(st, scope, key, 1))
            continue;
        if (!st->o->dry_run) {
            stow_error ignored;
            stow_backend_del(st->b, markers.names[k], &ignored);
        }
    }
    name_list_free(&markers);
    return rc;
}

int stow_lifecycle_prune(stow_prune_result *res, stow_backend *b, const stow_prune_opts *o,
                         stow_error *err)
{
    prune_state st = {.b = b, .o = o, .res = res, .now = stow_layout_now()};
    int rc;

    memset(res, 0, sizeof(*res));
    rc = stow_lifecycle_load(&st.ix, b, err);
    if (rc != STOW_OK)
        goto done;
    /* Leases first: --grace 0 protects an unfinished save only through its lease. */
    int nlive = load_leases(&st, 0, err);
    if (nlive < 0) {
        rc = nlive;
        goto done;
    }
    if (o->grace <= 0 && nlive > 0) {
        rc = stow_error_set(
            err, STOW_EUSAGE,
            "refusing --grace 0: a save is in progress (%s, written %lld s ago, and %d lease(s) in "
            "all); run prune again once it ends, or with a grace period",
            st.first_lease, (long long)st.first_lease_age, nlive);
        goto done;
    }
    st.dead = calloc(st.ix->n ? st.ix->n : 1, 1);
    if (st.dead == NULL) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    mark_expired(&st);
    if (mark_over_budget(&st) != 0) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    if ((rc = delete_entries(&st, err)) != STOW_OK)
        goto done;
    /* Leases again, just before deleting layers: a save that started meanwhile is seen; stale
     * leases are removed now (not before: a refused prune changes nothing). */
    nlive = load_leases(&st, 1, err);
    if (nlive < 0) {
        rc = nlive;
        goto done;
    }
    if ((rc = delete_unreferenced_layers(&st, err)) != STOW_OK ||
        (rc = delete_stale_temps(&st, err)) != STOW_OK ||
        (rc = delete_dangling_refs(&st, err)) != STOW_OK ||
        (rc = delete_stray_markers(&st, err)) != STOW_OK)
        goto done;
done:
    layer_set_free(&st.live);
    free(st.leased);
    free(st.dead);
    stow_lifecycle_free(st.ix);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Deleting one entry
 * ------------------------------------------------------------------------------------------ */

/* Deletes refs/<scope>/<prefix> when it points at key. 1 deleted, 0 not, or an error. */
static int delete_ref_if(stow_backend *b, const char *scope, const char *prefix, const char *key,
                         const stow_prune_opts *o, stow_error *err)
{
    char to[STOW_LAYOUT_PART_MAX], name[STOW_LAYOUT_NAME_MAX];
    stow_error e = {0};
    int rc = stow_layout_fetch_ref(to, sizeof(to), b, scope, prefix, &e);
    if (rc == STOW_ENOTFOUND || rc == STOW_ECORRUPT || (rc == STOW_OK && strcmp(to, key) != 0))
        return 0;
    if (rc != STOW_OK) {
        *err = e;
        return rc;
    }
    if (stow_layout_ref_name(name, sizeof(name), scope, prefix) != STOW_OK)
        return 0;
    if (o->report)
        o->report(o->ud, "ref", name, 0);
    rc = o->dry_run ? STOW_OK : stow_backend_del(b, name, err);
    return rc == STOW_OK ? 1 : rc;
}

int stow_lifecycle_delete_entry(stow_prune_result *res, stow_backend *b, const char *scope,
                                const char *key, const stow_prune_opts *o, stow_error *err)
{
    char name[STOW_LAYOUT_NAME_MAX], marker[STOW_LAYOUT_NAME_MAX];
    stow_object_info info = {0, 0};
    memset(res, 0, sizeof(*res));
    if (stow_layout_manifest_name(name, sizeof(name), scope, key) != STOW_OK ||
        stow_layout_access_name(marker, sizeof(marker), scope, key) != STOW_OK)
        return stow_error_set(err, STOW_EUSAGE, "bad scope or key: %s / %s", scope, key);
    int rc = stow_backend_head(b, name, &info, err);
    if (rc == STOW_ENOTFOUND)
        return stow_error_set(err, STOW_ENOTFOUND, "no entry %s in scope %s", key, scope);
    if (rc != STOW_OK)
        return rc;
    /* The manifest first: from then on the entry is gone for every reader; a ref left behind
     * points nowhere (restore skips it, prune removes it). */
    if (o->report)
        o->report(o->ud, "entry", name, info.size);
    res->entries = 1;
    if (!o->dry_run && (rc = stow_backend_del(b, name, err)) != STOW_OK)
        return rc;
    stow_error ignored;
    if (!o->dry_run)
        stow_backend_del(b, marker, &ignored);
    /* The refs that point at it: every ref of the scope where the store lists, else the ones
     * a save writes (separator prefixes of the key). */
    char prefix_dir[STOW_LAYOUT_NAME_MAX];
    snprintf(prefix_dir, sizeof(prefix_dir), "%s%s/", STOW_LAYOUT_REFS, scope);
    name_list refs = {0};
    if (stow_backend_can_list(b)) {
        rc = list_prefix(&refs, b, prefix_dir, err);
        for (size_t k = 0; rc == STOW_OK && k < refs.n; k++) {
            char s[STOW_LAYOUT_PART_MAX], p[STOW_LAYOUT_PART_MAX];
            if (stow_layout_parse_ref(s, p, refs.names[k]) != 0 || strcmp(s, scope) != 0 ||
                strncmp(key, p, strlen(p)) != 0)
                continue;
            int n = delete_ref_if(b, scope, p, key, o, err);
            if (n < 0)
                rc = n;
            else
                res->refs += (size_t)n;
        }
    } else {
        char p[STOW_LAYOUT_PART_MAX];
        size_t len = strlen(key);
        for (size_t i = 0; rc == STOW_OK && i + 1 < len && i + 1 < sizeof(p); i++) {
            if (!(key[i] == '-' || key[i] == '_' || key[i] == '.'))
                continue;
            memcpy(p, key, i + 1);
            p[i + 1] = '\0';
            int n = delete_ref_if(b, scope, p, key, o, err);
            if (n < 0)
                rc = n;
            else
                res->refs += (size_t)n;
        }
    }
    name_list_free(&refs);
    return rc;
}
