/* Internals shared by the files of the S3 backend (s3.c: backend, credentials, signed
 * requests, get/head/delete/list and the ops table; s3_addr.c: the store URL and the
 * addressing; s3_multipart.c: put, single or multipart; s3_xml.c: the XML answers). Not for
 * use outside backends/s3*.c. */
#ifndef STOW_S3_INT_H
#define STOW_S3_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "backend.h"
#include "httpc.h"
#include "s3.h"
#include "s3_creds.h"
#include "s3_sts.h"
#include "s3_xml.h"
#include "sigv4.h"

#include "util.h"

#define S3_KEY_MAX STOW_S3_KEY_MAX
#define S3_URL_MAX (STOW_S3_ORIGIN_MAX + STOW_SIGV4_PATH_MAX + STOW_SIGV4_QUERY_MAX + 2)
#define S3_DESC_MAX (STOW_S3_BUCKET_MAX + S3_KEY_MAX + 64)
#define S3_ANSWER_MAX (1024 * 1024) /* create/complete answers */
#define S3_UPLOAD_ID_MAX STOW_S3_UPLOAD_ID_MAX
#define S3_TOKEN_MAX STOW_S3_LIST_TOKEN_MAX
#define S3_LIST_PAGES_MAX 1000000
#define S3_REFRESH_RETRY_S 30 /* between credential refreshes */
#define S3_COMPLETE_TRIES 3   /* a CompleteMultipartUpload answered "200 <Error>" */
#define S3_PARALLEL_DEFAULT 4
#define S3_MEM_POOL_MAX 64 /* part buffers kept for reuse, within the budget */

/* A part buffer: a mapping of cap bytes, len of them filled. */
typedef struct s3_part_buf {
    unsigned char *ptr;
    size_t len, cap;
} s3_part_buf;

/* The part buffers of all uploads of one backend (s3_mem.c). held counts buffers given out
 * and pooled; it stays within budget except for one oversized part held alone. */
typedef struct s3_mem {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint64_t budget, held, peak;
    s3_part_buf pool[S3_MEM_POOL_MAX];
    int npool;
} s3_mem;

typedef struct s3_backend {
    stow_backend base;
    stow_httpc *hc;
    stow_s3_location loc;
    char url_red[STOW_S3_BUCKET_MAX + STOW_S3_PREFIX_MAX + 16]; /* "s3://bucket/prefix" */
    int parallel;
    uint64_t part_base; /* from stow_s3_upload_plan */
    int put_threads;    /* part uploads at once per put, from stow_s3_upload_plan */
    s3_mem mem;
    pthread_mutex_t creds_lock;
    stow_s3_creds creds;
    char sts_endpoint[STOW_S3_STS_URL_MAX]; /* settings for the STS calls of the chain */
    char ca_bundle[4096];
    stow_s3_sts_opts sts;
    time_t next_refresh; /* no refresh before this, unless forced (ExpiredToken) */
    _Atomic int force_refresh;
    _Atomic int list_unencoded; /* the moto fallback, see the top of the file */
} s3_backend;

struct stow_put; /* below */

/* One logical request (all attempts, all parts of a parallel GET). */
typedef struct s3_call {
    s3_backend *b;
    char path[STOW_SIGV4_PATH_MAX];   /* as sent and signed */
    char query[STOW_SIGV4_QUERY_MAX]; /* as sent and signed, "" for none */
    char payload_hash[STOW_SIGV4_HASH_HEX_SIZE];
    const char *headers[4]; /* unsigned extra headers, NULL-terminated */
    char desc[S3_DESC_MAX]; /* "s3://bucket/key" for messages */
    _Atomic int *cancel;    /* fail the next attempt when set */
    _Atomic int refreshes;  /* credential refreshes forced by ExpiredToken */
    /* answer body of a non-GET request (collect = 1), reset before every attempt */
    int collect;
    char *body;
    size_t body_len;
    int body_over;
    /* the last error answer; only for calls that are never parallel (keep_error = 1) */
    int keep_error;
    stow_s3_error_info last;
    /* GET: the object size from a 416 InvalidRange answer, -1 if none */
    _Atomic int64_t range_size;
} s3_call;

/* s3_addr.c */
int s3_unreserved(unsigned char c);

/* s3.c: one logical request */
int s3_call_init(s3_call *c, s3_backend *b, const char *name, stow_error *err);
void s3_call_free(s3_call *c);
/* Runs the call once (with the transport's retries). */
int s3_call_perform(s3_call *c, stow_httpc_request *req, stow_httpc_result *res, int get,
                    stow_error *err);

/* s3_mem.c: part buffers within the backend's budget; s3_mem_get returns 0 or -1 (no memory) */
void s3_mem_init(s3_mem *m, uint64_t budget);
void s3_mem_destroy(s3_mem *m);
int s3_mem_get(s3_part_buf *out, s3_mem *m, size_t size);
void s3_mem_put(s3_mem *m, s3_part_buf *b);

/* s3_multipart.c: the put half of the ops table */
int s3_put_begin(stow_put **out, stow_backend *sb, const char *name, int64_t size_hint,
                 unsigned flags, stow_error *err);
int s3_put_write(stow_put *p, const void *buf, size_t len, stow_error *err);
int s3_put_commit(stow_put *p, stow_error *err);
void s3_put_abort(stow_put *p);

#endif
