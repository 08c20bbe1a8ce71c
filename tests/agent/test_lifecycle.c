/* Unit tests for agent/lifecycle.c: prune's eviction order (max-age first, then least
 * recently used until max-size fits), the grace period for unreferenced layers, leases (live
 * ones protect their layers and refuse --grace 0, stale ones are removed) and stale temporary
 * objects. A file store in a temp dir; object ages are set with utimes, prune's clock with
 * STOWAGE_NOW. */
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "layout.h"
#include "lifecycle.h"
#include "log.h"
#include "test.h"

#define NOW 1800000000LL
#define DAY 86400LL

static char base[PATH_MAX];
static char store[PATH_MAX];

typedef struct {
    char lines[64][160];
    size_t n;
} reported;

static void on_report(void *ud, const char *kind, const char *name, uint64_t bytes)
{
    reported *r = ud;
    (void)bytes;
    if (r->n < 64)
        snprintf(r->lines[r->n++], sizeof(r->lines[0]), "%s %s", kind, name);
}

static int was_reported(const reported *r, const char *kind, const char *name)
{
    char want[160];
    snprintf(want, sizeof(want), "%s %s", kind, name);
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->lines[i], want) == 0)
            return (int)i + 1;
    return 0;
}

static stow_backend *fresh_store(const char *sub)
{
    char url[PATH_MAX + 16];
    stow_backend *b = NULL;
    stow_error err = {0};
    snprintf(store, sizeof(store), "%s/%s", base, sub);
    snprintf(url, sizeof(url), "file://%s", store);
    stow_backend_opts o = {.url = url, .verify_tls = 1, .max_retries = -1};
    CHECK_INT(stow_backend_open(&b, &o, &err), STOW_OK);
    return b;
}

static void set_age(const char *name, long long age)
{
    char path[PATH_MAX + STOW_LAYOUT_NAME_MAX];
    snprintf(path, sizeof(path), "%s/%s", store, name);
    struct timeval tv[2] = {{(time_t)(NOW - age), 0}, {(time_t)(NOW - age), 0}};
    CHECK_INT(utimes(path, tv), 0);
}

static int exists(stow_backend *b, const char *name)
{
    stow_error err = {0};
    return stow_backend_head(b, name, NULL, &err) == STOW_OK;
}

static void layer_name(char *out, char tag)
{
    char id[STOW_LAYER_ID_LEN + 1];
    memset(id, tag, STOW_LAYER_ID_LEN);
    id[STOW_LAYER_ID_LEN] = '\0';
    stow_layout_layer_name(out, STOW_LAYOUT_NAME_MAX, id);
}

/* A layer object of size bytes, age seconds old; tag is its id's hex digit. */
static void put_layer(stow_backend *b, char tag, size_t size, long long age)
{
    char name[STOW_LAYOUT_NAME_MAX], *body = calloc(1, size + 1);
    stow_error err = {0};
    layer_name(name, tag);
    CHECK_INT(stow_backend_put_buffer(b, name, body, size, 0, &err), STOW_OK);
    set_age(name, age);
    free(body);
}

/* An entry created 10 days ago, last used `used` seconds ago, made of the tagged layers. */
static void put_entry(stow_backend *b, const char *key, long long used, const char *tags,
                      const size_t *sizes)
{
    stow_error err = {0};
    stow_manifest *m = stow_manifest_new();
    CHECK_INT(stow_manifest_set_key(m, key, "main", &err), STOW_OK);
    CHECK_INT(stow_manifest_add_root(m, "~/c", &err), STOW_OK);
    m->created = NOW - 10 * DAY;
    for (size_t i = 0; tags[i]; i++) {
        stow_layer *l = stow_manifest_add_layer(m, &err);
        memset(l->id, tags[i], STOW_LAYER_ID_LEN);
        memset(l->sha256, 'a', STOW_SHA256_HEX_LEN);
        l->size = sizes[i];
        l->raw_size = sizes[i];
        l->files = 1;
        char path[32];
        snprintf(path, sizeof(path), "f%zu", i);
        stow_file_entry e = {0, path, STOW_FT_FILE, 0644, 1, 1, 0, (int32_t)i, NULL, NULL, 0};
        CHECK_INT(stow_manifest_add_file(m, &e, &err), STOW_OK);
    }
    char *json = NULL, name[STOW_LAYOUT_NAME_MAX];
    size_t len = 0;
    CHECK_INT(stow_manifest_to_json(&json, &len, m, &err), STOW_OK);
    stow_layout_manifest_name(name, sizeof(name), "main", key);
    CHECK_INT(stow_backend_put_buffer(b, name, json, len, 0, &err), STOW_OK);
    CHECK_INT(stow_layout_put_access(b, "main", key, NOW - used, &err), STOW_OK);
    free(json);
    stow_manifest_free(m);
}

