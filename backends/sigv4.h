/* AWS Signature Version 4 for S3 (header-based auth): a pure function from request fields to
 * the header lines that authenticate the request. No I/O, no clock, no global state.
 *
 * S3 rules, which differ from other AWS services:
 *   - the path is signed exactly as sent: each segment URI-encoded once by the caller
 *     (stow_sigv4_uri_encode with encode_slash = 0 on the object key), never normalised;
 *   - x-amz-content-sha256 is always sent and signed: the hex SHA-256 of the body, or
 *     STOW_SIGV4_UNSIGNED_PAYLOAD for a streamed body;
 *   - the query is split on '&' and '=', each key and value is decoded and URI-encoded again
 *     (A-Z a-z 0-9 - _ . ~ kept, every other byte %XX upper-case), sorted by key then value,
 *     with "key=" for a parameter without value ("?lifecycle" signs "lifecycle=");
 *   - x-amz-security-token is sent and signed when a session token is present.
 */
#ifndef STOW_SIGV4_H
#define STOW_SIGV4_H

#include <stddef.h>
#include <time.h>

#include "error.h"

#define STOW_SIGV4_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"
/* SHA-256 of the empty body, for GET / HEAD / DELETE. */
#define STOW_SIGV4_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

#define STOW_SIGV4_AMZ_DATE_SIZE 17     /* "YYYYMMDDTHHMMSSZ" + NUL */
#define STOW_SIGV4_HASH_HEX_SIZE 65     /* 64 hex digits + NUL */
#define STOW_SIGV4_MAX_HEADERS 32       /* extra headers per request */
#define STOW_SIGV4_MAX_QUERY_PARAMS 128 /* query parameters per request */
#define STOW_SIGV4_QUERY_MAX 8192       /* bytes of query string as sent */
#define STOW_SIGV4_PATH_MAX 4096        /* bytes of encoded path */
#define STOW_SIGV4_CANONICAL_MAX 65536  /* bytes of canonical request */
#define STOW_SIGV4_AUTH_LINE_MAX 4096   /* "Authorization: ..." line */
#define STOW_SIGV4_TOKEN_LINE_MAX 8192  /* "x-amz-security-token: ..." line */

/* Everything that is signed. All strings are borrowed; none is modified. */
typedef struct stow_sigv4_request {
    const char *method;         /* "GET", "PUT", "HEAD", "DELETE", "POST" */
    const char *host;           /* Host header exactly as curl sends it: "bucket.s3.amazonaws.com",
                                * "127.0.0.1:9000" (port only when not the scheme's default) */
    const char *path;           /* path as sent, already URI-encoded ("/bucket/a%20b"); NULL or ""
                                * means "/". Must start with '/' and contain only unreserved
                                * characters, '/' and %XX with upper-case hex. */
    const char *query;          /* query string as sent, without '?'; NULL or "" for none.
                                * A literal '+' is refused (ambiguous): send %2B or %20. */
    const char *const *headers; /* extra headers to sign, "Name: value", NULL-terminated, may be
                                 * NULL. Must not repeat host, x-amz-date, x-amz-content-sha256
                                 * or x-amz-security-token, which are added here. */
    const char *payload_hash;   /* 64 lower-case hex digits or STOW_SIGV4_UNSIGNED_PAYLOAD */
    const char *amz_date;       /* "YYYYMMDDTHHMMSSZ" (UTC), see stow_sigv4_amz_date */
    const char *region;         /* "us-east-1" */
    const char *service;        /* "s3" */
    const char *access_key;
    const char *secret_key;
    const char *session_token; /* NULL or "" when the credentials have none */
} stow_sigv4_request;

/* Header lines ready for curl_slist_append. security_token is "" when there is no token
 * (do not append it then). */
typedef struct stow_sigv4_headers {
    char authorization[STOW_SIGV4_AUTH_LINE_MAX]; /* "Authorization: AWS4-HMAC-SHA256 ..." */
    char amz_date[48];                            /* "x-amz-date: 20130524T000000Z" */
    char content_sha256[96];                      /* "x-amz-content-sha256: <hash>" */
    char security_token[STOW_SIGV4_TOKEN_LINE_MAX];
    char signature[STOW_SIGV4_HASH_HEX_SIZE]; /* the bare signature, for tests and logs */
} stow_sigv4_headers;

/* Signs req. Returns 0, or STOW_EUSAGE when a field is malformed or a buffer cap is exceeded
 * (the message names the field; it never contains the secret or the token). */
int stow_sigv4_sign(stow_sigv4_headers *out, const stow_sigv4_request *req, stow_error *err);

/* For debugging and tests: the canonical request and the string to sign that
 * stow_sigv4_sign would use. STOW_EUSAGE if out is too small. */
int stow_sigv4_canonical_request(char *out, size_t cap, const stow_sigv4_request *req,
                                 stow_error *err);
int stow_sigv4_string_to_sign(char *out, size_t cap, const stow_sigv4_request *req,
                              stow_error *err);

/* URI-encodes in per the AWS rules: A-Z a-z 0-9 - _ . ~ are kept, '/' is kept unless
 * encode_slash, every other byte (including each byte of UTF-8 sequences) becomes %XX with
 * upper-case hex. Use encode_slash = 0 for object keys in paths, 1 for query keys and values.
 * Returns 0, or STOW_ERR when the result does not fit in cap bytes (out is then ""). */
int stow_sigv4_uri_encode(char *out, size_t cap, const char *in, int encode_slash);

/* Formats t (UTC) as "YYYYMMDDTHHMMSSZ". Returns 0, or STOW_ERR if t cannot be represented. */
int stow_sigv4_amz_date(char out[STOW_SIGV4_AMZ_DATE_SIZE], time_t t);

/* Lower-case hex SHA-256 of a buffer, for req.payload_hash. */
void stow_sigv4_payload_hash(char out[STOW_SIGV4_HASH_HEX_SIZE], const void *buf, size_t len);

#endif
