#include "sign.h"

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "readfile.h"

#define DOMAIN "stowage-manifest-v1\n"
#define ALG_HMAC "hmac-sha256"
#define ALG_ED25519 "ed25519"

struct stow_signer {
    int ed25519;
    int can_sign;
    unsigned char *secret; /* HMAC */
    size_t secret_len;
    EVP_PKEY *pkey; /* Ed25519: private (signs and verifies) or public (verifies) */
};

void stow_signer_free(stow_signer *s)
{
    if (s == NULL)
        return;
    if (s->secret != NULL) {
        OPENSSL_cleanse(s->secret, s->secret_len);
        free(s->secret);
    }
    EVP_PKEY_free(s->pkey);
    free(s);
}

int stow_signer_can_sign(const stow_signer *s) { return s != NULL && s->can_sign; }

const char *stow_signer_alg(const stow_signer *s) { return s->ed25519 ? ALG_ED25519 : ALG_HMAC; }

static int set_secret(stow_signer *s, const void *p, size_t n, const char *what, stow_error *err)
{
    if (n < STOW_SIGN_MIN_SECRET)
        return stow_error_set(err, STOW_EUSAGE,
                              "%s: the HMAC secret is %zu bytes; at least %d are needed", what, n,
                              STOW_SIGN_MIN_SECRET);
    if ((s->secret = malloc(n)) == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    memcpy(s->secret, p, n);
    s->secret_len = n;
    s->can_sign = 1;
    return STOW_OK;
}

/* An Ed25519 key from PEM text; private keys sign. */
static int set_pem(stow_signer *s, const char *text, size_t n, int want_private, const char *what,
                   stow_error *err)
{
    BIO *bio = BIO_new_mem_buf(text, (int)n);
    if (bio == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    s->pkey = want_private ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL)
                           : PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (s->pkey == NULL)
        return stow_error_set(err, STOW_EUSAGE, "%s: not a PEM %s key", what,
                              want_private ? "private" : "public");
    if (EVP_PKEY_get_id(s->pkey) != EVP_PKEY_ED25519)
        return stow_error_set(err, STOW_EUSAGE, "%s: only Ed25519 PEM keys are supported", what);
    s->ed25519 = 1;
    s->can_sign = want_private;
    return STOW_OK;
}

int stow_signer_load(stow_signer **out, const char *env_secret, const char *signing_key_file,
                     const char *verify_key_file, stow_error *err)
{
    stow_signer *s = NULL;
    stow_buf text;
    stow_error rerr = {0};
    int rc = STOW_OK;
    int nsrc = (env_secret != NULL && env_secret[0] != '\0') +
               (signing_key_file != NULL && signing_key_file[0] != '\0') +
               (verify_key_file != NULL && verify_key_file[0] != '\0');

    *out = NULL;
    stow_buf_init(&text, STOW_SIGN_KEY_FILE_MAX);
    if (nsrc == 0)
        goto done;
    if (nsrc > 1) {
        rc = stow_error_set(err, STOW_EUSAGE,
                            "set one of STOWAGE_SIGNING_KEY, signing_key_file and "
                            "verify_key_file, not several");
        goto done;
    }
    if ((s = calloc(1, sizeof(*s))) == NULL) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    if (env_secret != NULL && env_secret[0] != '\0') {
        rc = set_secret(s, env_secret, strlen(env_secret), "STOWAGE_SIGNING_KEY", err);
        goto done;
    }
    const char *file = signing_key_file && signing_key_file[0] ? signing_key_file : verify_key_file;
    const char *what = file == signing_key_file ? "signing_key_file" : "verify_key_file";
    if (stow_read_file(&text, file, STOW_SIGN_KEY_FILE_MAX, &rerr) != STOW_OK) {
        rc = stow_error_set(err, STOW_EUSAGE, "%s: %s", what, rerr.msg);
        goto done;
    }
    const char *t = stow_buf_str(&text);
    size_t n = text.len;
    if (n >= 10 && memcmp(t, "-----BEGIN", 10) == 0) {
        rc = set_pem(s, t, n, file == signing_key_file, what, err);
    } else if (file == verify_key_file) {
        rc = stow_error_set(err, STOW_EUSAGE,
                            "verify_key_file: expected an Ed25519 public key in PEM (an HMAC "
                            "secret both signs and verifies: use signing_key_file)");
    } else {
        if (n > 0 && t[n - 1] == '\n')
            n--;
        if (n > 0 && t[n - 1] == '\r')
            n--;
        rc = set_secret(s, t, n, what, err);
    }
done:
    if (text.ptr != NULL)
        OPENSSL_cleanse(text.ptr, text.len);
    stow_buf_free(&text);
    if (rc == STOW_OK)
        *out = s;
    else
        stow_signer_free(s);
    return rc;
}

static int hmac(unsigned char out[32], const stow_signer *s, const char *name, const void *body,
                size_t len)
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
                           OSSL_PARAM_construct_end()};
    size_t outlen = 0;
    int ok = ctx != NULL && EVP_MAC_init(ctx, s->secret, s->secret_len, params) == 1 &&
             EVP_MAC_update(ctx, (const unsigned char *)DOMAIN, strlen(DOMAIN)) == 1 &&
             EVP_MAC_update(ctx, (const unsigned char *)name, strlen(name)) == 1 &&
             EVP_MAC_update(ctx, (const unsigned char *)"\n", 1) == 1 &&
             EVP_MAC_update(ctx, body, len) == 1 && EVP_MAC_final(ctx, out, &outlen, 32) == 1 &&
             outlen == 32;
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    return ok ? 0 : -1;
}

