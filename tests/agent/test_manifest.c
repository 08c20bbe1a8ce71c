/* Unit tests for agent/manifest.c: building, JSON round trip, sort/find, and the validation
 * that from_json applies to manifests read from the store. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "manifest.h"
#include "test.h"

#define ID0 "0123456789abcdef0123456789abcdef"
#define ID1 "fedcba9876543210fedcba9876543210"
#define SHA0 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define SHA1 "5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e9"

static stow_manifest *build(void)
{
    stow_error err = {0};
    stow_manifest *m = stow_manifest_new();
    CHECK(m != NULL);
    if (m == NULL)
        return NULL;
    CHECK_INT(stow_manifest_set_key(m, "docker-linux-x64-abc", "main", &err), STOW_OK);
    m->created = 1700000000;
    CHECK_INT(stow_manifest_add_root(m, "~/.docker-cache", &err), STOW_OK);
    CHECK_INT(stow_manifest_add_root(m, "/tmp/.buildx-cache", &err), STOW_OK);

    stow_layer *l = stow_manifest_add_layer(m, &err);
    CHECK(l != NULL);
    memcpy(l->id, ID0, sizeof(ID0));
    memcpy(l->sha256, SHA0, sizeof(SHA0));
    l->size = 123456789012ull;
    l->raw_size = 234567890123ull;
    l->files = 3;
    l = stow_manifest_add_layer(m, &err);
    CHECK(l != NULL);
    memcpy(l->id, ID1, sizeof(ID1));
    memcpy(l->sha256, SHA1, sizeof(SHA1));
    l->size = 1;
    l->raw_size = 10240;
    l->files = 1;

    /* Added out of order on purpose; sort must put them in (root, path) order. */
    stow_file_entry e[] = {
        {1, "index.json", STOW_FT_FILE, 0644, 512, 1700000001, 999999999, 1, NULL, NULL, 0},
        {0, "pip/wheels/torch-2.3.0-cp311-linux_x86_64.whl", STOW_FT_FILE, 0600, 5000000000ull,
         1699999999, 1, 0, NULL, NULL, 7},
        {0, "pip", STOW_FT_DIR, 0755, 0, 1600000000, 500, -1, NULL, NULL, 0},
        {0, "pip/wheels", STOW_FT_DIR, 02775, 0, -5, 0, -1, NULL, NULL, 0},
        {0, "pip/current", STOW_FT_LINK, 0777, 0, 1650000000, 123456789, 0,
         "wheels/torch-2.3.0-cp311-linux_x86_64.whl", NULL, 0},
        {0, "apt/lists/lock", STOW_FT_FILE, 04755, 0, 0, 0, 0, NULL, NULL, 0},
    };
    for (size_t i = 0; i < sizeof(e) / sizeof(e[0]); i++)
        CHECK_INT(stow_manifest_add_file(m, &e[i], &err), STOW_OK);
    return m;
}

static void check_equal(const stow_manifest *a, const stow_manifest *b)
{
    CHECK_STR(a->key, b->key);
    CHECK_STR(a->scope, b->scope);
    CHECK_INT(a->created, b->created);
    CHECK_INT(a->nroots, b->nroots);
    for (size_t i = 0; i < a->nroots && i < b->nroots; i++)
        CHECK_STR(a->roots[i], b->roots[i]);
    CHECK_INT(a->nlayers, b->nlayers);
    for (size_t i = 0; i < a->nlayers && i < b->nlayers; i++) {
        CHECK_STR(a->layers[i].id, b->layers[i].id);
        CHECK_STR(a->layers[i].sha256, b->layers[i].sha256);
        CHECK(a->layers[i].size == b->layers[i].size);
        CHECK(a->layers[i].raw_size == b->layers[i].raw_size);
        CHECK(a->layers[i].files == b->layers[i].files);
    }
    CHECK_INT(a->nfiles, b->nfiles);
    for (size_t i = 0; i < a->nfiles && i < b->nfiles; i++) {
        const stow_file_entry *x = &a->files[i], *y = &b->files[i];
        CHECK_INT(x->root, y->root);
        CHECK_STR(x->path, y->path);
        CHECK_INT(x->type, y->type);
        CHECK_INT(x->mode, y->mode);
        CHECK(x->size == y->size);
        CHECK_INT(x->mtime, y->mtime);
        CHECK_INT(x->mtime_ns, y->mtime_ns);
        CHECK_INT(x->layer, y->layer);
        CHECK_INT(x->unread, y->unread);
        if (x->target || y->target)
            CHECK_STR(x->target, y->target);
    }
}

