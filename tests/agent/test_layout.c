/* Unit tests for agent/layout.c: name builders and parsers (round trips, refusals), the ref,
 * access and lease formats, and the capped fetch (against a file store in a temp dir). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "layout.h"
#include "test.h"

#define ID0 "0123456789abcdef0123456789abcdef"
#define ID1 "fedcba9876543210fedcba9876543210"

static void test_names(void)
{
    char n[STOW_LAYOUT_NAME_MAX], a[STOW_LAYOUT_PART_MAX], b[STOW_LAYOUT_PART_MAX],
        id[STOW_LAYER_ID_LEN + 1];
    CHECK_INT(stow_layout_manifest_name(n, sizeof(n), "main", "docker-linux-x64-abc"), STOW_OK);
    CHECK_STR(n, "manifests/main/docker-linux-x64-abc.json");
    CHECK_INT(stow_layout_parse_manifest(a, b, n), 0);
    CHECK_STR(a, "main");
    CHECK_STR(b, "docker-linux-x64-abc");

    CHECK_INT(stow_layout_ref_name(n, sizeof(n), "pr-12", "docker-linux-"), STOW_OK);
    CHECK_STR(n, "refs/pr-12/docker-linux-");
    CHECK_INT(stow_layout_parse_ref(a, b, n), 0);
    CHECK_STR(a, "pr-12");
    CHECK_STR(b, "docker-linux-");

    CHECK_INT(stow_layout_access_name(n, sizeof(n), "main", "k"), STOW_OK);
    CHECK_STR(n, "access/main/k");
    CHECK_INT(stow_layout_parse_access(a, b, n), 0);
    CHECK_STR(b, "k");

    CHECK_INT(stow_layout_layer_name(n, sizeof(n), ID0), STOW_OK);
    CHECK_STR(n, "layers/" ID0 ".tar.zst");
    CHECK_INT(stow_layout_parse_layer(id, n), 0);
    CHECK_STR(id, ID0);

    CHECK_INT(stow_layout_lease_name(n, sizeof(n), ID1), STOW_OK);
    CHECK_STR(n, "leases/" ID1 ".json");
    CHECK_INT(stow_layout_parse_lease(id, n), 0);
    CHECK_STR(id, ID1);

    /* Refusals: unsafe parts, truncation, other kinds. */
    CHECK_INT(stow_layout_manifest_name(n, sizeof(n), "main", "../x"), STOW_EUSAGE);
    CHECK_INT(stow_layout_manifest_name(n, sizeof(n), "", "k"), STOW_EUSAGE);
    CHECK_INT(stow_layout_manifest_name(n, sizeof(n), "ma in", "k"), STOW_EUSAGE);
    CHECK_INT(stow_layout_manifest_name(n, 12, "main", "k"), STOW_EUSAGE);
    CHECK_INT(stow_layout_parse_manifest(a, b, "manifests/main/k.txt"), -1);
    CHECK_INT(stow_layout_parse_manifest(a, b, "manifests/main/sub/k.json"), -1);
    CHECK_INT(stow_layout_parse_manifest(a, b, "manifests/k.json"), -1);
    CHECK_INT(stow_layout_parse_manifest(a, b, "manifests/main/.json"), -1);
    CHECK_INT(stow_layout_parse_manifest(a, b, "manifests/main/x\n::error::y.json"),
              -1); /* hostile listing */
    CHECK_INT(stow_layout_parse_manifest(a, b, "manifests/m\x1b[31m/k.json"), -1);
    CHECK_INT(stow_layout_parse_manifest(a, b, "manifests/main/.k.json.0011223344556677.tmp"), -1);
    CHECK_INT(stow_layout_parse_manifest(a, b, "refs/main/k.json"), -1);
    CHECK_INT(stow_layout_parse_ref(a, b, "refs/main"), -1);
    CHECK_INT(stow_layout_parse_layer(id, "layers/" ID0 ".tar"), -1);
    CHECK_INT(stow_layout_parse_layer(id, "layers/0123456789ABCDEF0123456789abcdef.tar.zst"), -1);
    CHECK_INT(stow_layout_parse_layer(id, "layers/abc.tar.zst"), -1);
    CHECK_INT(stow_layout_parse_lease(id, "leases/" ID0 ".tar.zst"), -1);
    char big[STOW_LAYOUT_PART_MAX + 40];
    memset(big, 'k', sizeof(big));
    memcpy(big, "access/s/", 9);
    big[sizeof(big) - 1] = '\0';
    CHECK_INT(stow_layout_parse_access(a, b, big), -1); /* key longer than a part */
}