static int digest(unsigned char out[32], const char *name, const void *body, size_t len)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int n = 0;
    int ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(ctx, DOMAIN, strlen(DOMAIN)) == 1 &&
             EVP_DigestUpdate(ctx, name, strlen(name)) == 1 &&
             EVP_DigestUpdate(ctx, "\n", 1) == 1 && EVP_DigestUpdate(ctx, body, len) == 1 &&
             EVP_DigestFinal_ex(ctx, out, &n) == 1 && n == 32;
    EVP_MD_CTX_free(ctx);
    return ok ? 0 : -1;
}

static void to_hex(char *out, const unsigned char *p, size_t n)
{
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[p[i] >> 4];
        out[2 * i + 1] = hx[p[i] & 15];
    }
    out[2 * n] = '\0';
}

static int from_hex(unsigned char *out, size_t outsz, size_t *n, const char *hex)
{
    size_t l = strlen(hex);
    if (l % 2 != 0 || l / 2 > outsz)
        return -1;
    for (size_t i = 0; i < l; i++) {
        char c = hex[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (v < 0)
            return -1;
        if (i % 2 == 0)
            out[i / 2] = (unsigned char)(v << 4);
        else
            out[i / 2] |= (unsigned char)v;
    }
    *n = l / 2;
    return 0;
}

int stow_signer_sign(const stow_signer *s, char *out, size_t outsz, const char *name,
                     const void *body, size_t len, stow_error *err)
{
    unsigned char sig[64], d[32];
    size_t siglen = sizeof(sig);
    if (!s->can_sign)
        return stow_error_set(err, STOW_EUSAGE, "a verify-only key cannot sign");
    if (outsz < STOW_SIGN_HEX_MAX)
        return stow_error_set(err, STOW_ERR, "signature buffer too small");
    if (!s->ed25519) {
        if (hmac(sig, s, name, body, len) != 0)
            return stow_error_set(err, STOW_ERR, "HMAC-SHA256 failed");
        siglen = 32;
    } else {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        int ok = ctx != NULL && digest(d, name, body, len) == 0 &&
                 EVP_DigestSignInit(ctx, NULL, NULL, NULL, s->pkey) == 1 &&
                 EVP_DigestSign(ctx, sig, &siglen, d, sizeof(d)) == 1 && siglen == 64;
        EVP_MD_CTX_free(ctx);
        if (!ok)
            return stow_error_set(err, STOW_ERR, "Ed25519 signing failed");
    }
    to_hex(out, sig, siglen);
    return STOW_OK;
}

int stow_signer_verify(const stow_signer *s, const char *alg, const char *sighex, const char *name,
                       const void *body, size_t len, stow_error *err)
{
    unsigned char sig[64], want[32], d[32];
    size_t n = 0;
    if (strcmp(alg, stow_signer_alg(s)) != 0)
        return stow_error_set(err, STOW_ECORRUPT, "signed with %s, but the key is %s", alg,
                              stow_signer_alg(s));
    if (from_hex(sig, sizeof(sig), &n, sighex) != 0)
        return stow_error_set(err, STOW_ECORRUPT, "the signature is not hex of a valid length");
    if (!s->ed25519) {
        if (hmac(want, s, name, body, len) != 0)
            return stow_error_set(err, STOW_ERR, "HMAC-SHA256 failed");
        if (n != sizeof(want) || CRYPTO_memcmp(sig, want, sizeof(want)) != 0)
            return stow_error_set(err, STOW_ECORRUPT, "the HMAC-SHA256 signature does not match");
        return STOW_OK;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx != NULL && n == 64 && digest(d, name, body, len) == 0 &&
             EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, s->pkey) == 1 &&
             EVP_DigestVerify(ctx, sig, n, d, sizeof(d)) == 1;
    EVP_MD_CTX_free(ctx);
    return ok ? STOW_OK
              : stow_error_set(err, STOW_ECORRUPT, "the Ed25519 signature does not verify");
}
