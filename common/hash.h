/* SHA-256 on OpenSSL's EVP interface: streaming context, whole-file and hex helpers. */
#ifndef STOW_HASH_H
#define STOW_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define STOW_SHA256_LEN 32
#define STOW_SHA256_HEX_LEN 64

typedef struct stow_sha256 stow_sha256;

stow_sha256 *stow_sha256_new(void); /* NULL on allocation failure */
void stow_sha256_update(stow_sha256 *h, const void *buf, size_t len);
/* Writes the digest to out and resets h for reuse. */
void stow_sha256_final(stow_sha256 *h, uint8_t out[STOW_SHA256_LEN]);
void stow_sha256_free(stow_sha256 *h);

/* One-shot digest of a buffer. */
void stow_sha256_buf(uint8_t out[STOW_SHA256_LEN], const void *buf, size_t len);

/* Digest of a file's contents, read in chunks. */
int stow_sha256_file(uint8_t out[STOW_SHA256_LEN], const char *path, stow_error *err);

/* Lower-case hex of len bytes into out (2*len+1 bytes). */
void stow_hex(char *out, const uint8_t *bytes, size_t len);

/* nbytes random bytes from OpenSSL's CSPRNG as hex into out (2*nbytes+1). */
int stow_random_hex(char *out, size_t nbytes);

#endif
