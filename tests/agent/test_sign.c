/* Tests for agent/sign.c and the signed manifest format of agent/layout.c, and the scope
 * escaping of agent/keys.c (docs/TRUST.md). */
#include "sign.h"
#include "keys.h"
#include "layout.h"

#include <stdlib.h>
#include <unistd.h>

#include "test.h"

static void test_escape(void)
{
    char a[STOW_KEY_MAX + 1], b[STOW_KEY_MAX + 1];
    stow_key_escape_ref(a, "main");
    CHECK_STR(a, "main");
    stow_key_escape_ref(a, "feature/x");
    CHECK_STR(a, "feature_2fx");
    stow_key_escape_ref(b, "feature-x");
    CHECK_STR(b, "feature-x");
    stow_key_escape_ref(a, "feature_2fx"); /* a literal name that looks escaped */
    CHECK_STR(a, "feature_5f2fx");
    stow_key_escape_ref(a, ".hidden");
    CHECK_STR(a, "_2ehidden");
    stow_key_escape_ref(a, "a.b");
    CHECK_STR(a, "a.b");
    stow_key_escape_ref(a, "r\xc3\xa9sum\xc3\xa9 x");
    CHECK_STR(a, "r_c3_a9sum_c3_a9_20x");
    stow_key_escape_ref(a, "");
    CHECK_STR(a, "");
    /* every escape is a valid scope */
    const char *names[] = {"feature/x", ".x", "a b", "_", "refs/tags/v1", "x\ny"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        stow_key_escape_ref(a, names[i]);
        CHECK(stow_key_validate(a, "scope", NULL) == STOW_OK);
    }
    /* long names: a prefix and a hash, still distinct and valid */
    char l1[400], l2[400];
    memset(l1, '/', sizeof(l1) - 1);
    l1[sizeof(l1) - 1] = '\0';
    memcpy(l2, l1, sizeof(l2));
    l2[sizeof(l2) - 2] = 'x';
    stow_key_escape_ref(a, l1);
    stow_key_escape_ref(b, l2);
    CHECK(strlen(a) <= STOW_KEY_MAX);
    CHECK(strcmp(a, b) != 0);
    CHECK(strstr(a, "__") != NULL);
    CHECK(stow_key_validate(a, "scope", NULL) == STOW_OK);
}

static void test_ref_placeholder(void)
{
    char *out = NULL;
    setenv("STOW_TEST_REF", "feature/x", 1);
    CHECK(stow_key_expand(&out, "{ref:STOW_TEST_REF}", NULL, NULL) == STOW_OK);
    CHECK_STR(out, "feature_2fx");
    free(out);
    unsetenv("STOW_TEST_REF");
    CHECK(stow_key_expand(&out, "{ref:STOW_TEST_REF}", NULL, NULL) == STOW_OK);
    CHECK_STR(out, "");
    free(out);
    CHECK(stow_key_expand(&out, "{ref:1bad}", NULL, NULL) == STOW_EUSAGE);
}

static void test_hmac(void)
{
    stow_signer *s = NULL, *w = NULL;
    stow_error err = {0};
    char sig[STOW_SIGN_HEX_MAX];
    CHECK(stow_signer_load(&s, NULL, NULL, NULL, &err) == STOW_OK && s == NULL);
    CHECK(stow_signer_load(&s, "short", NULL, NULL, &err) == STOW_EUSAGE);
    CHECK(stow_signer_load(&s, "0123456789abcdef", NULL, NULL, &err) == STOW_OK && s != NULL);
    CHECK(stow_signer_load(&w, "0123456789abcdeF", NULL, NULL, &err) == STOW_OK && w != NULL);
    CHECK(stow_signer_can_sign(s));
    CHECK_STR(stow_signer_alg(s), "hmac-sha256");
    CHECK(stow_signer_sign(s, sig, sizeof(sig), "manifests/a/k.json", "{}", 2, &err) == STOW_OK);
    CHECK_INT(strlen(sig), 64);
    CHECK(stow_signer_verify(s, "hmac-sha256", sig, "manifests/a/k.json", "{}", 2, &err) ==
          STOW_OK);
    /* another body, another name, another key, another algorithm */
    CHECK(stow_signer_verify(s, "hmac-sha256", sig, "manifests/a/k.json", "{ }", 3, &err) ==
          STOW_ECORRUPT);
    CHECK(stow_signer_verify(s, "hmac-sha256", sig, "manifests/b/k.json", "{}", 2, &err) ==
          STOW_ECORRUPT);
    CHECK(stow_signer_verify(w, "hmac-sha256", sig, "manifests/a/k.json", "{}", 2, &err) ==
          STOW_ECORRUPT);
    CHECK(stow_signer_verify(s, "ed25519", sig, "manifests/a/k.json", "{}", 2, &err) ==
          STOW_ECORRUPT);
    sig[10] = sig[10] == 'a' ? 'b' : 'a';
    CHECK(stow_signer_verify(s, "hmac-sha256", sig, "manifests/a/k.json", "{}", 2, &err) ==
          STOW_ECORRUPT);
    CHECK(stow_signer_verify(s, "hmac-sha256", "zz", "manifests/a/k.json", "{}", 2, &err) ==
          STOW_ECORRUPT);
    stow_signer_free(s);
    stow_signer_free(w);
}

