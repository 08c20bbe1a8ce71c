/* The storage backend interface: a versioned table of operations on named objects.
 *
 * Backends know nothing about caches, keys or manifests: they store byte streams under
 * names like "manifests/default/k.json" or "layers/<id>.tar.zst", relative to the prefix
 * in the store URL. Names use '/' as separator and are validated by the caller
 * (stow_backend_name_ok) before they reach a backend.
 *
 * Every operation returns STOW_OK, STOW_ENOTFOUND (the object does not exist: a miss, not a
 * failure), STOW_EAUTH, STOW_ETIMEOUT, STOW_EEXIST (conditional put lost) or STOW_ERR, with
 * the message in err. Operations may be called from several threads at once on one backend.
 */
#ifndef STOW_BACKEND_H
#define STOW_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define STOW_BACKEND_VERSION 1

/* Receives body bytes of a get, in order. Return 0 to continue, non-zero to abort the get
 * (the get then returns STOW_ERR unless the callback set err itself). */
typedef int (*stow_sink_fn)(void *ud, const void *buf, size_t len);

typedef struct stow_object_info {
    uint64_t size;
    int64_t mtime; /* seconds since the epoch, 0 if unknown */
} stow_object_info;

/* Called once per object by list; name is relative to the store prefix. Return non-zero
 * to stop listing (list then returns STOW_OK). */
typedef int (*stow_list_fn)(void *ud, const char *name, const stow_object_info *info);

/* Options shared by all backends; a backend ignores what does not apply to it. */
typedef struct stow_backend_opts {
    const char *url;         /* file:///dir, s3://bucket/prefix, https://host/prefix */
    const char *endpoint;    /* S3-compatible endpoint, e.g. http://127.0.0.1:9000 */
    const char *region;      /* S3 region, default us-east-1 */
    int path_style;          /* S3 path-style addressing: 1 yes, 0 virtual-hosted, -1 auto */
    int verify_tls;          /* 1 (default) verify peers, 0 only by explicit opt-out */
    const char *ca_bundle;   /* CA bundle file, NULL for the system default */
    long connect_timeout_ms; /* 0 = default */
    long low_speed_limit;    /* bytes/s a transfer must keep up; 0 = default (1024) */
    long
        low_speed_timeout_s; /* abort a transfer below low_speed_limit this long; 0 = default (30) */
    long deadline_s;         /* an operation, retries included, gives up after this long
                                * without progress; 0 = default (60) */
    int max_retries;         /* retries for retryable failures; <0 = default */
    int parallel;            /* parallel connections per transfer; 0 = default */
    const char *token_env;   /* HTTP: name of the env var holding a bearer token */
    const char *sts_endpoint; /* S3: STS endpoint for assumed roles (after the AWS_ENDPOINT_URL*) */
    const char *const
        *headers; /* HTTP: extra "Name: value" headers, NULL-terminated, may be NULL */
} stow_backend_opts;

/* Flags for put. */
#define STOW_PUT_IF_ABSENT 0x1u /* fail with STOW_EEXIST if the object exists (best effort) */

typedef struct stow_backend stow_backend;
typedef struct stow_put stow_put; /* an upload in progress, owned by the backend */

typedef struct stow_backend_ops {
    int version; /* STOW_BACKEND_VERSION */
    const char *scheme;

    /* Constructor: parses opts->url (scheme already matched) and allocates *out. */
    int (*open)(stow_backend **out, const stow_backend_opts *opts, stow_error *err);

    /* Streams the object's bytes [offset, offset+length) to sink; length 0 = to the end. */
    int (*get)(stow_backend *b, const char *name, uint64_t offset, uint64_t length,
               stow_sink_fn sink, void *ud, stow_error *err);

    /* Streamed upload: begin, write any number of times, then commit or abort. Nothing is
     * visible under name before commit succeeds; abort leaves nothing behind.
     * size_hint is the total size if known, or -1. */
    int (*put_begin)(stow_put **out, stow_backend *b, const char *name, int64_t size_hint,
                     unsigned flags, stow_error *err);
    int (*put_write)(stow_put *p, const void *buf, size_t len, stow_error *err);
    int (*put_commit)(stow_put *p, stow_error *err); /* frees p, whatever the result */
    void (*put_abort)(stow_put *p);                  /* frees p; accepts NULL */

    int (*head)(stow_backend *b, const char *name, stow_object_info *info, stow_error *err);
    int (*del)(stow_backend *b, const char *name, stow_error *err); /* missing = STOW_OK */

    /* Optional (NULL when the store cannot list): every object whose name starts with prefix. */
    int (*list)(stow_backend *b, const char *prefix, stow_list_fn fn, void *ud, stow_error *err);

    void (*free)(stow_backend *b); /* accepts NULL via stow_backend_free */
} stow_backend_ops;

/* Every backend struct starts with this, so a stow_backend * can be cast to the backend's
 * own struct inside its implementation. */
struct stow_backend {
    const stow_backend_ops *ops;
};

/* Scheme registry: picks the ops table by the URL's scheme ("file", "s3", "http", "https"). */
int stow_backend_open(stow_backend **out, const stow_backend_opts *opts, stow_error *err);
void stow_backend_free(stow_backend *b);

/* Convenience wrappers over the ops table. */
int stow_backend_get(stow_backend *b, const char *name, uint64_t offset, uint64_t length,
                     stow_sink_fn sink, void *ud, stow_error *err);
int stow_backend_head(stow_backend *b, const char *name, stow_object_info *info, stow_error *err);
int stow_backend_del(stow_backend *b, const char *name, stow_error *err);
int stow_backend_can_list(const stow_backend *b);
int stow_backend_list(stow_backend *b, const char *prefix, stow_list_fn fn, void *ud,
                      stow_error *err);

/* Puts a whole in-memory buffer (manifests, refs). */
int stow_backend_put_buffer(stow_backend *b, const char *name, const void *buf, size_t len,
                            unsigned flags, stow_error *err);

/* Gets a whole object into a malloc'd, NUL-terminated buffer of at most max bytes;
 * larger objects fail with STOW_ECORRUPT. */
int stow_backend_get_buffer(char **out, size_t *outlen, stow_backend *b, const char *name,
                            size_t max, stow_error *err);

/* 1 when name is a safe object name: non-empty, at most 1024 bytes, segments separated by
 * single '/', no "." or ".." segment, no leading '/', only [A-Za-z0-9._-] and '/'. */
int stow_backend_name_ok(const char *name);

/* Backends provided by this build. */
extern const stow_backend_ops stow_backend_file_ops;
extern const stow_backend_ops stow_backend_http_ops;
extern const stow_backend_ops stow_backend_s3_ops;

#endif
