/* Unit tests for agent/manifest_v2.c: the version 2 round trip (and version 1 still read by
 * stow_manifest_decode), its size at scale, and hostile version 2 inputs, each refused with
 * STOW_ECORRUPT and a message naming the manifest. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "manifest.h"
#include "test.h"

#define ID0 "0123456789abcdef0123456789abcdef"
#define SHA0 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static stow_manifest *build(void)
{
    stow_error err = {0};
    stow_manifest *m = stow_manifest_new();
    CHECK(m != NULL);
    CHECK_INT(stow_manifest_set_key(m, "k-linux", "main", &err), STOW_OK);
    m->created = 1700000000;
    CHECK_INT(stow_manifest_add_root(m, "~/.cache/pip", &err), STOW_OK);
    CHECK_INT(stow_manifest_add_root(m, "/tmp/other", &err), STOW_OK);
    for (int i = 0; i < 2; i++) {
        stow_layer *l = stow_manifest_add_layer(m, &err);
        CHECK(l != NULL);
        memcpy(l->id, ID0, sizeof(ID0));
        memcpy(l->sha256, SHA0, sizeof(SHA0));
        l->size = 123456789012ull + (uint64_t)i;
        l->raw_size = 5;
        l->files = 2;
    }
    /* Out of order on purpose: the encoder writes (root, path) order regardless. */
    stow_file_entry e[] = {
        {1, "index.json", STOW_FT_FILE, 0644, 512, 1700000001, 999999999, 1, NULL, SHA0, 0},
        {0, "wheels/torch.whl", STOW_FT_FILE, 0600, 5000000000ull, 1699999999, 1, 0, NULL, NULL, 7},
        {0, "wheels", STOW_FT_DIR, 02775, 0, -5, 0, -1, NULL, NULL, 0},
        {0, "current", STOW_FT_LINK, 0777, 0, INT64_MIN, 123456789, 1, "wheels/torch.whl", NULL, 0},
        {0, "wheels/torch.whl.lock", STOW_FT_FILE, 04755, 0, INT64_MAX, 0, 0, NULL, NULL, 0},
        {0, "a", STOW_FT_FILE, 0, UINT64_MAX >> 1, 0, 0, 1, NULL, NULL, STOW_MAX_UNREAD},
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
    CHECK_INT(a->nlayers, b->nlayers);
    for (size_t i = 0; i < a->nlayers && i < b->nlayers; i++) {
        CHECK_STR(a->layers[i].sha256, b->layers[i].sha256);
        CHECK(a->layers[i].size == b->layers[i].size);
    }
    CHECK_INT(a->nfiles, b->nfiles);
    for (size_t i = 0; i < a->nfiles && i < b->nfiles; i++) {
        const stow_file_entry *x = &a->files[i], *y = &b->files[i];
        CHECK_INT(x->root, y->root);
        CHECK_STR(x->path, y->path);
        CHECK_INT(x->type, y->type);
        CHECK_INT(x->mode, y->mode);
        CHECK(x->size == y->size);
        CHECK(x->mtime == y->mtime);
        CHECK_INT(x->mtime_ns, y->mtime_ns);
        CHECK_INT(x->layer, y->layer);
        CHECK_INT(x->unread, y->unread);
        CHECK((x->target == NULL) == (y->target == NULL));
        if (x->target && y->target)
            CHECK_STR(x->target, y->target);
        CHECK((x->sha256 == NULL) == (y->sha256 == NULL));
        if (x->sha256 && y->sha256)
            CHECK_STR(x->sha256, y->sha256);
    }
}