static void test_seal(void)
{
    stow_signer *s = NULL;
    stow_error err = {0};
    char *obj = NULL, alg[STOW_SIGN_ALG_MAX], sig[STOW_SIGN_HEX_MAX];
    size_t len = 0, body = 0;
    const char *m = "{\"v\":1,\"key\":\"k\"}";
    /* unsigned: the bytes unchanged, no trailer found */
    CHECK(stow_layout_manifest_seal(&obj, &len, "manifests/a/k.json", m, strlen(m), NULL, &err) ==
          STOW_OK);
    CHECK_INT(len, strlen(m));
    CHECK(stow_layout_manifest_unseal(&body, alg, sizeof(alg), sig, sizeof(sig), obj, len) == 0);
    CHECK_INT(body, len);
    free(obj);
    CHECK(stow_signer_load(&s, "0123456789abcdef", NULL, NULL, &err) == STOW_OK);
    CHECK(stow_layout_manifest_seal(&obj, &len, "manifests/a/k.json", m, strlen(m), s, &err) ==
          STOW_OK);
    CHECK(stow_layout_manifest_unseal(&body, alg, sizeof(alg), sig, sizeof(sig), obj, len) == 1);
    CHECK_INT(body, strlen(m));
    CHECK_STR(alg, "hmac-sha256");
    CHECK(memcmp(obj, m, body) == 0);
    CHECK(stow_signer_verify(s, alg, sig, "manifests/a/k.json", obj, body, &err) == STOW_OK);
    /* a trailer that is not of the form is not a trailer */
    const char *bad[] = {"{}\nstowage-signature hmac-sha256 XYZ\n", "{}\nstowage-signature\n",
                         "{}\nstowage-signature hmac-sha256 ab", "{}\nsomething else\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(stow_layout_manifest_unseal(&body, alg, sizeof(alg), sig, sizeof(sig), bad[i],
                                          strlen(bad[i])) == 0);
    free(obj);
    stow_signer_free(s);
}

static void test_key_files(void)
{
    char dir[] = "/tmp/stow-sign-XXXXXX", path[256];
    stow_signer *s = NULL;
    stow_error err = {0};
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/secret", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f == NULL)
        return;
    fputs("0123456789abcdef\n", f);
    fclose(f);
    /* a file's trailing newline is not part of the secret: it equals the environment form */
    CHECK(stow_signer_load(&s, NULL, path, NULL, &err) == STOW_OK && s != NULL);
    stow_signer *e = NULL;
    char s1[STOW_SIGN_HEX_MAX], s2[STOW_SIGN_HEX_MAX];
    CHECK(stow_signer_load(&e, "0123456789abcdef", NULL, NULL, &err) == STOW_OK);
    CHECK(stow_signer_sign(s, s1, sizeof(s1), "n", "b", 1, &err) == STOW_OK);
    CHECK(stow_signer_sign(e, s2, sizeof(s2), "n", "b", 1, &err) == STOW_OK);
    CHECK_STR(s1, s2);
    stow_signer_free(e);
    stow_signer_free(s);
    CHECK(stow_signer_load(&s, NULL, NULL, path, &err) == STOW_EUSAGE); /* not a public key */
    CHECK(stow_signer_load(&s, "0123456789abcdef", path, NULL, &err) == STOW_EUSAGE);
    snprintf(path, sizeof(path), "%s/missing", dir);
    CHECK(stow_signer_load(&s, NULL, path, NULL, &err) == STOW_EUSAGE);
    snprintf(path, sizeof(path), "%s/secret", dir);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    test_escape();
    test_ref_placeholder();
    test_hmac();
    test_seal();
    test_key_files();
    TEST_DONE();
}
