/* S3 store (s3://bucket[/prefix]) behind backend.h: the ops table is stow_backend_s3_ops.
 * This header only exposes the pure parts of it, for unit tests: where requests go
 * (addressing) and how big multipart parts are.
 *
 * Store URL: s3://BUCKET[/PREFIX]. PREFIX is percent-decoded ("my%20cache" is the key prefix
 * "my cache/", a literal '%' is written %25); it must not have empty, "." or ".." segments or
 * control characters. Object names go below it as PREFIX/NAME.
 *
 * Addressing: with an endpoint (http[s]://host[:port][/path]) requests go there, path-style
 * (/BUCKET/KEY) unless path_style is 0 (BUCKET.host/KEY). Without an endpoint they go to AWS,
 * https://BUCKET.s3.REGION.amazonaws.com/KEY, or path-style https://s3.REGION.amazonaws.com/
 * BUCKET/KEY when path_style is 1 or the bucket name is not DNS-compatible (dots, capitals,
 * underscores: virtual hosts with dots break TLS name checks). Endpoint: the argument (the
 * endpoint option), else AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL, as the AWS SDKs read
 * them; without any, AWS_USE_FIPS_ENDPOINT=true and AWS_USE_DUALSTACK_ENDPOINT=true pick
 * s3-fips.REGION / s3.dualstack.REGION / s3-fips.dualstack.REGION. Region: the argument,
 * else AWS_REGION, else AWS_DEFAULT_REGION, else us-east-1.
 */
#ifndef STOW_S3_H
#define STOW_S3_H

#include <stdint.h>

#include "error.h"

#define STOW_S3_BUCKET_MAX 255
#define STOW_S3_PREFIX_MAX 512 /* decoded key prefix including its trailing '/' */
#define STOW_S3_ORIGIN_MAX 1024
#define STOW_S3_BASE_PATH_MAX 1024
#define STOW_S3_REGION_MAX 64

#define STOW_S3_PART_DEFAULT (8u * 1024u * 1024u)
#define STOW_S3_PART_MIN (5u * 1024u * 1024u) /* S3's minimum for all parts but the last */
#define STOW_S3_PART_MAX ((uint64_t)5 * 1024 * 1024 * 1024)
#define STOW_S3_MAX_PARTS 10000u
/* Part buffers of all uploads of one backend at once (a put holds the part it fills and the
 * parts uploading): with the default parallel 4, three 5 MiB parts. */
#define STOW_S3_UPLOAD_BUDGET (16u * 1024u * 1024u)
#define STOW_S3_PART_GROWTH_EVERY 2000u /* parts per doubling when the size is unknown */

typedef struct stow_s3_location {
    char bucket[STOW_S3_BUCKET_MAX + 1];
    char prefix[STOW_S3_PREFIX_MAX + 1];   /* decoded: "" or "ci/cache/" */
    char origin[STOW_S3_ORIGIN_MAX];       /* "https://bucket.s3.eu-west-1.amazonaws.com" */
    char host[STOW_S3_ORIGIN_MAX];         /* Host header: "127.0.0.1:9000" */
    char base_path[STOW_S3_BASE_PATH_MAX]; /* encoded, no trailing '/': "", "/bucket" */
    char region[STOW_S3_REGION_MAX];
    int path_style; /* what was chosen: 1 path-style, 0 virtual */
    /* where the endpoint and region came from, for stowage doctor and debug logs (static
     * strings): "option", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS" (none);
     * "option", "AWS_REGION", "AWS_DEFAULT_REGION", "default" */
    const char *endpoint_from;
    const char *region_from;
} stow_s3_location;

/* Parses the store URL and decides the addressing. endpoint and region may be NULL;
 * path_style is 1, 0 or -1 (auto). STOW_EUSAGE with the bad part named. */
int stow_s3_location_parse(stow_s3_location *out, const char *url, const char *endpoint,
                           const char *region, int path_style, stow_error *err);

/* For stowage doctor: the addressing of an open S3 backend, where its credentials came from
 * and its access key id masked to the last 4 characters (never the secret or the token).
 * STOW_EUSAGE when b is not an S3 backend. */
struct stow_backend;
int stow_s3_describe(stow_s3_location *loc, char *source, size_t source_cap, char *key_hint,
                     size_t hint_cap, const struct stow_backend *b);

/* Size of part number part (1-based) of a multipart upload: base (raised so that size_hint
 * bytes fit in STOW_S3_MAX_PARTS parts when size_hint > 0), doubled every
 * STOW_S3_PART_GROWTH_EVERY parts and capped at STOW_S3_PART_MAX. With the 8 MiB default and
 * an unknown size, 10000 parts hold 484 GiB. */
uint64_t stow_s3_part_size(uint64_t base, int64_t size_hint, unsigned part);

/* How uploads spend a budget of part-buffer memory: *part_size, the base part size (whole MiB,
 * STOW_S3_PART_MIN..STOW_S3_PART_DEFAULT), and *threads, the parts one upload sends at once
 * (1..parallel), so that threads + 1 buffers (one being filled) fit in budget whenever
 * 5 MiB parts allow it. Smaller parts before fewer connections. */
void stow_s3_upload_plan(uint64_t *part_size, int *threads, uint64_t budget, int parallel);

/* The most part-buffer memory an S3 backend held at once (0 for other backends): for tests. */
uint64_t stow_s3_upload_mem_peak(const struct stow_backend *b);

#endif