static void put_lease(stow_backend *b, char idtag, long long age, char layertag)
{
    char ids[1][STOW_LAYER_ID_LEN + 1];
    stow_lease l = {.time = NOW - age, .scope = "main", .key = "k", .nlayers = 1, .layers = ids};
    memset(l.id, idtag, STOW_LAYER_ID_LEN);
    memset(ids[0], layertag, STOW_LAYER_ID_LEN);
    ids[0][STOW_LAYER_ID_LEN] = '\0';
    stow_error err = {0};
    CHECK_INT(stow_layout_put_lease(b, &l, &err), STOW_OK);
}

static int prune(reported *r, stow_backend *b, long long max_age, uint64_t max_size,
                 long long grace, int dry)
{
    stow_prune_result res;
    stow_error err = {0};
    stow_prune_opts o = {.max_age = max_age,
                         .max_size = max_size,
                         .grace = grace,
                         .dry_run = dry,
                         .report = on_report,
                         .ud = r};
    memset(r, 0, sizeof(*r));
    return stow_lifecycle_prune(&res, b, &o, &err);
}

/* Three entries: e-old (used 9 days ago: layers 1 and the shared s), e-mid (3 days: s and 2),
 * e-new (1 day: 3). */
static stow_backend *three_entries(const char *sub)
{
    stow_backend *b = fresh_store(sub);
    const size_t old_sz[] = {100, 1000}, mid_sz[] = {1000, 200}, new_sz[] = {300};
    put_layer(b, '1', 100, 10 * DAY);
    put_layer(b, 'e', 1000, 10 * DAY);
    put_layer(b, '2', 200, 10 * DAY);
    put_layer(b, '3', 300, 10 * DAY);
    put_entry(b, "e-old", 9 * DAY, "1e", old_sz);
    put_entry(b, "e-mid", 3 * DAY, "e2", mid_sz);
    put_entry(b, "e-new", 1 * DAY, "3", new_sz);
    return b;
}

static void test_eviction_order(void)
{
    reported r;
    char l1[STOW_LAYOUT_NAME_MAX], ls[STOW_LAYOUT_NAME_MAX], l2[STOW_LAYOUT_NAME_MAX],
        l3[STOW_LAYOUT_NAME_MAX];
    layer_name(l1, '1');
    layer_name(ls, 'e');
    layer_name(l2, '2');
    layer_name(l3, '3');

    /* Age only: e-old goes with its own layer; the shared layer stays for e-mid. */
    stow_backend *b = three_entries("age");
    CHECK_INT(prune(&r, b, 7 * DAY, 0, 3600, 0), STOW_OK);
    CHECK(was_reported(&r, "entry", "manifests/main/e-old.json"));
    CHECK(!was_reported(&r, "entry", "manifests/main/e-mid.json"));
    CHECK(!exists(b, l1) && exists(b, ls) && exists(b, l2) && exists(b, l3));
    CHECK(!exists(b, "access/main/e-old") && exists(b, "access/main/e-mid"));
    stow_backend_free(b);

    /* Size only: least recently used first until the rest fits 600 bytes (e-new's 300). */
    b = three_entries("size");
    CHECK_INT(prune(&r, b, 0, 600, 3600, 0), STOW_OK);
    CHECK(was_reported(&r, "entry", "manifests/main/e-old.json"));
    CHECK(was_reported(&r, "entry", "manifests/main/e-mid.json"));
    CHECK(!was_reported(&r, "entry", "manifests/main/e-new.json"));
    CHECK(!exists(b, l1) && !exists(b, ls) && !exists(b, l2) && exists(b, l3));
    stow_backend_free(b);

    /* A budget that e-mid and e-new fit (1500): only the LRU entry goes. */
    b = three_entries("size2");
    CHECK_INT(prune(&r, b, 0, 1500, 3600, 0), STOW_OK);
    CHECK(was_reported(&r, "entry", "manifests/main/e-old.json"));
    CHECK(!was_reported(&r, "entry", "manifests/main/e-mid.json"));
    CHECK(!exists(b, l1) && exists(b, ls));
    stow_backend_free(b);

    /* Age first, then size on what is left: e-old by age, e-mid by size (budget 400). */
    b = three_entries("both");
    CHECK_INT(prune(&r, b, 7 * DAY, 400, 3600, 1), STOW_OK); /* dry run: reported, kept */
    CHECK_INT(r.n, 5);                                       /* 2 entries, 3 layers */
    CHECK(was_reported(&r, "entry", "manifests/main/e-old.json") &&
          was_reported(&r, "entry", "manifests/main/e-mid.json"));
    CHECK(exists(b, l1) && exists(b, "manifests/main/e-old.json"));
    stow_backend_free(b);
}