static void test_temp(void)
{
    char t[STOW_LAYOUT_NAME_MAX];
    CHECK_INT(stow_layout_parse_temp(t, sizeof(t), "layers/." ID0 ".tar.zst.0011223344556677.tmp"),
              0);
    CHECK_STR(t, "layers/" ID0 ".tar.zst");
    CHECK_INT(stow_layout_parse_temp(t, sizeof(t), "leases/." ID1 ".json.a0b1c2d3e4f5a6b7.tmp"), 0);
    CHECK_STR(t, "leases/" ID1 ".json");
    CHECK_INT(stow_layout_parse_temp(t, sizeof(t), "layers/" ID0 ".tar.zst"), -1);
    CHECK_INT(stow_layout_parse_temp(t, sizeof(t), "layers/.x.001122334455667.tmp"),
              -1); /* 15 hex */
    CHECK_INT(stow_layout_parse_temp(t, sizeof(t), "layers/.x.00112233445566zz.tmp"), -1);
    CHECK_INT(stow_layout_parse_temp(t, sizeof(t), "layers/.x.0011223344556677.tmpx"), -1);
    CHECK_INT(stow_layout_parse_temp(t, 8, "layers/." ID0 ".tar.zst.0011223344556677.tmp"), -1);
}

static void test_formats(void)
{
    stow_error err = {0};
    char *s = NULL, key[STOW_LAYOUT_PART_MAX];
    size_t len = 0;
    CHECK_INT(stow_layout_ref_encode(&s, &len, "docker-linux-abc", 1700000000, &err), STOW_OK);
    CHECK_INT(stow_layout_ref_decode(key, sizeof(key), s, len, "docker-", "r", &err), STOW_OK);
    CHECK_STR(key, "docker-linux-abc");
    /* A ref whose key does not start with its prefix is corrupt. */
    CHECK_INT(stow_layout_ref_decode(key, sizeof(key), s, len, "npm-", "r", &err), STOW_ECORRUPT);
    free(s);
    const char *bad[] = {"", "{}", "{\"key\":1}", "{\"key\":\"\"}", "[\"key\"]",
                         "{\"key\":\"a\",\"key\":\"b\"}",
                         /* keys that name no valid entry: hostile store content */
                         "{\"key\":\"a/../b\"}", "{\"key\":\"x\\n::error::y\"}",
                         "{\"key\":\"a b\"}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK_INT(stow_layout_ref_decode(key, sizeof(key), bad[i], strlen(bad[i]), NULL, "r", &err),
                  STOW_ECORRUPT);
    char longref[400];
    snprintf(longref, sizeof(longref), "{\"key\":\"%0300d\"}", 0);
    CHECK_INT(stow_layout_ref_decode(key, sizeof(key), longref, strlen(longref), NULL, "r", &err),
              STOW_ECORRUPT);

    char body[64];
    int n = stow_layout_access_encode(body, sizeof(body), 1700000123);
    CHECK(n > 0);
    CHECK_INT(stow_layout_access_decode(body, (size_t)n), 1700000123);
    CHECK_INT(stow_layout_access_decode("{\"time\":-5}", 11), 0);
    CHECK_INT(stow_layout_access_decode("garbage", 7), 0);

    char ids[2][STOW_LAYER_ID_LEN + 1] = {ID0, ID1};
    stow_lease l = {
        .id = ID1, .time = 1700000456, .scope = "main", .key = "k-1", .nlayers = 2, .layers = ids};
    CHECK_INT(stow_lease_encode(&s, &len, &l, &err), STOW_OK);
    stow_lease back;
    CHECK_INT(stow_lease_decode(&back, s, len, "lease", &err), STOW_OK);
    CHECK_STR(back.id, ID1);
    CHECK_INT(back.time, 1700000456);
    CHECK_STR(back.scope, "main");
    CHECK_STR(back.key, "k-1");
    CHECK_INT(back.nlayers, 2);
    if (back.nlayers == 2) {
        CHECK_STR(back.layers[0], ID0);
        CHECK_STR(back.layers[1], ID1);
    }
    stow_lease_clear(&back);
    free(s);
    const char *badl = "{\"id\":\"" ID0
                       "\",\"time\":1,\"scope\":\"s\",\"key\":\"k\",\"layers\":[\"../x\"]}";
    CHECK_INT(stow_lease_decode(&back, badl, strlen(badl), "lease", &err), STOW_ECORRUPT);
    CHECK(back.layers == NULL);
}