static void test_round_trip(void)
{
    stow_error err = {0};
    stow_manifest *m = build();
    if (m == NULL)
        return;
    stow_manifest_sort(m);
    /* Sorted by root, then path (bytewise). */
    const char *order[] = {"apt/lists/lock",
                           "pip",
                           "pip/current",
                           "pip/wheels",
                           "pip/wheels/torch-2.3.0-cp311-linux_x86_64.whl",
                           "index.json"};
    CHECK_INT(m->nfiles, 6);
    for (size_t i = 0; i < 6 && i < m->nfiles; i++)
        CHECK_STR(m->files[i].path, order[i]);
    CHECK_INT(m->files[5].root, 1);

    char *json = NULL;
    size_t len = 0;
    CHECK_INT(stow_manifest_to_json(&json, &len, m, &err), STOW_OK);
    CHECK(json != NULL && len == strlen(json));

    stow_manifest *back = NULL;
    CHECK_INT(stow_manifest_from_json(&back, json, len, "test.json", &err), STOW_OK);
    CHECK(back != NULL);
    if (back) {
        check_equal(m, back);
        /* A second serialisation is byte-identical. */
        char *json2 = NULL;
        size_t len2 = 0;
        CHECK_INT(stow_manifest_to_json(&json2, &len2, back, &err), STOW_OK);
        CHECK(len2 == len && json2 && memcmp(json, json2, len) == 0);
        free(json2);
    }

    /* find */
    stow_file_entry *f = stow_manifest_find(m, 0, "pip/current");
    CHECK(f != NULL && f->type == STOW_FT_LINK);
    f = stow_manifest_find(m, 1, "index.json");
    CHECK(f != NULL && f->size == 512);
    CHECK(stow_manifest_find(m, 0, "index.json") == NULL); /* right path, wrong root */
    CHECK(stow_manifest_find(m, 1, "pip") == NULL);
    CHECK(stow_manifest_find(m, 0, "pip/wheel") == NULL);
    CHECK(stow_manifest_find(m, 2, "pip") == NULL);
    if (back) {
        f = stow_manifest_find(back, 0, "pip/wheels/torch-2.3.0-cp311-linux_x86_64.whl");
        CHECK(f != NULL && f->size == 5000000000ull && f->layer == 0 && f->mode == 0600);
    }

    char obj[128];
    CHECK_INT(stow_manifest_layer_object(obj, sizeof(obj), &m->layers[1]), STOW_OK);
    CHECK_STR(obj, "layers/" ID1 ".tar.zst");
    CHECK_INT(stow_manifest_layer_object(obj, 10, &m->layers[1]), STOW_ERR);

    free(json);
    stow_manifest_free(back);
    stow_manifest_free(m);
    stow_manifest_free(NULL);
}

static void test_empty(void)
{
    stow_error err = {0};
    stow_manifest *m = stow_manifest_new(), *back = NULL;
    char *json = NULL;
    size_t len = 0;
    CHECK_INT(stow_manifest_to_json(&json, &len, m, &err), STOW_OK);
    CHECK_INT(stow_manifest_from_json(&back, json, len, "empty", &err), STOW_OK);
    CHECK(back && back->nfiles == 0 && back->nroots == 0 && back->nlayers == 0);
    CHECK(stow_manifest_find(back, 0, "x") == NULL);
    free(json);
    stow_manifest_free(back);
    stow_manifest_free(m);
}

/* A valid manifest with the files array given as text, so each case changes one thing. */
#define HEAD(files)                                                                                \
    "{\"version\":1,\"key\":\"k\",\"scope\":\"s\",\"created\":1,\"roots\":[\"/r\",\"/q\"],"        \
    "\"layers\":[{\"id\":\"" ID0 "\",\"sha256\":\"" SHA0                                           \
    "\",\"size\":1,\"raw_size\":2,\"files\":3}],"                                                  \
    "\"files\":[" files "]}"
