/* Signed cache entries (docs/TRUST.md): a key that authenticates manifests, and through the
 * sha256 every manifest pins, every layer of an entry.
 *
 *   STOWAGE_SIGNING_KEY (environment only, never a flag: ps shows flags) - an HMAC-SHA256 secret
 *   signing_key_file - an HMAC secret (the file's bytes, one trailing newline dropped), or an
 *                      Ed25519 private key in PEM: signs, and verifies
 *   verify_key_file  - an Ed25519 public key in PEM: verifies only (jobs that must not sign)
 *
 * The signed message is "stowage-manifest-v1\n" <object name> "\n" <manifest bytes>: the name
 * binds the scope and key, so a signed entry copied to another scope or key does not verify.
 * HMAC-SHA256 runs over the message itself; Ed25519 signs the message's SHA-256 (32 bytes). */
#ifndef STOW_SIGN_H
#define STOW_SIGN_H

#include <stddef.h>

#include "error.h"

#define STOW_SIGN_ALG_MAX 32
#define STOW_SIGN_HEX_MAX 129 /* an Ed25519 signature in hex, with its NUL */
#define STOW_SIGN_MIN_SECRET 16
#define STOW_SIGN_KEY_FILE_MAX 65536

typedef struct stow_signer stow_signer;

/* *out is NULL when no key is configured (then nothing is signed or verified). STOW_EUSAGE for
 * a key that cannot be used: unreadable file, secret shorter than STOW_SIGN_MIN_SECRET bytes,
 * a PEM key that is not Ed25519, more than one key source. The message never shows key bytes. */
int stow_signer_load(stow_signer **out, const char *env_secret, const char *signing_key_file,
                     const char *verify_key_file, stow_error *err);
void stow_signer_free(stow_signer *s);

int stow_signer_can_sign(const stow_signer *s);
const char *stow_signer_alg(const stow_signer *s); /* "hmac-sha256" or "ed25519" */

/* The signature over (name, body) in lowercase hex, NUL-terminated, in out
 * (STOW_SIGN_HEX_MAX bytes). */
int stow_signer_sign(const stow_signer *s, char *out, size_t outsz, const char *name,
                     const void *body, size_t len, stow_error *err);
/* STOW_OK when sighex is alg's signature over (name, body) under this key; else STOW_ECORRUPT
 * with the reason. Comparison in constant time (CRYPTO_memcmp). */
int stow_signer_verify(const stow_signer *s, const char *alg, const char *sighex, const char *name,
                       const void *body, size_t len, stow_error *err);

#endif