static void test_grace_and_leases(void)
{
    reported r;
    char young[STOW_LAYOUT_NAME_MAX], old[STOW_LAYOUT_NAME_MAX], leased[STOW_LAYOUT_NAME_MAX],
        stale[STOW_LAYOUT_NAME_MAX];
    layer_name(young, 'a');
    layer_name(old, 'b');
    layer_name(leased, 'c');
    layer_name(stale, 'd');
    stow_backend *b = fresh_store("grace");
    put_layer(b, 'a', 10, 600);  /* unreferenced, 10 min old */
    put_layer(b, 'b', 10, 7200); /* unreferenced, 2 h old */
    put_layer(b, 'c', 10, 7200); /* named by a live lease */
    put_layer(b, 'd', 10, 7200); /* named by a stale lease */
    put_lease(b, '1', 60, 'c');
    put_lease(b, '2', STOW_LEASE_MAX_AGE + 60, 'd');
    char live_lease[STOW_LAYOUT_NAME_MAX], stale_lease[STOW_LAYOUT_NAME_MAX];
    char id1[STOW_LAYER_ID_LEN + 1], id2[STOW_LAYER_ID_LEN + 1];
    memset(id1, '1', STOW_LAYER_ID_LEN);
    memset(id2, '2', STOW_LAYER_ID_LEN);
    id1[STOW_LAYER_ID_LEN] = id2[STOW_LAYER_ID_LEN] = '\0';
    stow_layout_lease_name(live_lease, sizeof(live_lease), id1);
    stow_layout_lease_name(stale_lease, sizeof(stale_lease), id2);

    /* --grace 0 while a save holds a lease: refused, nothing touched. */
    CHECK_INT(prune(&r, b, 0, 0, 0, 0), STOW_EUSAGE);
    CHECK_INT(r.n, 0);
    CHECK(exists(b, young) && exists(b, old) && exists(b, leased) && exists(b, stale) &&
          exists(b, stale_lease));

    CHECK_INT(prune(&r, b, 0, 0, 3600, 0), STOW_OK);
    CHECK(exists(b, young));  /* within the grace period */
    CHECK(!exists(b, old));   /* past it */
    CHECK(exists(b, leased)); /* past it, but leased */
    CHECK(!exists(b, stale)); /* its lease is stale */
    CHECK(was_reported(&r, "lease", stale_lease) && !exists(b, stale_lease));
    CHECK(exists(b, live_lease));

    /* Once the save ends (its lease is gone), grace 0 deletes every unreferenced layer. */
    stow_error err = {0};
    CHECK_INT(stow_backend_del(b, live_lease, &err), STOW_OK);
    CHECK_INT(prune(&r, b, 0, 0, 0, 0), STOW_OK);
    CHECK(!exists(b, young) && !exists(b, leased));
    stow_backend_free(b);
}

static void put_temp(const char *name, long long age)
{
    char path[PATH_MAX + STOW_LAYOUT_NAME_MAX];
    snprintf(path, sizeof(path), "%s/%s", store, name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f != NULL) {
        fputs("partial layer", f);
        fclose(f);
    }
    set_age(name, age);
}

static void test_temps(void)
{
    reported r;
    stow_backend *b = fresh_store("temps");
    put_layer(b, 'a', 10, 600); /* creates layers/ */
    const char *old_tmp = "layers/.bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.tar.zst.0011223344556677.tmp";
    const char *young_tmp = "layers/.cccccccccccccccccccccccccccccccc.tar.zst.8899aabbccddeeff.tmp";
    const char *leased_tmp =
        "layers/.dddddddddddddddddddddddddddddddd.tar.zst.0123456789abcdef.tmp";
    const char *foreign = "layers/.keep-me";
    put_temp(old_tmp, 7200);
    put_temp(young_tmp, 60);
    put_temp(leased_tmp, 7200);
    put_temp(foreign, 7200);
    put_lease(b, '1', 60, 'd');

    CHECK_INT(prune(&r, b, 0, 0, 3600, 1), STOW_OK);
    CHECK(was_reported(&r, "temp", old_tmp));
    CHECK(exists(b, old_tmp)); /* dry run */
    CHECK_INT(prune(&r, b, 0, 0, 3600, 0), STOW_OK);
    CHECK(was_reported(&r, "temp", old_tmp) && !exists(b, old_tmp));
    CHECK(exists(b, young_tmp) && exists(b, leased_tmp) && exists(b, foreign));
    CHECK(!was_reported(&r, "temp", young_tmp) && !was_reported(&r, "temp", leased_tmp));
    /* Temp files stay out of ordinary listings: the layer count is unchanged. */
    stow_store_index *ix = NULL;
    stow_error err = {0};
    CHECK_INT(stow_lifecycle_load(&ix, b, &err), STOW_OK);
    stow_lifecycle_free(ix);
    stow_backend_free(b);
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
    stow_log_set_level(STOW_LOG_ERROR);
    snprintf(base, sizeof(base), "/tmp/stowage-test-lifecycle.XXXXXX");
    if (mkdtemp(base) == NULL)
        return 1;
    setenv("STOWAGE_NOW", "1800000000", 1);
    test_eviction_order();
    test_grace_and_leases();
    test_temps();
    if (stow_test_failures == 0)
        nftw(base, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    TEST_DONE();
}