#define FILE_AT(path)                                                                              \
    "{\"r\":0,\"p\":\"" path "\",\"t\":\"f\",\"m\":420,\"mt\":1,\"ns\":0,\"s\":1,\"l\":0}"
#define LINK_AT(path, target)                                                                      \
    "{\"r\":0,\"p\":\"" path "\",\"t\":\"l\",\"m\":511,\"mt\":1,\"ns\":0,\"l\":0,\"lt\":\"" target \
    "\"}"
#define LAYERS(id, sha, size)                                                                      \
    "{\"version\":1,\"key\":\"k\",\"scope\":\"s\",\"created\":1,\"roots\":[\"/r\"],"               \
    "\"layers\":[{\"id\":\"" id "\",\"sha256\":\"" sha "\",\"size\":" size                         \
    ",\"raw_size\":2,\"files\":3}],"                                                               \
    "\"files\":[]}"

typedef struct {
    const char *json;
    const char *expect; /* substring of the message */
} bad_case;

static void test_refusals(void)
{
    /* The template itself is valid. */
    stow_error err = {0};
    stow_manifest *m = NULL;
    const char *ok = HEAD(FILE_AT("a/b") "," LINK_AT("a/l", "b") "," LINK_AT("a/b2/l", "../../x"));
    CHECK_INT(stow_manifest_from_json(&m, ok, strlen(ok), "ok.json", &err), STOW_OK);
    CHECK(m != NULL && m->nfiles == 3);
    stow_manifest_free(m);

    static const bad_case cases[] = {
        {"", "not valid JSON"},
        {"{\"version\":1,", "not valid JSON"},
        {"[1,2,3]", "not a stowage manifest"},
        {"{\"version\":1}", "not a stowage manifest"},
        /* duplicate object keys are refused by the parser */
        {"{\"version\":1,\"version\":1}", "not valid JSON"},
        {"{\"version\":2,\"key\":\"k\",\"scope\":\"s\",\"created\":1,\"roots\":[],\"layers\":[],\"files\":[]}",
         "version 2"},
        {"{\"version\":0,\"key\":\"k\",\"scope\":\"s\",\"created\":1,\"roots\":[],\"layers\":[],\"files\":[]}",
         "version 0"},
        {"{\"version\":1,\"key\":\"k\",\"scope\":\"s\",\"created\":1,\"roots\":{},\"layers\":[],\"files\":[]}",
         "must be arrays"},
        {"{\"version\":1,\"key\":\"k\",\"scope\":\"s\",\"created\":1,\"roots\":[\"\"],\"layers\":[],\"files\":[]}",
         "roots[0]"},
        /* unsafe paths */
        {HEAD(FILE_AT("../x")), "unsafe path \"../x\""},
        {HEAD(FILE_AT("/abs")), "unsafe path \"/abs\""},
        {HEAD(FILE_AT("a/./b")), "unsafe path \"a/./b\""},
        {HEAD(FILE_AT("a//b")), "unsafe path \"a//b\""},
        {HEAD(FILE_AT("")), "unsafe path \"\""},
        {HEAD(FILE_AT("a/..")), "unsafe path \"a/..\""},
        {HEAD(FILE_AT("a/")), "unsafe path \"a/\""},
        /* symlinks leaving the root */
        {HEAD(LINK_AT("a/l", "../../x")), "symlink a/l points outside"},
        {HEAD(LINK_AT("a/l", "/etc")), "symlink a/l points outside"},
        {HEAD(LINK_AT("l", "x/../../y")), "symlink l points outside"},
        {HEAD(LINK_AT("l", "")), "symlink l points outside"},
        {HEAD("{\"r\":0,\"p\":\"l\",\"t\":\"l\",\"m\":511,\"mt\":1,\"ns\":0,\"l\":0}"),
         "symlink l points outside"},
        /* layers and roots out of range */
        {HEAD("{\"r\":0,\"p\":\"x\",\"t\":\"f\",\"m\":420,\"mt\":1,\"ns\":0,\"s\":1,\"l\":1}"),
         "names layer 1"},
        {HEAD("{\"r\":0,\"p\":\"x\",\"t\":\"f\",\"m\":420,\"mt\":1,\"ns\":0,\"s\":1}"),
         "names layer -1"},
        {HEAD("{\"r\":0,\"p\":\"x\",\"t\":\"f\",\"m\":420,\"mt\":1,\"ns\":0,\"s\":1,\"l\":-2}"),
         "names layer -2"},
        {HEAD("{\"r\":0,\"p\":\"d\",\"t\":\"d\",\"m\":493,\"mt\":1,\"ns\":0,\"l\":0}"),
         "names layer 0"},
        {HEAD("{\"r\":2,\"p\":\"x\",\"t\":\"f\",\"m\":420,\"mt\":1,\"ns\":0,\"s\":1,\"l\":0}"),
         "names root 2"},
        {HEAD("{\"r\":-1,\"p\":\"x\",\"t\":\"f\",\"m\":420,\"mt\":1,\"ns\":0,\"s\":1,\"l\":0}"),
         "names root -1"},
        /* duplicates, also when not adjacent in the input */
        {HEAD(FILE_AT("a/b") "," FILE_AT("a/c") "," FILE_AT("a/b")), "path a/b appears twice"},
        /* bad layer fields */
        {LAYERS("0123456789abcdef0123456789abcde", SHA0, "1"), "layers[0] has a bad id"},
        {LAYERS("0123456789abcdef0123456789abcdef0", SHA0, "1"), "layers[0] has a bad id"},
        {LAYERS("0123456789ABCDEF0123456789abcdef", SHA0, "1"), "layers[0] has a bad id"},
        {LAYERS("../../../../etc/passwd0123456789", SHA0, "1"), "layers[0] has a bad id"},
        {LAYERS(ID0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85g", "1"),
         "layers[0] has a bad id, sha256"},
        {LAYERS(ID0, "e3b0", "1"), "layers[0] has a bad id, sha256"},
        {LAYERS(ID0, SHA0, "-1"), "layers[0] has a bad id, sha256 or size"},
        {LAYERS(ID0, SHA0, "\"1\""), "layers[0]"},
        /* bad file fields */
        {HEAD("{\"r\":0,\"p\":\"x\",\"t\":\"f\",\"m\":420,\"mt\":1,\"ns\":0,\"s\":-1,\"l\":0}"),
         "(x) has a bad mode, time or size"},
        {HEAD("{\"r\":0,\"p\":\"x\",\"t\":\"f\",\"m\":4096,\"mt\":1,\"ns\":0,\"s\":1,\"l\":0}"),
         "(x) has a bad mode"},
        {HEAD("{\"r\":0,\"p\":\"x\",\"t\":\"f\",\"m\":-1,\"mt\":1,\"ns\":0,\"s\":1,\"l\":0}"),
         "(x) has a bad mode"},
        {HEAD(
             "{\"r\":0,\"p\":\"x\",\"t\":\"f\",\"m\":420,\"mt\":1,\"ns\":1000000000,\"s\":1,\"l\":0}"),
         "(x) has a bad mode, time"},
        {HEAD("{\"r\":0,\"p\":\"x\",\"t\":\"c\",\"m\":420,\"mt\":1,\"ns\":0,\"s\":1,\"l\":0}"),
         "unknown type \"c\""},
        {HEAD("{\"r\":0,\"p\":\"x\",\"t\":\"ff\",\"m\":420,\"mt\":1,\"ns\":0,\"s\":1,\"l\":0}"),
         "unknown type \"ff\""},
        {HEAD("{\"r\":0,\"p\":\"x\",\"t\":\"f\",\"mt\":1,\"ns\":0,\"s\":1,\"l\":0}"), "files[0]"},
        {HEAD("{\"r\":0,\"p\":5,\"t\":\"f\",\"m\":420,\"mt\":1,\"ns\":0,\"s\":1,\"l\":0}"),
         "files[0]"},
        /* embedded NUL in a path is refused by the parser */
        {HEAD(FILE_AT("a\\u0000b")), "not valid JSON"},
        /* the unread count (trim.h) */
        {HEAD(
             "{\"r\":0,\"p\":\"x\",\"t\":\"f\",\"m\":420,\"mt\":1,\"ns\":0,\"s\":1,\"l\":0,\"u\":-1}"),
         "(x) has a bad unread count"},
        {HEAD(
             "{\"r\":0,\"p\":\"x\",\"t\":\"f\",\"m\":420,\"mt\":1,\"ns\":0,\"s\":1,\"l\":0,\"u\":1000001}"),
         "(x) has a bad unread count"},
        {HEAD(
             "{\"r\":0,\"p\":\"x\",\"t\":\"f\",\"m\":420,\"mt\":1,\"ns\":0,\"s\":1,\"l\":0,\"u\":\"3\"}"),
         "files[0]"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        stow_error e = {0};
        m = (stow_manifest *)&e; /* must be reset to NULL on failure */
        int rc = stow_manifest_from_json(&m, cases[i].json, strlen(cases[i].json), "store/m.json",
                                         &e);
        if (rc != STOW_ECORRUPT || m != NULL || strstr(e.msg, cases[i].expect) == NULL ||
            strstr(e.msg, "store/m.json") == NULL) {
            fprintf(stderr, "case %zu: rc=%d msg=\"%s\", expected ECORRUPT with \"%s\"\n", i, rc,
                    e.msg, cases[i].expect);
            stow_test_failures++;
        }
        CHECK_INT(e.code, STOW_ECORRUPT);
        if (rc == STOW_OK && m != (stow_manifest *)&e)
            stow_manifest_free(m);
    }
}

/* The size cap: a mapping of untouched zero pages costs no memory, and is readable, so the
 * test stays safe whether or not the implementation checks the length before reading. */
static void test_size_cap(void)
{
    size_t len = (size_t)STOW_MANIFEST_MAX_BYTES + 1;
    void *big = mmap(NULL, len, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    CHECK(big != MAP_FAILED);
    if (big == MAP_FAILED)
        return;
    stow_error err = {0};
    stow_manifest *m = NULL;
    CHECK_INT(stow_manifest_from_json(&m, big, len, "huge.json", &err), STOW_ECORRUPT);
    CHECK(m == NULL);
    CHECK(strstr(err.msg, "huge.json") && strstr(err.msg, "too large"));
    /* Exactly at the cap the size is accepted and the content judged (zeros: not JSON). */
    stow_error_clear(&err);
    CHECK_INT(stow_manifest_from_json(&m, big, len - 1, "cap.json", &err), STOW_ECORRUPT);
    CHECK(strstr(err.msg, "not valid JSON") != NULL);
    CHECK(m == NULL);
    munmap(big, len);
}

/* The unread count is optional: absent (older manifests) reads as 0, present round-trips, and
 * it is written only for regular files with a count. */
static void test_unread_field(void)
{
    stow_error err = {0};
    stow_manifest *m = NULL;
    const char *old = HEAD(FILE_AT("a/b") "," LINK_AT("a/l", "b"));
    CHECK_INT(stow_manifest_from_json(&m, old, strlen(old), "old.json", &err), STOW_OK);
    CHECK(m != NULL && m->nfiles == 2 && m->files[0].unread == 0 && m->files[1].unread == 0);
    stow_manifest_free(m);
    m = NULL;
    const char *with = HEAD(
        "{\"r\":0,\"p\":\"x\",\"t\":\"f\",\"m\":420,\"mt\":1,\"ns\":0,\"s\":1,\"l\":0,\"u\":4}");
    CHECK_INT(stow_manifest_from_json(&m, with, strlen(with), "with.json", &err), STOW_OK);
    CHECK(m != NULL && m->nfiles == 1 && m->files[0].unread == 4);
    char *json = NULL;
    size_t len = 0;
    if (m != NULL) {
        CHECK_INT(stow_manifest_to_json(&json, &len, m, &err), STOW_OK);
        CHECK(json != NULL && strstr(json, "\"u\":4") != NULL);
        free(json);
        json = NULL;
        m->files[0].unread = 0; /* zero is not written */
        CHECK_INT(stow_manifest_to_json(&json, &len, m, &err), STOW_OK);
        CHECK(json != NULL && strstr(json, "\"u\"") == NULL);
        free(json);
    }
    stow_manifest_free(m);
}

int main(void)
{
    test_unread_field();
    test_round_trip();
    test_empty();
    test_refusals();
    test_size_cap();
    TEST_DONE();
}