static void test_round_trip(void)
{
    stow_error err = {0};
    stow_manifest *m = build(), *back = NULL, *v1 = NULL;
    char *enc = NULL, *enc2 = NULL, *json = NULL;
    size_t len = 0, len2 = 0, jlen = 0;
    CHECK_INT(stow_manifest_encode(&enc, &len, m, &err), STOW_OK);
    CHECK(enc != NULL && len > 12 && memcmp(enc, "STOWMF\0\2", 8) == 0);
    CHECK_INT(stow_manifest_decode(&back, enc, len, "v2.json", &err), STOW_OK);
    stow_manifest_sort(m);
    if (back != NULL) {
        check_equal(m, back);
        CHECK_INT(stow_manifest_encode(&enc2, &len2, back, &err), STOW_OK);
        CHECK(len2 == len && enc2 != NULL && memcmp(enc, enc2, len) == 0);
    }
    /* Version 1 still reads through the same entry point. */
    CHECK_INT(stow_manifest_to_json(&json, &jlen, m, &err), STOW_OK);
    CHECK(json != NULL && json[0] == '{');
    CHECK_INT(stow_manifest_decode(&v1, json, jlen, "v1.json", &err), STOW_OK);
    if (v1 != NULL)
        check_equal(m, v1);
    free(json);
    free(enc2);
    free(enc);
    stow_manifest_free(v1);
    stow_manifest_free(back);
    stow_manifest_free(m);

    /* Empty. */
    m = stow_manifest_new();
    CHECK_INT(stow_manifest_set_key(m, "k", "s", &err), STOW_OK);
    CHECK_INT(stow_manifest_encode(&enc, &len, m, &err), STOW_OK);
    CHECK_INT(stow_manifest_decode(&back, enc, len, "empty", &err), STOW_OK);
    CHECK(back != NULL && back->nfiles == 0);
    free(enc);
    stow_manifest_free(back);
    stow_manifest_free(m);
}

/* 200k entries shaped like a package cache: v2 is a small fraction of v1. */
static void test_scale(void)
{
    stow_error err = {0};
    stow_manifest *m = stow_manifest_new(), *back = NULL;
    char *enc = NULL, *json = NULL, path[64];
    size_t len = 0, jlen = 0;
    CHECK_INT(stow_manifest_set_key(m, "k", "s", &err), STOW_OK);
    CHECK_INT(stow_manifest_add_root(m, "~/c", &err), STOW_OK);
    stow_layer *l = stow_manifest_add_layer(m, &err);
    memcpy(l->id, ID0, sizeof(ID0));
    memcpy(l->sha256, SHA0, sizeof(SHA0));
    for (uint32_t i = 0; i < 200000; i++) {
        snprintf(path, sizeof(path), "d%04u/pkg-%07u.dat", i / 100, i);
        stow_file_entry e = {0,
                             path,
                             STOW_FT_FILE,
                             0644,
                             4096 + i % 9000,
                             1700000000 + i % 5,
                             (int32_t)(i * 7919u % 1000000000u),
                             0,
                             NULL,
                             NULL,
                             0};
        CHECK_INT(stow_manifest_add_file(m, &e, &err), STOW_OK);
    }
    CHECK_INT(stow_manifest_encode(&enc, &len, m, &err), STOW_OK);
    CHECK_INT(stow_manifest_to_json(&json, &jlen, m, &err), STOW_OK);
    printf("200k entries: v1 %zu bytes, v2 %zu bytes\n", jlen, len);
    CHECK(len * 8 < jlen);
    CHECK_INT(stow_manifest_decode(&back, enc, len, "scale", &err), STOW_OK);
    if (back != NULL)
        check_equal(m, back);
    free(json);
    free(enc);
    stow_manifest_free(back);
    stow_manifest_free(m);
}

#define HDR(nf)                                                                                    \
    "{\"version\":2,\"key\":\"k\",\"scope\":\"s\",\"created\":1,\"roots\":[\"~/c\",\"~/d\"],"      \
    "\"layers\":[{\"id\":\"" ID0 "\",\"sha256\":\"" SHA0                                           \
    "\",\"size\":1,\"raw_size\":1,\"files\":1}],\"files\":" #nf "}"

typedef struct {
    const char *header;
    unsigned char idx[48];
    size_t idxlen;
    int raw; /* the index bytes as they are, not compressed */
    const char *expect;
} v2_case;

/* root 0, path "x", file, mode 0644, mtime 1, ns 0, size 1, layer 0, unread 0, flags 0 */
#define FX 0, 0, 1, 'x', 'f', 0xa4, 3, 2, 0, 1, 0, 0, 0
#define FX_LEN 13

static char *make_v2(size_t *outlen, const char *header, const unsigned char *idx, size_t n,
                     int raw)
{
    size_t hl = strlen(header), bound = ZSTD_compressBound(n);
    char *out = malloc(12 + hl + bound + n);
    memcpy(out, "STOWMF\0\2", 8);
    out[8] = (char)(hl & 0xff);
    out[9] = (char)(hl >> 8);
    out[10] = out[11] = 0;
    memcpy(out + 12, header, hl);
    if (raw) {
        memcpy(out + 12 + hl, idx, n);
        *outlen = 12 + hl + n;
    } else {
        size_t c = ZSTD_compress(out + 12 + hl, bound, idx, n, 3);
        CHECK(!ZSTD_isError(c));
        *outlen = 12 + hl + c;
    }
    return out;
}