static void test_fetch(void)
{
    char base[] = "/tmp/stowage-test-layout.XXXXXX", url[PATH_MAX + 16];
    stow_error err = {0};
    stow_backend *b = NULL;
    CHECK(mkdtemp(base) != NULL);
    snprintf(url, sizeof(url), "file://%s", base);
    stow_backend_opts o = {.url = url, .verify_tls = 1, .max_retries = -1};
    CHECK_INT(stow_backend_open(&b, &o, &err), STOW_OK);
    if (b == NULL)
        return;
    char *buf = NULL;
    size_t len = 0;
    const char *body = "0123456789";
    CHECK_INT(stow_backend_put_buffer(b, "x/obj", body, 10, 0, &err), STOW_OK);
    CHECK_INT(stow_layout_fetch(&buf, &len, b, "x/obj", 10, &err), STOW_OK);
    CHECK_INT(len, 10);
    CHECK_STR(buf, body);
    free(buf);
    buf = NULL;
    /* One byte over the cap: refused as corrupt, nothing handed out. */
    CHECK_INT(stow_layout_fetch(&buf, &len, b, "x/obj", 9, &err), STOW_ECORRUPT);
    CHECK(buf == NULL && strstr(err.msg, "9-byte limit") != NULL);
    CHECK_INT(stow_layout_fetch(&buf, &len, b, "x/none", 9, &err), STOW_ENOTFOUND);

    /* Refs and markers through their own caps and names. */
    char key[STOW_LAYOUT_PART_MAX];
    CHECK_INT(stow_layout_put_ref(b, "main", "k-", "k-7", 5, &err), STOW_OK);
    CHECK_INT(stow_layout_fetch_ref(key, sizeof(key), b, "main", "k-", &err), STOW_OK);
    CHECK_STR(key, "k-7");
    char *huge = malloc(STOW_REF_MAX_BYTES + 2);
    if (huge != NULL) {
        memset(huge, ' ', STOW_REF_MAX_BYTES + 1);
        CHECK_INT(stow_backend_put_buffer(b, "refs/main/big-", huge, STOW_REF_MAX_BYTES + 1, 0,
                                          &err),
                  STOW_OK);
        CHECK_INT(stow_layout_fetch_ref(key, sizeof(key), b, "main", "big-", &err), STOW_ECORRUPT);
        free(huge);
    }
    CHECK_INT(stow_layout_put_access(b, "main", "k-7", 1234, &err), STOW_OK);
    CHECK_INT(stow_layout_fetch_access(b, "main", "k-7"), 1234);
    CHECK_INT(stow_layout_fetch_access(b, "main", "k-8"), 0);

    /* A manifest stored under another key's name is refused. */
    stow_manifest *m = stow_manifest_new(), *got = NULL;
    char *json = NULL;
    CHECK(m != NULL);
    if (m != NULL && stow_manifest_set_key(m, "other", "main", &err) == STOW_OK &&
        stow_manifest_to_json(&json, &len, m, &err) == STOW_OK) {
        CHECK_INT(stow_backend_put_buffer(b, "manifests/main/k-7.json", json, len, 0, &err),
                  STOW_OK);
        CHECK_INT(stow_layout_fetch_manifest(&got, b, "main", "k-7", &err), STOW_ECORRUPT);
        CHECK(got == NULL);
        CHECK_INT(stow_layout_fetch_manifest(&got, b, "main", "other", &err), STOW_ENOTFOUND);
    }
    free(json);
    stow_manifest_free(m);
    stow_backend_free(b);
    char cmd[PATH_MAX + 16];
    /* Leave nothing behind: the objects, then the directories. */
    const char *objs[] = {"x/obj", "refs/main/k-", "refs/main/big-", "access/main/k-7",
                          "manifests/main/k-7.json"};
    for (size_t i = 0; i < sizeof(objs) / sizeof(objs[0]); i++) {
        snprintf(cmd, sizeof(cmd), "%s/%s", base, objs[i]);
        unlink(cmd);
    }
    const char *dirs[] = {"x",      "refs/main",      "refs",      "access/main",
                          "access", "manifests/main", "manifests", ""};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        snprintf(cmd, sizeof(cmd), "%s/%s", base, dirs[i]);
        rmdir(cmd);
    }
}

static void test_now(void)
{
    setenv("STOWAGE_NOW", "1700000000", 1);
    CHECK_INT(stow_layout_now(), 1700000000);
    setenv("STOWAGE_NOW", "soon", 1);
    CHECK(stow_layout_now() > 1700000000);
    unsetenv("STOWAGE_NOW");
}

int main(void)
{
    test_names();
    test_temp();
    test_formats();
    test_fetch();
    test_now();
    TEST_DONE();
}
