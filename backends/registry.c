/* Scheme -> ops registry and convenience wrappers shared by all backends. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "paths.h"
#include "backend.h"

typedef struct {
    const char *scheme;
    const stow_backend_ops *ops;
} scheme_entry;

static const scheme_entry schemes[] = {
    {"file", &stow_backend_file_ops},
    {"http", &stow_backend_http_ops},
    {"https", &stow_backend_http_ops},
    {"s3", &stow_backend_s3_ops},
};

int stow_backend_open(stow_backend **out, const stow_backend_opts *opts, stow_error *err)
{
    *out = NULL;
    if (opts == NULL || opts->url == NULL || opts->url[0] == '\0')
        return stow_error_set(err, STOW_EUSAGE, "no store URL configured");
    const char *sep = strstr(opts->url, "://");
    if (sep == NULL)
        return stow_error_set(
            err, STOW_EUSAGE,
            "store URL \"%s\" has no scheme (use file://, s3://, http:// or https://)", opts->url);
    size_t n = (size_t)(sep - opts->url);
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        if (strlen(schemes[i].scheme) == n && strncasecmp(schemes[i].scheme, opts->url, n) == 0) {
            const stow_backend_ops *ops = schemes[i].ops;
            if (ops->version != STOW_BACKEND_VERSION)
                return stow_error_set(err, STOW_ERR,
                                      "backend %s has interface version %d, expected %d",
                                      ops->scheme, ops->version, STOW_BACKEND_VERSION);
            return ops->open(out, opts, err);
        }
    }
    return stow_error_set(
        err, STOW_EUSAGE,
        "store URL scheme \"%.*s\" is not supported (use file://, s3://, http:// or https://)",
        (int)n, opts->url);
}

void stow_backend_free(stow_backend *b)
{
    if (b != NULL)
        b->ops->free(b);
}

int stow_backend_get(stow_backend *b, const char *name, uint64_t offset, uint64_t length,
                     stow_sink_fn sink, void *ud, stow_error *err)
{
    return b->ops->get(b, name, offset, length, sink, ud, err);
}

int stow_backend_head(stow_backend *b, const char *name, stow_object_info *info, stow_error *err)
{
    stow_object_info tmp;
    return b->ops->head(b, name, info ? info : &tmp, err);
}

int stow_backend_del(stow_backend *b, const char *name, stow_error *err)
{
    return b->ops->del(b, name, err);
}

int stow_backend_can_list(const stow_backend *b) { return b->ops->list != NULL; }

int stow_backend_list(stow_backend *b, const char *prefix, stow_list_fn fn, void *ud,
                      stow_error *err)
{
    if (b->ops->list == NULL)
        return stow_error_set(err, STOW_ERR, "the %s store cannot list objects", b->ops->scheme);
    return b->ops->list(b, prefix, fn, ud, err);
}

int stow_backend_put_buffer(stow_backend *b, const char *name, const void *buf, size_t len,
                            unsigned flags, stow_error *err)
{
    stow_put *p = NULL;
    int rc = b->ops->put_begin(&p, b, name, (int64_t)len, flags, err);
    if (rc != STOW_OK)
        return rc;
    if (len > 0) {
        rc = b->ops->put_write(p, buf, len, err);
        if (rc != STOW_OK) {
            b->ops->put_abort(p);
            return rc;
        }
    }
    return b->ops->put_commit(p, err);
}

typedef struct {
    stow_buf buf;
    int too_big;
} membuf;

static int membuf_sink(void *ud, const void *data, size_t len)
{
    membuf *m = ud;
    if (len > m->buf.max - m->buf.len) {
        m->too_big = 1;
        return -1;
    }
    return stow_buf_add(&m->buf, data, len, NULL) == STOW_OK ? 0 : -1;
}

int stow_backend_get_buffer(char **out, size_t *outlen, stow_backend *b, const char *name,
                            size_t max, stow_error *err)
{
    membuf m;
    memset(&m, 0, sizeof(m));
    stow_buf_init(&m.buf, max);
    *out = NULL;
    if (outlen)
        *outlen = 0;
    int rc = b->ops->get(b, name, 0, 0, membuf_sink, &m, err);
    if (m.too_big) {
        stow_buf_free(&m.buf);
        return stow_error_set(err, STOW_ECORRUPT, "object %s is larger than the %zu-byte limit",
                              name, max);
    }
    if (rc != STOW_OK) {
        stow_buf_free(&m.buf);
        return rc;
    }
    size_t len = 0;
    char *p = stow_buf_take(&m.buf, &len);
    if (p == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    *out = p;
    if (outlen)
        *outlen = len;
    return STOW_OK;
}

int stow_backend_name_ok(const char *name)
{
    /* A safe relative path (no empty, "." or ".." segment), at most 1024 bytes, of
     * [A-Za-z0-9._-] and '/'. */
    if (name == NULL || strlen(name) > 1024 || !stow_path_rel_ok(name))
        return 0;
    return name[strspn(name,
                       "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-/")] ==
           '\0';
}