static void test_hostile(void)
{
    const v2_case cases[] = {
        {HDR(1), {2, 0, 1, 'x', 'f', 0xa4, 3, 2, 0, 1, 0, 0, 0}, 13, 0, "root 2, which does not"},
        {HDR(1), {0, 1, 1, 'x', 'f', 0xa4, 3, 2, 0, 1, 0, 0, 0}, 13, 0, "bad path length"},
        {HDR(1), {0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}, 7, 0, "bad path length"},
        {HDR(1), {0, 0, 0x80, 0x20, 'x'}, 5, 0, "bad path length"}, /* 4096 */
        {HDR(1),
         {0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
         11,
         0,
         "number out of range"},
        {HDR(1), {0, 0, 2, '.', '.', 'f', 0xa4, 3, 2, 0, 1, 0, 0, 0}, 14, 0, "unsafe path"},
        {HDR(1), {0, 0, 2, '/', 'x', 'f', 0xa4, 3, 2, 0, 1, 0, 0, 0}, 14, 0, "unsafe path"},
        {HDR(1), {0, 0, 3, 'a', 0, 'b', 'f', 0xa4, 3, 2, 0, 1, 0, 0, 0}, 15, 0, "unsafe path"},
        {HDR(1), {0, 0, 0, 'f', 0xa4, 3, 2, 0, 1, 0, 0, 0}, 12, 0, "unsafe path"}, /* empty */
        {HDR(2), {FX, 0, 1, 0, 'f', 0xa4, 3, 2, 0, 1, 0, 0, 0}, FX_LEN + 12, 0, "appears twice"},
        {HDR(2),
         {0, 0, 1, 'y', 'f', 0xa4, 3, 2, 0, 1, 0, 0, 0, FX},
         13 + FX_LEN,
         0,
         "out of order"},
        {HDR(2),
         {1, 0, 1, 'y', 'f', 0xa4, 3, 2, 0, 1, 0, 0, 0, FX},
         13 + FX_LEN,
         0,
         "entry 1 is out of order"},
        {HDR(1), {0, 0, 1, 'x', 'z', 0xa4, 3, 2, 0, 1, 0, 0, 0}, 13, 0, "unknown type"},
        {HDR(1), {0, 0, 1, 'x', 'f', 0x80, 0x20, 2, 0, 1, 0, 0, 0}, 13, 0, "bad mode or time"},
        {HDR(1),
         {0, 0, 1, 'x', 'f', 0xa4, 3, 2, 0x80, 0x94, 0xeb, 0xdc, 3, 1, 0, 0, 0},
         17,
         0,
         "bad mode or time"}, /* ns = 10^9 */
        {HDR(1), {0, 0, 1, 'x', 'f', 0xa4, 3, 2, 0, 1, 5, 0, 0}, 13, 0, "names layer 5"},
        {HDR(1), {0, 0, 1, 'x', 'f', 0xa4, 3, 2, 0, 1, 0, 0, 2}, 13, 0, "flags"},
        {HDR(1),
         {0, 0, 1, 'x', 'f', 0xa4, 3, 2, 0, 1, 0, 0xc1, 0x84, 0x3d, 0},
         15,
         0,
         "unread count"}, /* 1000001 */
        {HDR(1),
         {0, 0, 1, 'x', 'l', 0xff, 3, 2, 0, 0, 4, '.', '.', '/', 'y'},
         15,
         0,
         "points outside"},
        {HDR(1), {0, 0, 1, 'x', 'l', 0xff, 3, 2, 0, 0, 0x80, 0x20}, 12, 0, "target length"},
        {HDR(1), {0, 0, 1, 'x', 'l', 0xff, 3, 2, 0, 0, 3, 'a', 0, 'b'}, 14, 0, "points outside"},
        {HDR(1), {0, 0, 1, 'x', 'f', 0xa4}, 6, 0, "ends mid-entry"},
        {HDR(2), {FX}, FX_LEN, 0, "ends mid-entry"},
        {HDR(1), {FX, 0, 0, 1, 'y'}, FX_LEN + 4, 0, "more entries than"},
        {HDR(1), {FX}, FX_LEN, 1, "file index:"}, /* not zstd */
        {HDR(0), {0}, 0, 1, "truncated"},         /* no frame at all */
        {"{\"version\":2", {FX}, FX_LEN, 0, "not valid JSON"},
        {"{\"version\":3,\"key\":\"k\",\"scope\":\"s\",\"created\":1,\"roots\":[],\"layers\":[],"
         "\"files\":0}",
         {0},
         0,
         0,
         "version 3 is not supported"},
        {HDR(-1), {0}, 0, 0, "too many"},
        {HDR(10000001), {0}, 0, 0, "too many"},
        {HDR("1"), {FX}, FX_LEN, 0, "not a stowage manifest header"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        stow_error e = {0};
        size_t len = 0;
        char *buf = make_v2(&len, cases[i].header, cases[i].idx, cases[i].idxlen, cases[i].raw);
        stow_manifest *m = (stow_manifest *)&e; /* must be reset to NULL on failure */
        int rc = stow_manifest_decode(&m, buf, len, "store/m.json", &e);
        if (rc != STOW_ECORRUPT || m != NULL || strstr(e.msg, cases[i].expect) == NULL ||
            strstr(e.msg, "store/m.json") == NULL) {
            fprintf(stderr, "case %zu: rc=%d msg=\"%s\", expected ECORRUPT with \"%s\"\n", i, rc,
                    e.msg, cases[i].expect);
            stow_test_failures++;
        }
        if (rc == STOW_OK && m != (stow_manifest *)&e)
            stow_manifest_free(m);
        /* Every proper prefix is refused too (truncation anywhere). */
        for (size_t cut = 0; cut < len; cut++) {
            stow_error e2 = {0};
            stow_manifest *m2 = NULL;
            if (stow_manifest_decode(&m2, buf, cut, "store/m.json", &e2) == STOW_OK) {
                stow_manifest_free(m2);
                if (cut >= 8) { /* shorter than the magic reads as (bad) JSON */
                    fprintf(stderr, "case %zu: prefix %zu accepted\n", i, cut);
                    stow_test_failures++;
                }
            }
        }
        free(buf);
    }
    /* The valid entry the cases are built from is accepted, so they fail for their reason. */
    size_t len = 0;
    const unsigned char ok[] = {FX};
    char *buf = make_v2(&len, HDR(1), ok, sizeof(ok), 0);
    stow_error e = {0};
    stow_manifest *m = NULL;
    CHECK_INT(stow_manifest_decode(&m, buf, len, "ok", &e), STOW_OK);
    CHECK(m != NULL && m->nfiles == 1 && strcmp(m->files[0].path, "x") == 0 &&
          m->files[0].mode == 0644 && m->files[0].mtime == 1);
    /* Truncated frame: the last bytes cut off. */
    stow_manifest *m3 = NULL;
    CHECK_INT(stow_manifest_decode(&m3, buf, len - 2, "store/m.json", &e), STOW_ECORRUPT);
    CHECK(m3 == NULL && strstr(e.msg, "store/m.json: file index") != NULL);
    stow_manifest_free(m);
    free(buf);
}

/* The encoder refuses what the decoder would refuse, rather than write it. */
static void test_encode_refuses(void)
{
    stow_error err = {0};
    stow_manifest *m = stow_manifest_new();
    char *enc = NULL;
    size_t len = 0;
    CHECK_INT(stow_manifest_set_key(m, "k", "s", &err), STOW_OK);
    CHECK_INT(stow_manifest_add_root(m, "~/c", &err), STOW_OK);
    stow_file_entry d = {0, "x", STOW_FT_DIR, 0755, 0, 1, 0, -1, NULL, NULL, 0};
    CHECK_INT(stow_manifest_add_file(m, &d, &err), STOW_OK);
    CHECK_INT(stow_manifest_add_file(m, &d, &err), STOW_OK);
    CHECK(stow_manifest_encode(&enc, &len, m, &err) != STOW_OK && enc == NULL);
    CHECK(strstr(err.msg, "appears twice") != NULL);
    stow_manifest_free(m);
}

int main(void)
{
    test_round_trip();
    test_scale();
    test_hostile();
    test_encode_refuses();
    TEST_DONE();
}
