/* Parsers of the XML answers of S3: <Error> bodies, CreateMultipartUpload's UploadId and
 * ListObjectsV2 pages. Built on expat, namespace-agnostic (elements are matched by local
 * name and depth, so AWS, MinIO, moto and s3rver answers all parse).
 *
 * Their input comes from the network and may be hostile: every function accepts any bytes
 * of any length (including NUL bytes and non-XML), never reads past len, allocates at most
 * one expat parser (bounded by the caps below), and reports malformed input as a value.
 * They are pure: no I/O, no globals, safe to call from several threads. A fuzz harness may
 * call them directly. */
#ifndef STOW_S3_XML_H
#define STOW_S3_XML_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define STOW_S3_KEY_MAX 1024 /* S3's limit on a key, in bytes */
#define STOW_S3_UPLOAD_ID_MAX 1024
#define STOW_S3_LIST_TOKEN_MAX 4096 /* continuation token */
#define STOW_S3_XML_TEXT_MAX 4096   /* text of one element; longer is malformed */
#define STOW_S3_XML_DEPTH_MAX 16    /* deeper nesting is malformed */
#define STOW_S3_XML_NAME_MAX 64     /* longer element names are truncated */
#define STOW_S3_LIST_PAGE_KEYS_MAX 100000
#define STOW_S3_LIST_PAGE_BYTES_MAX (64 * 1024 * 1024)

/* The fields of an <Error> answer, each "" when absent, truncated to its array, with
 * control characters replaced by spaces (they go into one-line messages). */
typedef struct stow_s3_error_info {
    char root[STOW_S3_XML_NAME_MAX]; /* local name of the root element: "Error", ... */
    char code[64];
    char message[256];
    char bucket[256];
    char region[64];
    char endpoint[256];
    char actual_size[32]; /* InvalidRange: the object's size */
} stow_s3_error_info;

/* Parses an error body (or any answer whose root and <Error> children matter, such as a
 * CompleteMultipartUpload answer that may be "200 <Error>"). Always fills out. Returns 0, or
 * -1 when the body is not well-formed XML or breaks a cap; out then holds what was read
 * before the fault. An empty body returns -1 with every field "". */
int stow_s3_xml_error(stow_s3_error_info *out, const char *body, size_t len);

/* Parses a CreateMultipartUpload answer: copies the <UploadId> child of the root into out
 * (NUL-terminated). Returns 0, or -1 when the body is malformed, has no UploadId, or it is
 * empty or longer than STOW_S3_UPLOAD_ID_MAX bytes (out is then ""). */
int stow_s3_xml_upload_id(char out[STOW_S3_UPLOAD_ID_MAX + 1], const char *body, size_t len);

/* A ListObjectsV2 page (root <ListBucketResult>), parsed as its bytes arrive. */
typedef struct stow_s3_list_parser stow_s3_list_parser;

/* Called at the end of each <Contents> with its <Key> (NUL-free, at most STOW_S3_KEY_MAX
 * bytes, possibly ""), <Size> and <LastModified> in seconds since the epoch (0 when absent or not a
 * time). Return 0 to go on, non-zero to stop the page. */
typedef int (*stow_s3_list_key_fn)(void *ud, const char *key, uint64_t size, int64_t mtime);

/* STOW_OK, or STOW_ERR when out of memory. */
int stow_s3_list_parser_new(stow_s3_list_parser **out, stow_s3_list_key_fn fn, void *ud);
/* Feeds the next len bytes; final = 1 with the last piece (len may be 0). Returns 0 while
 * the page is fine, 1 once fn asked to stop (later feeds return 1 at once), -1 once the page
 * is bad: malformed XML, a cap broken (more than STOW_S3_LIST_PAGE_BYTES_MAX bytes or
 * STOW_S3_LIST_PAGE_KEYS_MAX keys), another root, a <Contents> without a usable <Key> or
 * with a <Size> that is not a decimal number; stow_s3_list_parser_error says which. */
int stow_s3_list_parser_feed(stow_s3_list_parser *p, const char *buf, size_t len, int final);
/* Why the page is bad: "" while it is not. */
const char *stow_s3_list_parser_error(const stow_s3_list_parser *p);
/* After a final feed that returned 0: 1 when <IsTruncated> was "true". */
int stow_s3_list_parser_truncated(const stow_s3_list_parser *p);
/* After a final feed that returned 0: the <NextContinuationToken>, "" when absent, NULL
 * when present but empty or longer than STOW_S3_LIST_TOKEN_MAX. */
const char *stow_s3_list_parser_token(const stow_s3_list_parser *p);
void stow_s3_list_parser_free(stow_s3_list_parser *p); /* accepts NULL */

/* A whole page in one buffer: as new + feed(final) + free. Returns 0, 1 (fn stopped) or -1
 * with the reason in err (STOW_ECORRUPT). truncated and token (token_cap bytes, may be
 * NULL/0) receive IsTruncated and the continuation token ("" if absent or unusable). */
int stow_s3_xml_list(const char *body, size_t len, stow_s3_list_key_fn fn, void *ud, int *truncated,
                     char *token, size_t token_cap, stow_error *err);

#endif
