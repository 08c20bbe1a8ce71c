#include "hash.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct stow_sha256 {
    EVP_MD_CTX *ctx;
};

stow_sha256 *stow_sha256_new(void)
{
    stow_sha256 *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    h->ctx = EVP_MD_CTX_new();
    if (h->ctx == NULL || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
        stow_sha256_free(h);
        return NULL;
    }
    return h;
}

void stow_sha256_update(stow_sha256 *h, const void *buf, size_t len)
{
    EVP_DigestUpdate(h->ctx, buf, len);
}

void stow_sha256_final(stow_sha256 *h, uint8_t out[STOW_SHA256_LEN])
{
    unsigned int n = 0;
    EVP_DigestFinal_ex(h->ctx, out, &n);
    EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL);
}

void stow_sha256_free(stow_sha256 *h)
{
    if (h == NULL)
        return;
    EVP_MD_CTX_free(h->ctx);
    free(h);
}

void stow_sha256_buf(uint8_t out[STOW_SHA256_LEN], const void *buf, size_t len)
{
    unsigned int n = 0;
    EVP_Digest(buf, len, out, &n, EVP_sha256(), NULL);
}

int stow_sha256_file(uint8_t out[STOW_SHA256_LEN], const char *path, stow_error *err)
{
    int rc = STOW_ERR;
    int fd = -1;
    char *buf = NULL;
    stow_sha256 *h = NULL;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        stow_error_set(err, STOW_ERR, "%s: %s", path, strerror(errno));
        goto done;
    }
    buf = malloc(1 << 16);
    h = stow_sha256_new();
    if (buf == NULL || h == NULL) {
        stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    for (;;) {
        ssize_t n = read(fd, buf, 1 << 16);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            stow_error_set(err, STOW_ERR, "%s: %s", path, strerror(errno));
            goto done;
        }
        if (n == 0)
            break;
        stow_sha256_update(h, buf, (size_t)n);
    }
    stow_sha256_final(h, out);
    rc = STOW_OK;
done:
    stow_sha256_free(h);
    free(buf);
    if (fd >= 0)
        close(fd);
    return rc;
}

void stow_hex(char *out, const uint8_t *bytes, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * len] = '\0';
}

int stow_random_hex(char *out, size_t nbytes)
{
    uint8_t buf[64];
    if (nbytes > sizeof(buf) || RAND_bytes(buf, (int)nbytes) != 1)
        return STOW_ERR;
    stow_hex(out, buf, nbytes);
    return STOW_OK;
}
