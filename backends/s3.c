/* S3 store: objects are PREFIX/NAME in one bucket, spoken to over the shared transport
 * (httpc.h) with SigV4 (sigv4.h) and the AWS credential chain (s3_creds.h). See s3.h for
 * the URL and the addressing.
 *
 * Requests: GetObject (parallel ranged GETs and ranged resume are the transport's),
 * HeadObject, DeleteObject, ListObjectsV2 (pages followed through continuation tokens,
 * answers parsed with expat whatever their namespace), PutObject for objects smaller than
 * one part and multipart uploads otherwise. Every attempt is signed afresh in the
 * transport's prepare callback, so retries and resumed parts carry a current date, and
 * credentials that expire (instance metadata) are refreshed there before they run out.
 *
 * Uploads: put_write fills a part buffer. While everything fits in one part nothing is
 * sent; put_commit then sends one PutObject. When more data follows a full part, a
 * multipart upload is created and full parts go to a pool of opts->parallel threads while
 * the producer fills the next one; memory stays at parallel + 1 part buffers. Each part
 * is signed with the SHA-256 of its bytes (hashed on the worker, about 2 GB/s) rather than
 * UNSIGNED-PAYLOAD: the part is in memory anyway, and S3 then rejects a body damaged on
 * the way, which matters on plain-HTTP endpoints. Any failure, and put_abort, aborts the
 * upload (AbortMultipartUpload), so no parts are left behind to be billed; a server that
 * lacks it (s3rver) is logged at debug level.
 * STOW_PUT_IF_ABSENT sends If-None-Match: * on the PutObject or CompleteMultipartUpload;
 * 412 becomes STOW_EEXIST. Servers that ignore the header overwrite (best effort).
 *
 * Errors: the S3 error code from the answer's <Error> body is named in every message.
 * 404 NoSuchKey (or a HEAD 404) is a miss; 404 NoSuchBucket is an error naming the bucket;
 * 403 and the token/signature 400s are STOW_EAUTH, never a miss; 5xx, 429, RequestTimeout,
 * resets and timeouts are retried by the transport with backoff and jitter.
 *
 * Listing and moto: ListObjectsV2 is sent with the exact prefix, percent-encoded as SigV4
 * requires. moto_server with authentication on computes signatures over the query as it
 * re-creates it, so it refuses correct signatures of any query value with %XX in it (a '/'
 * in the prefix is enough). When a listing whose query has %XX is refused with
 * SignatureDoesNotMatch, this backend switches (for its lifetime, logged at debug level)
 * to listing with the longest leading part of the prefix that needs no encoding and
 * filtering the keys itself, stopping at the first key past the wanted range (S3 lists in
 * key order). AWS and other servers never take that path; with wrong credentials the
 * second listing is refused too and reported as the authentication error it is.
 */
#include "s3.h"

#include <errno.h>
#include <expat.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "buf.h"
#include "log.h"
#include "backend.h"
#include "httpc.h"
#include "s3_creds.h"
#include "sigv4.h"
#include "util.h"

#define S3_KEY_MAX 1024                  /* S3's limit on a key, in bytes */
#define S3_URL_MAX (STOW_S3_ORIGIN_MAX + STOW_SIGV4_PATH_MAX + STOW_SIGV4_QUERY_MAX + 2)
#define S3_DESC_MAX (STOW_S3_BUCKET_MAX + S3_KEY_MAX + 64)
#define S3_ANSWER_MAX (1024 * 1024)       /* create/complete answers */
#define S3_XML_TEXT_MAX 4096             /* text of one element */
#define S3_XML_DEPTH_MAX 16
#define S3_XML_NAME_MAX 64
#define S3_UPLOAD_ID_MAX 1024
#define S3_TOKEN_MAX 4096                /* continuation token */
#define S3_LIST_PAGE_BYTES_MAX (64 * 1024 * 1024)
#define S3_LIST_PAGE_KEYS_MAX 100000
#define S3_LIST_PAGES_MAX 1000000
#define S3_REFRESH_RETRY_S 30            /* between credential refreshes */
#define S3_SMALL_START (64 * 1024)       /* first allocation of a part buffer of unknown size */
#define S3_COMPLETE_TRIES 3              /* a CompleteMultipartUpload answered "200 <Error>" */
#define S3_PARALLEL_DEFAULT 4

/* ------------------------------------------------------------------------------------------
 * Location (s3.h)
 * ------------------------------------------------------------------------------------------ */

static int unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_' || c == '.' || c == '~';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes the URL's prefix into out ("" or ending in '/'); checks segments. */
static int parse_prefix(char *out, size_t cap, const char *in, const char *url_red,
                        stow_error *err)
{
    size_t n = 0;
    for (const char *p = in; *p; p++) {
        int c = (unsigned char)*p;
        if (c == '%') {
            int hi = hexval(p[1]), lo = hi < 0 ? -1 : hexval(p[2]);
            if (hi < 0 || lo < 0)
                return stow_error_set(err, STOW_EUSAGE,
                                      "store URL %s: bad %%-escape in the prefix (write a "
                                      "literal %% as %%25)",
                                      url_red);
            c = hi * 16 + lo;
            p += 2;
        }
        if (c < 0x20 || c == 0x7f)
            return stow_error_set(err, STOW_EUSAGE,
                                  "store URL %s: control character in the prefix", url_red);
        if (n + 2 >= cap)
            return stow_error_set(err, STOW_EUSAGE,
                                  "store URL %s: prefix longer than %zu bytes", url_red,
                                  cap - 2);
        out[n++] = (char)c;
    }
    while (n > 0 && out[n - 1] == '/')
        n--;
    out[n] = '\0';
    if (n == 0)
        return STOW_OK;
    /* segments: no empty, "." or ".." ones (they would be normalised away by someone) */
    const char *seg = out;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || out[i] == '/') {
            size_t sl = (size_t)(out + i - seg);
            if (sl == 0 || (sl == 1 && seg[0] == '.') ||
                (sl == 2 && seg[0] == '.' && seg[1] == '.'))
                return stow_error_set(err, STOW_EUSAGE,
                                      "store URL %s: the prefix has an empty, \".\" or \"..\" "
                                      "segment",
                                      url_red);
            seg = out + i + 1;
        }
    }
    out[n++] = '/';
    out[n] = '\0';
    return STOW_OK;
}

static int dns_compatible(const char *bucket)
{
    size_t n = strlen(bucket);
    if (n < 3 || n > 63 || bucket[0] == '-' || bucket[n - 1] == '-')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = bucket[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return 0;
    }
    return 1;
}

/* Splits an endpoint URL into scheme, host (with port when given) and path. */
static int parse_endpoint(stow_s3_location *loc, char *scheme, size_t scheme_cap,
                          char *hostport, size_t hp_cap, const char *endpoint, stow_error *err)
{
    char red[512];
    CURLU *u = curl_url();
    char *sch = NULL, *host = NULL, *port = NULL, *path = NULL, *user = NULL, *query = NULL,
         *frag = NULL;
    int rc = STOW_EUSAGE;
    stow_redact_url(red, sizeof(red), endpoint);
    if (u == NULL) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    if (strstr(endpoint, "://") == NULL) {
        stow_error_set(err, STOW_EUSAGE,
                       "S3 endpoint \"%s\" has no scheme: write http://%s or https://%s", red,
                       red, red);
        goto done;
    }
    if (curl_url_set(u, CURLUPART_URL, endpoint, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &sch, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        stow_error_set(err, STOW_EUSAGE, "S3 endpoint \"%s\" is not a valid URL", red);
        goto done;
    }
    if (strcasecmp(sch, "http") != 0 && strcasecmp(sch, "https") != 0) {
        stow_error_set(err, STOW_EUSAGE, "S3 endpoint \"%s\" must be http:// or https://", red);
        goto done;
    }
    if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK ||
        curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK ||
        curl_url_get(u, CURLUPART_FRAGMENT, &frag, 0) == CURLUE_OK) {
        stow_error_set(err, STOW_EUSAGE,
                       "S3 endpoint \"%s\" must not have user info, a query or a fragment "
                       "(credentials come from the AWS chain)",
                       red);
        goto done;
    }
    curl_url_get(u, CURLUPART_PORT, &port, 0); /* only when given explicitly */
    for (char *c = sch; *c; c++)
        if (*c >= 'A' && *c <= 'Z')
            *c = (char)(*c - 'A' + 'a');
    int default_port = port != NULL && ((strcmp(sch, "http") == 0 && strcmp(port, "80") == 0) ||
                                        (strcmp(sch, "https") == 0 && strcmp(port, "443") == 0));
    int n = snprintf(hostport, hp_cap, "%s%s%s", host, port && !default_port ? ":" : "",
                     port && !default_port ? port : "");
    if (n < 0 || (size_t)n >= hp_cap || stow_strlcpy(scheme, sch, scheme_cap) != 0) {
        stow_error_set(err, STOW_EUSAGE, "S3 endpoint \"%s\" is too long", red);
        goto done;
    }
    /* the path, as given (curl keeps %-escapes), without trailing '/' */
    if (curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK) {
        size_t len = strlen(path);
        while (len > 0 && path[len - 1] == '/')
            len--;
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)path[i];
            if (!(unreserved(c) || c == '/' ||
                  (c == '%' && i + 2 < len && hexval(path[i + 1]) >= 0 &&
                   hexval(path[i + 2]) >= 0))) {
                stow_error_set(err, STOW_EUSAGE,
                               "S3 endpoint \"%s\": the path may only have unreserved "
                               "characters and %%XX escapes",
                               red);
                goto done;
            }
        }
        if (len >= sizeof(loc->base_path) / 2) {
            stow_error_set(err, STOW_EUSAGE, "S3 endpoint \"%s\": path too long", red);
            goto done;
        }
        memcpy(loc->base_path, path, len);
        loc->base_path[len] = '\0';
        for (char *c = loc->base_path; *c; c++) /* SigV4 wants upper-case escapes */
            if (c[0] == '%')
                for (int k = 1; k <= 2; k++)
                    if (c[k] >= 'a' && c[k] <= 'f')
                        c[k] = (char)(c[k] - 'a' + 'A');
    }
    rc = STOW_OK;
done:
    curl_free(sch);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_free(user);
    curl_free(query);
    curl_free(frag);
    curl_url_cleanup(u);
    return rc;
}

int stow_s3_location_parse(stow_s3_location *out, const char *url, const char *endpoint,
                           const char *region, int path_style, stow_error *err)
{
    char red[512];
    memset(out, 0, sizeof(*out));
    if (url == NULL)
        return stow_error_set(err, STOW_EUSAGE, "no store URL");
    stow_redact_url(red, sizeof(red), url);
    if (strncasecmp(url, "s3://", 5) != 0)
        return stow_error_set(err, STOW_EUSAGE, "store URL %s is not s3://bucket[/prefix]", red);
    const char *b = url + 5;
    size_t bl = strcspn(b, "/");
    if (bl == 0)
        return stow_error_set(err, STOW_EUSAGE, "store URL %s has no bucket (s3://bucket/prefix)",
                              red);
    if (bl > STOW_S3_BUCKET_MAX)
        return stow_error_set(err, STOW_EUSAGE, "store URL %s: bucket name too long", red);
    for (size_t i = 0; i < bl; i++) {
        char c = b[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_'))
            return stow_error_set(err, STOW_EUSAGE,
                                  "store URL %s: \"%.*s\" is not a bucket name (letters, "
                                  "digits, '.', '-', '_'; no user info, port or query)",
                                  red, (int)bl, b);
    }
    memcpy(out->bucket, b, bl);
    out->bucket[bl] = '\0';
    if (strpbrk(b + bl, "?#") != NULL)
        return stow_error_set(err, STOW_EUSAGE,
                              "store URL %s: no query or fragment (write '?' as %%3F, '#' as "
                              "%%23)",
                              red);
    int rc = parse_prefix(out->prefix, sizeof(out->prefix), b[bl] == '/' ? b + bl + 1 : "", red,
                          err);
    if (rc != STOW_OK)
        return rc;

    const char *rg = region && *region ? region : getenv("AWS_REGION");
    if (rg == NULL || *rg == '\0')
        rg = getenv("AWS_DEFAULT_REGION");
    if (rg == NULL || *rg == '\0')
        rg = "us-east-1";
    if (stow_strlcpy(out->region, rg, sizeof(out->region)) != 0)
        return stow_error_set(err, STOW_EUSAGE, "S3 region \"%.80s\" is too long", rg);
    for (const char *c = out->region; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '-' || *c == '_'))
            return stow_error_set(err, STOW_EUSAGE,
                                  "S3 region \"%s\" may only have letters, digits, '-' and '_'",
                                  out->region);

    char scheme[8] = "https", hostport[STOW_S3_ORIGIN_MAX];
    int n;
    if (endpoint && *endpoint) {
        rc = parse_endpoint(out, scheme, sizeof(scheme), hostport, sizeof(hostport), endpoint,
                            err);
        if (rc != STOW_OK)
            return rc;
        out->path_style = path_style != 0;
    } else {
        const char *suffix = strncmp(out->region, "cn-", 3) == 0 ? "amazonaws.com.cn"
                                                                  : "amazonaws.com";
        n = snprintf(hostport, sizeof(hostport), "s3.%s.%s", out->region, suffix);
        if (n < 0 || (size_t)n >= sizeof(hostport))
            return stow_error_set(err, STOW_EUSAGE, "S3 region too long");
        out->path_style = path_style == 1 || (path_style < 0 && !dns_compatible(out->bucket));
    }
    if (out->path_style) {
        n = stow_strlcpy(out->host, hostport, sizeof(out->host)) == 0 ? 0 : -1;
        if (n == 0) {
            size_t bp = strlen(out->base_path);
            int m = snprintf(out->base_path + bp, sizeof(out->base_path) - bp, "/%s", out->bucket);
            if (m < 0 || (size_t)m >= sizeof(out->base_path) - bp)
                n = -1;
        }
    } else {
        n = snprintf(out->host, sizeof(out->host), "%s.%s", out->bucket, hostport);
    }
    if (n < 0 || (size_t)n >= sizeof(out->host))
        return stow_error_set(err, STOW_EUSAGE, "store URL %s: host name too long", red);
    n = snprintf(out->origin, sizeof(out->origin), "%s://%s", scheme, out->host);
    if (n < 0 || (size_t)n >= sizeof(out->origin))
        return stow_error_set(err, STOW_EUSAGE, "store URL %s: host name too long", red);
    return STOW_OK;
}

uint64_t stow_s3_part_size(uint64_t base, int64_t size_hint, unsigned part)
{
    const uint64_t mib = 1024 * 1024;
    if (base < STOW_S3_PART_MIN)
        base = STOW_S3_PART_MIN;
    if (size_hint > 0) {
        uint64_t need = ((uint64_t)size_hint + STOW_S3_MAX_PARTS - 1) / STOW_S3_MAX_PARTS;
        need = (need + mib - 1) / mib * mib;
        if (need > base)
            base = need;
    }
    unsigned steps = part > 0 ? (part - 1) / STOW_S3_PART_GROWTH_EVERY : 0;
    while (steps-- > 0 && base < STOW_S3_PART_MAX)
        base *= 2;
    return base > STOW_S3_PART_MAX ? STOW_S3_PART_MAX : base;
}

/* ------------------------------------------------------------------------------------------
 * XML (expat), namespace-agnostic: elements are matched by local name and depth
 * ------------------------------------------------------------------------------------------ */

typedef struct xml_walk xml_walk;
/* Called at the end of every element; depth 1 is the root. */
typedef void (*xml_end_fn)(xml_walk *w, const char *name, const char *text, size_t len);

struct xml_walk {
    XML_Parser parser;
    int depth;
    char stack[S3_XML_DEPTH_MAX][S3_XML_NAME_MAX];
    char text[S3_XML_TEXT_MAX + 1];
    size_t text_len;
    int too_big;
    xml_end_fn on_end;
    void *ud;
};

static const char *local_name(const char *name)
{
    const char *sep = strrchr(name, '|');
    return sep ? sep + 1 : name;
}

static void xml_start(void *ud, const XML_Char *name, const XML_Char **atts)
{
    (void)atts;
    xml_walk *w = ud;
    if (w->depth >= S3_XML_DEPTH_MAX) {
        w->too_big = 1;
        XML_StopParser(w->parser, XML_FALSE);
        return;
    }
    const char *ln = local_name(name);
    size_t n = strlen(ln);
    if (n >= S3_XML_NAME_MAX)
        n = S3_XML_NAME_MAX - 1;
    memcpy(w->stack[w->depth], ln, n);
    w->stack[w->depth][n] = '\0';
    w->depth++;
    w->text_len = 0;
}

static void xml_chars(void *ud, const XML_Char *s, int len)
{
    xml_walk *w = ud;
    if (len <= 0)
        return;
    if ((size_t)len > S3_XML_TEXT_MAX - w->text_len) {
        w->too_big = 1;
        XML_StopParser(w->parser, XML_FALSE);
        return;
    }
    memcpy(w->text + w->text_len, s, (size_t)len);
    w->text_len += (size_t)len;
}

static void xml_end(void *ud, const XML_Char *name)
{
    xml_walk *w = ud;
    (void)name;
    if (w->depth <= 0)
        return;
    w->text[w->text_len] = '\0';
    if (w->on_end)
        w->on_end(w, w->stack[w->depth - 1], w->text, w->text_len);
    w->depth--;
    w->text_len = 0;
}

/* The local name of the element at depth d (1 = root) while it is open, or "". */
static const char *xml_at(const xml_walk *w, int d)
{
    return d >= 1 && d <= w->depth ? w->stack[d - 1] : "";
}

static int xml_begin(xml_walk *w, xml_end_fn fn, void *ud)
{
    memset(w, 0, offsetof(xml_walk, stack));
    w->text_len = 0;
    w->too_big = 0;
    w->on_end = fn;
    w->ud = ud;
    w->parser = XML_ParserCreateNS(NULL, '|');
    if (w->parser == NULL)
        return -1;
    XML_SetUserData(w->parser, w);
    XML_SetElementHandler(w->parser, xml_start, xml_end);
    XML_SetCharacterDataHandler(w->parser, xml_chars);
    return 0;
}

/* 0 ok, -1 malformed or over a cap. */
static int xml_feed(xml_walk *w, const char *buf, size_t len, int final)
{
    while (len > 0 || final) {
        int n = len > (1 << 20) ? (1 << 20) : (int)len;
        int last = final && (size_t)n == len;
        if (XML_Parse(w->parser, buf, n, last) != XML_STATUS_OK || w->too_big)
            return -1;
        buf += n;
        len -= (size_t)n;
        if (last)
            break;
    }
    return 0;
}

static const char *xml_error(const xml_walk *w)
{
    if (w->too_big)
        return "an element is nested too deep or its text is too long";
    return XML_ErrorString(XML_GetErrorCode(w->parser));
}

static void xml_done(xml_walk *w)
{
    if (w->parser)
        XML_ParserFree(w->parser);
    w->parser = NULL;
}

/* An <Error> answer. */
typedef struct s3_error_info {
    char root[S3_XML_NAME_MAX];
    char code[64];
    char message[256];
    char bucket[STOW_S3_BUCKET_MAX + 1];
    char region[STOW_S3_REGION_MAX];
    char endpoint[256];
    char actual_size[32]; /* InvalidRange: the object's size */
} s3_error_info;

static void copy_trunc(char *dst, size_t cap, const char *src, size_t len)
{
    if (len >= cap)
        len = cap - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
    for (size_t i = 0; i < len; i++) /* messages stay on one printable line */
        if ((unsigned char)dst[i] < 0x20 || dst[i] == 0x7f)
            dst[i] = ' ';
}

static void error_end(xml_walk *w, const char *name, const char *text, size_t len)
{
    s3_error_info *e = w->ud;
    if (w->depth == 1) {
        copy_trunc(e->root, sizeof(e->root), name, strlen(name));
        return;
    }
    if (w->depth != 2 || strcmp(xml_at(w, 1), "Error") != 0)
        return;
    if (strcmp(name, "Code") == 0)
        copy_trunc(e->code, sizeof(e->code), text, len);
    else if (strcmp(name, "Message") == 0)
        copy_trunc(e->message, sizeof(e->message), text, len);
    else if (strcmp(name, "BucketName") == 0)
        copy_trunc(e->bucket, sizeof(e->bucket), text, len);
    else if (strcmp(name, "Region") == 0)
        copy_trunc(e->region, sizeof(e->region), text, len);
    else if (strcmp(name, "Endpoint") == 0)
        copy_trunc(e->endpoint, sizeof(e->endpoint), text, len);
    else if (strcmp(name, "ActualObjectSize") == 0)
        copy_trunc(e->actual_size, sizeof(e->actual_size), text, len);
}

/* Parses an S3 error body; fields stay "" when absent or unparsable. */
static void parse_error_body(s3_error_info *e, const char *body, size_t len)
{
    memset(e, 0, sizeof(*e));
    if (len == 0)
        return;
    xml_walk *w = malloc(sizeof(*w));
    if (w == NULL)
        return;
    if (xml_begin(w, error_end, e) == 0 && xml_feed(w, body, len, 1) != 0 &&
        e->code[0] == '\0')
        e->root[0] = '\0';
    xml_done(w);
    free(w);
}

/* ------------------------------------------------------------------------------------------
 * Backend, credentials, signed requests
 * ------------------------------------------------------------------------------------------ */

typedef struct s3_backend {
    stow_backend base;
    stow_httpc *hc;
    stow_s3_location loc;
    char url_red[STOW_S3_BUCKET_MAX + STOW_S3_PREFIX_MAX + 16]; /* "s3://bucket/prefix" */
    int parallel;
    uint64_t part_base;
    pthread_mutex_t creds_lock;
    stow_s3_creds creds;
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
    const char *headers[4];           /* unsigned extra headers, NULL-terminated */
    char desc[S3_DESC_MAX];           /* "s3://bucket/key" for messages */
    _Atomic int *cancel;              /* fail the next attempt when set */
    _Atomic int refreshes;            /* credential refreshes forced by ExpiredToken */
    /* answer body of a non-GET request (collect = 1), reset before every attempt */
    int collect;
    char *body;
    size_t body_len;
    int body_over;
    /* the last error answer; only for calls that are never parallel (keep_error = 1) */
    int keep_error;
    s3_error_info last;
    /* GET: the object size from a 416 InvalidRange answer, -1 if none */
    _Atomic int64_t range_size;
} s3_call;

static void wipe(void *p, size_t n) { OPENSSL_cleanse(p, n); }

/* Current credentials, refreshed when they are about to expire (or the server said they
 * had). A failed refresh keeps the old ones while they are still valid. */
static int creds_get(s3_backend *b, stow_s3_creds *out, stow_error *err)
{
    int rc = STOW_OK;
    pthread_mutex_lock(&b->creds_lock);
    time_t now = time(NULL);
    int forced = atomic_exchange(&b->force_refresh, 0);
    if ((forced || stow_s3_creds_near_expiry(&b->creds, now, STOW_S3_CREDS_REFRESH_MARGIN)) &&
        (forced || now >= b->next_refresh)) {
        stow_s3_creds *fresh = malloc(sizeof(*fresh));
        stow_error e;
        stow_error_clear(&e);
        if (fresh != NULL && stow_s3_creds_resolve(fresh, &e) == STOW_OK) {
            stow_debug("%s: AWS credentials refreshed from %s", b->url_red, fresh->source);
            b->creds = *fresh;
            /* the source may hand out the same soon-expiring credentials again: do not ask
             * it before every request */
            b->next_refresh = now + S3_REFRESH_RETRY_S;
        } else {
            b->next_refresh = now + S3_REFRESH_RETRY_S;
            if (b->creds.expiry != 0 && b->creds.expiry <= now) {
                rc = stow_error_set(err, STOW_EAUTH,
                                    "%s: the AWS credentials from %s expired and could not be "
                                    "refreshed: %s",
                                    b->url_red, b->creds.source,
                                    fresh ? e.msg : "out of memory");
            } else {
                stow_warn("%s: could not refresh the AWS credentials (still using those from "
                          "%s): %s",
                          b->url_red, b->creds.source, fresh ? e.msg : "out of memory");
            }
        }
        if (fresh != NULL) {
            stow_s3_creds_clear(fresh);
            free(fresh);
        }
    }
    if (rc == STOW_OK)
        *out = b->creds;
    pthread_mutex_unlock(&b->creds_lock);
    return rc;
}

static void creds_source(s3_backend *b, char *out, size_t cap)
{
    pthread_mutex_lock(&b->creds_lock);
    stow_strlcpy(out, b->creds.source, cap);
    pthread_mutex_unlock(&b->creds_lock);
}

static int append(struct curl_slist **list, const char *line)
{
    struct curl_slist *n = curl_slist_append(*list, line);
    if (n == NULL)
        return -1;
    *list = n;
    return 0;
}

typedef struct sign_scratch {
    stow_s3_creds cr;
    stow_sigv4_headers h;
    char host_line[STOW_S3_ORIGIN_MAX + 8];
} sign_scratch;

/* Before every attempt: a fresh date and signature. */
static int s3_prepare(void *ud, const stow_httpc_attempt *att, struct curl_slist **headers,
                      stow_error *err)
{
    s3_call *c = ud;
    s3_backend *b = c->b;
    if (c->cancel && atomic_load(c->cancel))
        return stow_error_set(err, STOW_ERR, "%s %s: upload aborted", att->method, c->desc);
    if (c->collect) {
        c->body_len = 0;
        c->body_over = 0;
    }
    sign_scratch *s = malloc(sizeof(*s));
    if (s == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    int rc = creds_get(b, &s->cr, err);
    if (rc != STOW_OK)
        goto done;
    char date[STOW_SIGV4_AMZ_DATE_SIZE];
    if (stow_sigv4_amz_date(date, time(NULL)) != 0) {
        rc = stow_error_set(err, STOW_ERR, "the system clock cannot be formatted");
        goto done;
    }
    stow_sigv4_request r = {
        .method = att->method,
        .host = b->loc.host,
        .path = c->path,
        .query = c->query[0] ? c->query : NULL,
        .headers = NULL,
        .payload_hash = c->payload_hash,
        .amz_date = date,
        .region = b->loc.region,
        .service = "s3",
        .access_key = s->cr.access_key,
        .secret_key = s->cr.secret_key,
        .session_token = s->cr.session_token,
    };
    rc = stow_sigv4_sign(&s->h, &r, err);
    if (rc != STOW_OK)
        goto done;
    snprintf(s->host_line, sizeof(s->host_line), "Host: %s", b->loc.host);
    if (append(headers, s->host_line) != 0 || append(headers, s->h.authorization) != 0 ||
        append(headers, s->h.amz_date) != 0 || append(headers, s->h.content_sha256) != 0 ||
        (s->h.security_token[0] && append(headers, s->h.security_token) != 0)) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
done:
    wipe(s, sizeof(*s));
    free(s);
    return rc;
}

static int collect_sink(void *ud, const void *buf, size_t len)
{
    s3_call *c = ud;
    if (len > S3_ANSWER_MAX - c->body_len) {
        c->body_over = 1;
        return -1;
    }
    if (c->body == NULL && (c->body = malloc(S3_ANSWER_MAX + 1)) == NULL)
        return -1;
    memcpy(c->body + c->body_len, buf, len);
    c->body_len += len;
    c->body[c->body_len] = '\0';
    return 0;
}

static int is_code(const s3_error_info *e, const char *code) { return strcmp(e->code, code) == 0; }

/* Maps a non-2xx answer: the S3 code goes into the message. */
static int s3_on_error(void *ud, const stow_httpc_response *resp, int *retry, stow_error *err)
{
    s3_call *c = ud;
    s3_backend *b = c->b;
    s3_error_info e;
    parse_error_body(&e, resp->body, resp->body_len);
    if (c->keep_error)
        c->last = e;
    char detail[512];
    if (e.code[0])
        snprintf(detail, sizeof(detail), "HTTP %ld %s%s%s", resp->status, e.code,
                 e.message[0] ? ": " : "", e.message);
    else
        snprintf(detail, sizeof(detail), "HTTP %ld%s", resp->status,
                 strcmp(resp->method, "HEAD") == 0 ? ", no S3 error code in a HEAD answer" : "");
    const char *m = resp->method;
    char src[STOW_S3_SOURCE_MAX];
    long st = resp->status;

    if (is_code(&e, "ExpiredToken") || is_code(&e, "TokenRefreshRequired")) {
        /* refresh and try again, at most twice per request */
        creds_source(b, src, sizeof(src));
        if (atomic_fetch_add(&c->refreshes, 1) < 2) {
            atomic_store(&b->force_refresh, 1);
            *retry = 1;
        } else {
            *retry = 0;
        }
        return stow_error_set(err, STOW_EAUTH,
                              "%s %s: the session credentials expired (%s; credentials from %s)",
                              m, c->desc, detail, src);
    }
    if (st == 403 || st == 401 || is_code(&e, "InvalidAccessKeyId") ||
        is_code(&e, "InvalidToken") || is_code(&e, "AuthorizationHeaderMalformed") ||
        is_code(&e, "SignatureDoesNotMatch")) {
        *retry = 0;
        creds_source(b, src, sizeof(src));
        const char *hint = "";
        if (is_code(&e, "RequestTimeTooSkewed"))
            hint = "; the system clock is off";
        else if (is_code(&e, "AuthorizationHeaderMalformed"))
            hint = "; check the region";
        else if (is_code(&e, "AccessDenied") || (st == 403 && e.code[0] == '\0'))
            hint = "; the credentials are not allowed to do this";
        return stow_error_set(err, STOW_EAUTH,
                              "%s %s: S3 refused the request (%s; credentials from %s%s)", m,
                              c->desc, detail, src, hint);
    }
    if (st == 404) {
        *retry = 0;
        if (is_code(&e, "NoSuchBucket"))
            return stow_error_set(err, STOW_ERR,
                                  "%s %s: bucket \"%s\" does not exist (%s)", m, c->desc,
                                  b->loc.bucket, detail);
        if (is_code(&e, "NoSuchUpload"))
            return stow_error_set(err, STOW_ERR, "%s %s: the multipart upload is gone (%s)", m,
                                  c->desc, detail);
        return stow_error_set(err, STOW_ENOTFOUND, "%s %s: not found (%s)", m, c->desc, detail);
    }
    if (st == 416 && is_code(&e, "InvalidRange") && e.actual_size[0]) {
        char *end = NULL;
        errno = 0;
        long long sz = strtoll(e.actual_size, &end, 10);
        if (errno == 0 && end != e.actual_size && *end == '\0' && sz >= 0)
            atomic_store(&c->range_size, (int64_t)sz);
    }
    if (st == 412) {
        *retry = 0;
        return stow_error_set(err, STOW_EEXIST, "%s %s: the object already exists (%s)", m,
                              c->desc, detail);
    }
    if (st >= 300 && st < 400) {
        *retry = 0;
        return stow_error_set(err, STOW_ERR,
                              "%s %s: the bucket is elsewhere (%s%s%s%s%s); set the region or "
                              "the endpoint",
                              m, c->desc, detail, e.region[0] ? ", region " : "", e.region,
                              e.endpoint[0] ? ", endpoint " : "", e.endpoint);
    }
    if (is_code(&e, "RequestTimeout") || is_code(&e, "SlowDown") ||
        is_code(&e, "InternalError") || is_code(&e, "ServiceUnavailable") ||
        is_code(&e, "OperationAborted") || is_code(&e, "ConditionalRequestConflict"))
        *retry = 1;
    if (is_code(&e, "RequestTimeout"))
        return stow_error_set(err, STOW_ETIMEOUT, "%s %s: %s", m, c->desc, detail);
    if (st >= 500 || st == 429)
        return stow_error_set(err, STOW_ERR, "%s %s: server error (%s)", m, c->desc, detail);
    return stow_error_set(err, STOW_ERR, "%s %s: %s", m, c->desc, detail);
}

/* Sets up a call for the object name (NULL: the bucket itself). */
static int call_init(s3_call *c, s3_backend *b, const char *name, stow_error *err)
{
    memset(c, 0, offsetof(s3_call, path));
    c->b = b;
    c->path[0] = '\0';
    c->query[0] = '\0';
    c->desc[0] = '\0';
    c->collect = 0;
    c->body = NULL;
    c->body_len = 0;
    c->body_over = 0;
    c->keep_error = 0;
    c->cancel = NULL;
    atomic_init(&c->refreshes, 0);
    atomic_init(&c->range_size, -1);
    memset(c->headers, 0, sizeof(c->headers));
    memset(&c->last, 0, sizeof(c->last));
    memcpy(c->payload_hash, STOW_SIGV4_EMPTY_SHA256, sizeof(STOW_SIGV4_EMPTY_SHA256));
    if (name == NULL) {
        snprintf(c->path, sizeof(c->path), "%s%s", b->loc.base_path,
                 b->loc.path_style ? "" : "/");
        stow_strlcpy(c->desc, b->url_red, sizeof(c->desc));
        return STOW_OK;
    }
    if (!stow_backend_name_ok(name))
        return stow_error_set(err, STOW_EUSAGE, "invalid object name \"%.200s\"", name);
    char key[STOW_S3_PREFIX_MAX + S3_KEY_MAX + 2];
    int n = snprintf(key, sizeof(key), "%s%s", b->loc.prefix, name);
    if (n < 0 || (size_t)n >= sizeof(key) || n > S3_KEY_MAX)
        return stow_error_set(err, STOW_EUSAGE, "object key %s%s is longer than %d bytes",
                              b->loc.prefix, name, S3_KEY_MAX);
    size_t bp = strlen(b->loc.base_path);
    memcpy(c->path, b->loc.base_path, bp);
    c->path[bp] = '/';
    if (stow_sigv4_uri_encode(c->path + bp + 1, sizeof(c->path) - bp - 1, key, 0) != 0)
        return stow_error_set(err, STOW_EUSAGE, "object key %s is too long once encoded", key);
    snprintf(c->desc, sizeof(c->desc), "s3://%s/%s", b->loc.bucket, key);
    return STOW_OK;
}

static void call_free(s3_call *c)
{
    free(c->body);
    c->body = NULL;
}

/* Runs the call once (with the transport's retries). */
static int call_perform(s3_call *c, stow_httpc_request *req, stow_httpc_result *res, int get,
                        stow_error *err)
{
    char *url = malloc(S3_URL_MAX);
    if (url == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    int n = snprintf(url, S3_URL_MAX, "%s%s%s%s", c->b->loc.origin, c->path,
                     c->query[0] ? "?" : "", c->query);
    if (n < 0 || n >= S3_URL_MAX) {
        free(url);
        return stow_error_set(err, STOW_EUSAGE, "%s: request URL too long", c->desc);
    }
    req->url = url;
    req->headers = c->headers[0] ? c->headers : NULL;
    req->prepare = s3_prepare;
    req->on_error = s3_on_error;
    req->ud = c;
    if (c->collect) {
        req->sink = collect_sink;
        req->sink_ud = c;
    }
    int rc = get ? stow_httpc_get(c->b->hc, req, res, err)
                 : stow_httpc_perform(c->b->hc, req, res, err);
    if (rc != STOW_OK && c->collect && c->body_over)
        rc = stow_error_set(err, STOW_ECORRUPT, "%s %s: the answer is larger than %d bytes",
                            req->method, c->desc, S3_ANSWER_MAX);
    free(url);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * open / free
 * ------------------------------------------------------------------------------------------ */

static void s3_free(stow_backend *sb)
{
    s3_backend *b = (s3_backend *)sb;
    if (b == NULL)
        return;
    stow_httpc_free(b->hc);
    stow_s3_creds_clear(&b->creds);
    pthread_mutex_destroy(&b->creds_lock);
    free(b);
}

static int s3_open(stow_backend **out, const stow_backend_opts *opts, stow_error *err)
{
    *out = NULL;
    if (opts == NULL || opts->url == NULL)
        return stow_error_set(err, STOW_EUSAGE, "no store URL");
    s3_backend *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    b->base.ops = &stow_backend_s3_ops;
    pthread_mutex_init(&b->creds_lock, NULL);
    int rc = stow_s3_location_parse(&b->loc, opts->url, opts->endpoint, opts->region,
                                    opts->path_style, err);
    if (rc != STOW_OK)
        goto done;
    snprintf(b->url_red, sizeof(b->url_red), "s3://%s%s%.*s", b->loc.bucket,
             b->loc.prefix[0] ? "/" : "",
             b->loc.prefix[0] ? (int)strlen(b->loc.prefix) - 1 : 0, b->loc.prefix);
    b->parallel = opts->parallel > 0 ? opts->parallel : S3_PARALLEL_DEFAULT;
    if (b->parallel > 64)
        b->parallel = 64;
    b->part_base = STOW_S3_PART_DEFAULT;

    stow_httpc_config cfg;
    stow_httpc_config_init(&cfg, opts);
    cfg.netrc = 0;
    cfg.userpwd = NULL;
    cfg.headers = NULL;
    rc = stow_httpc_new(&b->hc, &cfg, err);
    if (rc != STOW_OK)
        goto done;

    rc = stow_s3_creds_resolve(&b->creds, err);
    if (rc != STOW_OK) {
        stow_error_wrap(err, "%s: no usable AWS credentials", b->url_red);
        if (err)
            err->code = STOW_EAUTH;
        rc = STOW_EAUTH;
        goto done;
    }
    stow_debug("s3 store %s: %s %s, region %s, credentials from %s", b->url_red,
               b->loc.path_style ? "path-style" : "virtual-hosted", b->loc.origin,
               b->loc.region, b->creds.source);
done:
    if (rc != STOW_OK) {
        s3_free(&b->base);
        return rc;
    }
    *out = &b->base;
    return STOW_OK;
}

/* ------------------------------------------------------------------------------------------
 * get / head / delete
 * ------------------------------------------------------------------------------------------ */

static int s3_get(stow_backend *sb, const char *name, uint64_t offset, uint64_t length,
                  stow_sink_fn sink, void *ud, stow_error *err)
{
    s3_backend *b = (s3_backend *)sb;
    s3_call *c = malloc(sizeof(*c));
    if (c == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    int rc = call_init(c, b, name, err);
    if (rc == STOW_OK) {
        stow_httpc_request req = {0};
        req.method = "GET";
        req.offset = offset;
        req.length = length;
        req.sink = sink;
        req.sink_ud = ud;
        rc = call_perform(c, &req, NULL, 1, err);
        /* A range starting at the end of the object is empty, not an error: S3 answers
         * 416 InvalidRange with ActualObjectSize (and an empty object always gets it,
         * since the first part of a GET is a range request) */
        if (rc != STOW_OK && atomic_load(&c->range_size) >= 0 &&
            (uint64_t)atomic_load(&c->range_size) == offset) {
            stow_error_clear(err);
            rc = STOW_OK;
        }
    }
    call_free(c);
    free(c);
    return rc;
}

static int discard_sink(void *ud, const void *buf, size_t len)
{
    (void)ud;
    (void)buf;
    (void)len;
    return 0;
}

/* A refused HEAD has no body, so no S3 error code: a 1-byte GET of the same object gets the
 * code for the message (only after a failure other than a miss). */
static int head_diagnose(s3_call *c, const char *name, int rc, stow_error *err)
{
    stow_error e;
    stow_error_clear(&e);
    if (call_init(c, c->b, name, &e) != STOW_OK)
        return rc;
    c->keep_error = 1;
    stow_httpc_request req = {0};
    req.method = "GET";
    req.offset = 0;
    req.length = 1;
    req.sink = discard_sink;
    int rc2 = call_perform(c, &req, NULL, 0, &e);
    if (rc2 == STOW_OK || c->last.code[0] == '\0')
        return rc;
    stow_debug("HEAD %s failed; a 1-byte GET gave the S3 error code %s", c->desc, c->last.code);
    if (err)
        *err = e;
    return rc2;
}

static int s3_head(stow_backend *sb, const char *name, stow_object_info *info, stow_error *err)
{
    s3_backend *b = (s3_backend *)sb;
    s3_call *c = malloc(sizeof(*c));
    if (c == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    int rc = call_init(c, b, name, err);
    if (rc == STOW_OK) {
        stow_httpc_request req = {0};
        stow_httpc_result res = {0};
        req.method = "HEAD";
        rc = call_perform(c, &req, &res, 0, err);
        if (rc == STOW_OK && info) {
            info->size = res.content_length >= 0 ? (uint64_t)res.content_length : 0;
            info->mtime = res.last_modified;
        }
        if (rc != STOW_OK && res.status != 404 && res.status >= 300 && res.status < 500)
            rc = head_diagnose(c, name, rc, err);
    }
    call_free(c);
    free(c);
    return rc;
}

static int s3_del(stow_backend *sb, const char *name, stow_error *err)
{
    s3_backend *b = (s3_backend *)sb;
    s3_call *c = malloc(sizeof(*c));
    if (c == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    int rc = call_init(c, b, name, err);
    if (rc == STOW_OK) {
        stow_httpc_request req = {0};
        req.method = "DELETE";
        rc = call_perform(c, &req, NULL, 0, err);
        if (rc == STOW_ENOTFOUND) {
            stow_error_clear(err);
            rc = STOW_OK;
        }
    }
    call_free(c);
    free(c);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * list (ListObjectsV2)
 * ------------------------------------------------------------------------------------------ */

typedef struct list_ctx {
    s3_backend *b;
    const char *want;   /* full key prefix the caller asked for (store prefix + prefix) */
    size_t want_len;
    size_t strip;       /* bytes of store prefix removed from keys */
    stow_list_fn fn;
    void *ud;
    xml_walk w;
    int root_ok;
    char key[S3_KEY_MAX + 1];
    int have_key, key_bad;
    uint64_t size;
    int64_t mtime;
    int truncated;
    char token[S3_TOKEN_MAX + 1];
    int token_bad;
    uint64_t page_bytes;
    unsigned long page_keys;
    int stopped;  /* the caller's fn asked to stop, or the keys went past the wanted range */
    int bad;
    char bad_msg[256];
    uint64_t seen, matched;
} list_ctx;

static void list_bad(list_ctx *l, const char *fmt, ...) STOW_PRINTF(2, 3);
static void list_bad(list_ctx *l, const char *fmt, ...)
{
    if (!l->bad) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(l->bad_msg, sizeof(l->bad_msg), fmt, ap);
        va_end(ap);
        l->bad = 1;
    }
    XML_StopParser(l->w.parser, XML_FALSE);
}

static void list_emit(list_ctx *l)
{
    l->seen++;
    if (l->page_keys++ >= S3_LIST_PAGE_KEYS_MAX) {
        list_bad(l, "more keys in one page than allowed");
        return;
    }
    if (!l->have_key || l->key_bad) {
        list_bad(l, "a <Contents> entry without a usable <Key>");
        return;
    }
    if (strncmp(l->key, l->want, l->want_len) != 0) {
        if (strcmp(l->key, l->want) > 0) {
            /* keys come in order: everything from here on is past the wanted range */
            l->stopped = 1;
            XML_StopParser(l->w.parser, XML_FALSE);
        }
        return;
    }
    const char *name = l->key + l->strip;
    if (!stow_backend_name_ok(name)) {
        stow_debug("%s: skipping key \"%.200s\" (not a stowage object name)", l->b->url_red,
                   l->key);
        return;
    }
    stow_object_info info = {l->size, l->mtime};
    l->matched++;
    if (l->fn(l->ud, name, &info) != 0) {
        l->stopped = 1;
        XML_StopParser(l->w.parser, XML_FALSE);
    }
}

static void list_end(xml_walk *w, const char *name, const char *text, size_t len)
{
    list_ctx *l = w->ud;
    if (l->stopped || l->bad)
        return;
    if (w->depth == 1) {
        if (strcmp(name, "ListBucketResult") != 0)
            list_bad(l, "the answer is <%s>, not a ListObjectsV2 result", name);
        return;
    }
    if (strcmp(xml_at(w, 1), "ListBucketResult") != 0)
        return;
    if (w->depth == 3 && strcmp(xml_at(w, 2), "Contents") == 0) {
        if (strcmp(name, "Key") == 0) {
            l->key_bad = len > S3_KEY_MAX || memchr(text, '\0', len) != NULL;
            if (!l->key_bad)
                memcpy(l->key, text, len + 1);
            l->have_key = 1;
        } else if (strcmp(name, "Size") == 0) {
            char *end = NULL;
            errno = 0;
            unsigned long long v = strtoull(text, &end, 10);
            if (errno != 0 || end == text || *end != '\0' || text[0] == '-')
                list_bad(l, "bad <Size> \"%.40s\"", text);
            l->size = v;
        } else if (strcmp(name, "LastModified") == 0) {
            time_t t = 0;
            stow_error e;
            if (stow_s3_creds_parse_time(&t, text, &e) == STOW_OK)
                l->mtime = (int64_t)t;
        }
        return;
    }
    if (w->depth != 2)
        return;
    if (strcmp(name, "Contents") == 0) {
        list_emit(l);
        l->have_key = 0;
        l->key_bad = 0;
        l->size = 0;
        l->mtime = 0;
    } else if (strcmp(name, "IsTruncated") == 0) {
        l->truncated = strcmp(text, "true") == 0;
    } else if (strcmp(name, "NextContinuationToken") == 0) {
        l->token_bad = len == 0 || len > S3_TOKEN_MAX;
        if (!l->token_bad)
            memcpy(l->token, text, len + 1);
    }
}

static int list_sink(void *ud, const void *buf, size_t len)
{
    list_ctx *l = ud;
    if (l->stopped || l->bad)
        return -1;
    l->page_bytes += len;
    if (l->page_bytes > S3_LIST_PAGE_BYTES_MAX) {
        l->bad = 1;
        snprintf(l->bad_msg, sizeof(l->bad_msg), "one page is larger than %d bytes",
                 S3_LIST_PAGE_BYTES_MAX);
        return -1;
    }
    if (xml_feed(&l->w, buf, len, 0) != 0 && !l->stopped) {
        if (!l->bad) {
            l->bad = 1;
            snprintf(l->bad_msg, sizeof(l->bad_msg), "malformed XML: %s", xml_error(&l->w));
        }
        return -1;
    }
    return l->stopped ? -1 : 0;
}

/* Length of the leading part of s that SigV4 encoding leaves alone. */
static size_t unencoded_len(const char *s)
{
    size_t n = 0;
    while (s[n] && unreserved((unsigned char)s[n]))
        n++;
    return n;
}

static int s3_list(stow_backend *sb, const char *prefix, stow_list_fn fn, void *ud,
                   stow_error *err)
{
    s3_backend *b = (s3_backend *)sb;
    char want[STOW_S3_PREFIX_MAX + S3_KEY_MAX + 2];
    char enc[3 * (STOW_S3_PREFIX_MAX + S3_KEY_MAX) + 1];
    char tok_enc[3 * S3_TOKEN_MAX + 1];
    int n = snprintf(want, sizeof(want), "%s%s", b->loc.prefix, prefix ? prefix : "");
    if (n < 0 || (size_t)n >= sizeof(want) || n > S3_KEY_MAX)
        return stow_error_set(err, STOW_EUSAGE, "list prefix too long");
    list_ctx *l = calloc(1, sizeof(*l));
    s3_call *c = malloc(sizeof(*c));
    int rc = STOW_OK;
    if (l == NULL || c == NULL) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    l->b = b;
    l->want = want;
    l->want_len = (size_t)n;
    l->strip = strlen(b->loc.prefix);
    l->fn = fn;
    l->ud = ud;
    l->token[0] = '\0';
    int fallback_tried = 0;
    unsigned long pages = 0;
restart:
    l->token[0] = '\0';
    for (;;) {
        int unenc = atomic_load(&b->list_unencoded);
        char sent[sizeof(want)];
        size_t sl = unenc ? unencoded_len(want) : (size_t)n;
        memcpy(sent, want, sl);
        sent[sl] = '\0';
        if (stow_sigv4_uri_encode(enc, sizeof(enc), sent, 1) != 0 ||
            stow_sigv4_uri_encode(tok_enc, sizeof(tok_enc), l->token, 1) != 0) {
            rc = stow_error_set(err, STOW_ERR, "list query too long");
            goto done;
        }
        rc = call_init(c, b, NULL, err);
        if (rc != STOW_OK)
            goto done;
        c->keep_error = 1;
        snprintf(c->desc, sizeof(c->desc), "%s (listing %s)", b->url_red,
                 prefix && *prefix ? prefix : "everything");
        int qn = snprintf(c->query, sizeof(c->query), "list-type=2&prefix=%s%s%s", enc,
                          l->token[0] ? "&continuation-token=" : "", l->token[0] ? tok_enc : "");
        if (qn < 0 || (size_t)qn >= sizeof(c->query)) {
            rc = stow_error_set(err, STOW_ERR, "list query too long");
            goto done;
        }
        /* page state */
        l->root_ok = 0;
        l->have_key = 0;
        l->key_bad = 0;
        l->truncated = 0;
        l->token_bad = 0;
        l->page_bytes = 0;
        l->page_keys = 0;
        l->token[0] = '\0';
        if (xml_begin(&l->w, list_end, l) != 0) {
            rc = stow_error_set(err, STOW_ERR, "out of memory");
            goto done;
        }
        stow_httpc_request req = {0};
        req.method = "GET";
        req.sink = list_sink;
        req.sink_ud = l;
        rc = call_perform(c, &req, NULL, 0, err);
        if (rc == STOW_OK && !l->stopped && !l->bad && xml_feed(&l->w, "", 0, 1) != 0 &&
            !l->stopped) {
            l->bad = 1;
            snprintf(l->bad_msg, sizeof(l->bad_msg), "malformed XML: %s", xml_error(&l->w));
        }
        xml_done(&l->w);
        if (l->stopped) {
            stow_error_clear(err);
            rc = STOW_OK;
            pages++;
            break;
        }
        if (l->bad) {
            rc = stow_error_set(err, STOW_ECORRUPT, "GET %s: %s", c->desc, l->bad_msg);
            goto done;
        }
        if (rc == STOW_EAUTH && !unenc && !fallback_tried && pages == 0 &&
            strcmp(c->last.code, "SignatureDoesNotMatch") == 0 && strchr(enc, '%') != NULL) {
            fallback_tried = 1;
            atomic_store(&b->list_unencoded, 1);
            stow_debug("%s: the server refused the signature of a listing with an encoded "
                       "prefix; listing with the prefix \"%.*s\" and filtering from now on",
                       b->url_red, (int)unencoded_len(want), want);
            goto restart;
        }
        if (rc != STOW_OK)
            goto done;
        pages++;
        if (!l->truncated)
            break;
        if (l->token_bad || l->token[0] == '\0') {
            rc = stow_error_set(err, STOW_ECORRUPT,
                                "GET %s: a truncated listing without a usable continuation "
                                "token",
                                c->desc);
            goto done;
        }
        if (pages >= S3_LIST_PAGES_MAX) {
            rc = stow_error_set(err, STOW_ERR, "GET %s: more than %d pages", c->desc,
                                S3_LIST_PAGES_MAX);
            goto done;
        }
    }
    stow_debug("%s: listed %s: %" PRIu64 " keys seen, %" PRIu64 " matched, %lu pages",
               b->url_red, prefix && *prefix ? prefix : "everything", l->seen, l->matched,
               pages);
done:
    if (c != NULL)
        call_free(c);
    free(c);
    free(l);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * put: PutObject or multipart
 * ------------------------------------------------------------------------------------------ */

typedef struct part_job {
    unsigned number;
    unsigned char *data;
    size_t len, cap;
} part_job;

typedef struct part_etag {
    char etag[STOW_HTTPC_ETAG_MAX];
} part_etag;

struct stow_put {
    s3_backend *b;
    char name[S3_KEY_MAX + 1];
    unsigned flags;
    int64_t size_hint;
    uint64_t total;

    /* the part being filled */
    unsigned char *cur;
    size_t cur_len, cur_cap;
    uint64_t part_size; /* of the part being filled */
    unsigned part_no;   /* its number, 1-based */

    /* multipart, once started */
    char upload_id[S3_UPLOAD_ID_MAX + 1];
    int started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t *threads;
    int nthreads;
    part_job *queue; /* ring of qcap jobs */
    size_t qcap, q_head, q_len;
    int inflight;    /* jobs queued or being uploaded */
    unsigned char **spare; /* buffers given back by the workers */
    size_t *spare_cap;
    int nspare;
    part_etag *etags; /* index part number - 1 */
    unsigned etags_cap;
    int stop;         /* workers exit once the queue is empty */
    _Atomic int cancel;
    int failed;
    stow_error err;
    int64_t t0;
};

static const char *content_type(const char *name)
{
    size_t n = strlen(name);
    if (n >= 5 && strcmp(name + n - 5, ".json") == 0)
        return "Content-Type: application/json";
    return "Content-Type: application/octet-stream";
}

static int s3_put_begin(stow_put **out, stow_backend *sb, const char *name, int64_t size_hint,
                        unsigned flags, stow_error *err)
{
    s3_backend *b = (s3_backend *)sb;
    *out = NULL;
    if (!stow_backend_name_ok(name) || strlen(name) > S3_KEY_MAX)
        return stow_error_set(err, STOW_EUSAGE, "invalid object name \"%.200s\"",
                              name ? name : "");
    stow_put *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    p->b = b;
    memcpy(p->name, name, strlen(name) + 1);
    p->flags = flags;
    p->size_hint = size_hint;
    p->part_no = 1;
    p->part_size = stow_s3_part_size(b->part_base, size_hint, 1);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    atomic_init(&p->cancel, 0);
    p->t0 = stow_now_ms();
    *out = p;
    return STOW_OK;
}

/* The upload ID as a query value. */
static int upload_query(char *out, size_t cap, const stow_put *p, unsigned part)
{
    char enc[3 * S3_UPLOAD_ID_MAX + 1];
    if (stow_sigv4_uri_encode(enc, sizeof(enc), p->upload_id, 1) != 0)
        return -1;
    int n = part ? snprintf(out, cap, "partNumber=%u&uploadId=%s", part, enc)
                 : snprintf(out, cap, "uploadId=%s", enc);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* Uploads one part from a worker thread; fills etag. */
static int upload_part(stow_put *p, const part_job *j, char *etag, stow_error *err)
{
    s3_call *c = malloc(sizeof(*c));
    if (c == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    int rc = call_init(c, p->b, p->name, err);
    if (rc != STOW_OK)
        goto done;
    if (upload_query(c->query, sizeof(c->query), p, j->number) != 0) {
        rc = stow_error_set(err, STOW_ERR, "upload ID too long");
        goto done;
    }
    c->cancel = &p->cancel;
    stow_sigv4_payload_hash(c->payload_hash, j->data, j->len);
    stow_httpc_request req = {0};
    stow_httpc_result res;
    req.method = "PUT";
    req.body_type = STOW_HTTPC_BODY_BUFFER;
    req.body = j->data;
    req.body_len = j->len;
    rc = call_perform(c, &req, &res, 0, err);
    if (rc == STOW_OK) {
        if (res.etag[0] == '\0')
            rc = stow_error_set(err, STOW_ERR, "PUT %s part %u: the server sent no ETag",
                                c->desc, j->number);
        else
            memcpy(etag, res.etag, sizeof(res.etag));
    } else {
        stow_error_wrap(err, "part %u", j->number);
    }
done:
    call_free(c);
    free(c);
    return rc;
}

static void *part_worker(void *arg)
{
    stow_put *p = arg;
    char etag[STOW_HTTPC_ETAG_MAX];
    for (;;) {
        pthread_mutex_lock(&p->lock);
        while (p->q_len == 0 && !p->stop)
            pthread_cond_wait(&p->cond, &p->lock);
        if (p->q_len == 0) {
            pthread_mutex_unlock(&p->lock);
            break;
        }
        part_job j = p->queue[p->q_head];
        p->q_head = (p->q_head + 1) % p->qcap;
        p->q_len--;
        int skip = p->failed;
        pthread_mutex_unlock(&p->lock);

        stow_error e;
        stow_error_clear(&e);
        int rc = skip ? STOW_ERR : upload_part(p, &j, etag, &e);

        pthread_mutex_lock(&p->lock);
        if (!skip && rc == STOW_OK) {
            memcpy(p->etags[j.number - 1].etag, etag, sizeof(etag));
        } else if (!skip && !p->failed) {
            p->failed = 1;
            p->err = e;
            atomic_store(&p->cancel, 1);
        }
        p->spare[p->nspare] = j.data;
        p->spare_cap[p->nspare] = j.cap;
        p->nspare++;
        p->inflight--;
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
    }
    return NULL;
}

/* Runs a POST (create or complete) on the object; body may be NULL. The answer is left in
 * c->body / c->body_len. */
static int post_xml(stow_put *p, const char *query, const char *body, size_t body_len,
                    const char *const *headers, s3_call *c, stow_error *err)
{
    int rc = call_init(c, p->b, p->name, err);
    if (rc != STOW_OK)
        return rc;
    stow_strlcpy(c->query, query, sizeof(c->query));
    c->collect = 1;
    c->keep_error = 1;
    for (int i = 0; headers && headers[i] && i < 3; i++)
        c->headers[i] = headers[i];
    if (body)
        stow_sigv4_payload_hash(c->payload_hash, body, body_len);
    stow_httpc_request req = {0};
    req.method = "POST";
    if (body) {
        req.body_type = STOW_HTTPC_BODY_BUFFER;
        req.body = body;
        req.body_len = body_len;
    }
    return call_perform(c, &req, NULL, 0, err);
}

typedef struct create_ctx {
    char upload_id[S3_UPLOAD_ID_MAX + 1];
    int too_long;
} create_ctx;

static void create_end(xml_walk *w, const char *name, const char *text, size_t len)
{
    create_ctx *cc = w->ud;
    if (w->depth == 2 && strcmp(name, "UploadId") == 0) {
        if (len == 0 || len > S3_UPLOAD_ID_MAX)
            cc->too_long = 1;
        else
            memcpy(cc->upload_id, text, len + 1);
    }
}

static int multipart_start(stow_put *p, stow_error *err)
{
    s3_backend *b = p->b;
    s3_call *c = malloc(sizeof(*c));
    xml_walk *w = malloc(sizeof(*w));
    create_ctx cc = {{0}, 0};
    int rc;
    if (c == NULL || w == NULL) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    const char *hdrs[] = {content_type(p->name), NULL};
    rc = post_xml(p, "uploads", NULL, 0, hdrs, c, err);
    if (rc != STOW_OK) {
        stow_error_wrap(err, "CreateMultipartUpload");
        goto done;
    }
    if (xml_begin(w, create_end, &cc) != 0) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    if (xml_feed(w, c->body ? c->body : "", c->body_len, 1) != 0 || cc.too_long ||
        cc.upload_id[0] == '\0') {
        rc = stow_error_set(err, STOW_ECORRUPT,
                            "POST %s?uploads: no usable UploadId in the answer", c->desc);
        xml_done(w);
        goto done;
    }
    xml_done(w);
    memcpy(p->upload_id, cc.upload_id, sizeof(cc.upload_id));

    int nt = b->parallel;
    p->queue = calloc((size_t)nt, sizeof(*p->queue));
    p->qcap = (size_t)nt;
    p->threads = calloc((size_t)nt, sizeof(*p->threads));
    p->spare = calloc((size_t)nt + 1, sizeof(*p->spare));
    p->spare_cap = calloc((size_t)nt + 1, sizeof(*p->spare_cap));
    if (!p->queue || !p->threads || !p->spare || !p->spare_cap) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    p->started = 1; /* from here on, failures abort the upload */
    for (int i = 0; i < nt; i++) {
        if (pthread_create(&p->threads[i], NULL, part_worker, p) != 0)
            break;
        p->nthreads++;
    }
    if (p->nthreads == 0) {
        rc = stow_error_set(err, STOW_ERR, "cannot start upload threads");
        goto done;
    }
    stow_debug("PUT %s: multipart upload started (%" PRIu64 " MiB parts, %d threads)",
               c->desc, p->part_size >> 20, p->nthreads);
done:
    if (c)
        call_free(c);
    free(c);
    free(w);
    return rc;
}

/* Hands the full current part to the workers and gets a buffer for the next one. */
static int dispatch_part(stow_put *p, stow_error *err)
{
    int rc;
    if (!p->started && (rc = multipart_start(p, err)) != STOW_OK)
        return rc;
    if (p->part_no > STOW_S3_MAX_PARTS)
        return stow_error_set(err, STOW_ERR, "PUT %s: more than %u parts", p->name,
                              STOW_S3_MAX_PARTS);
    pthread_mutex_lock(&p->lock); /* workers write into etags */
    if (p->part_no > p->etags_cap) {
        unsigned ncap = p->etags_cap ? p->etags_cap * 2 : 64;
        if (ncap > STOW_S3_MAX_PARTS)
            ncap = STOW_S3_MAX_PARTS;
        part_etag *ne = realloc(p->etags, ncap * sizeof(*ne));
        if (ne == NULL) {
            pthread_mutex_unlock(&p->lock);
            return stow_error_set(err, STOW_ERR, "out of memory");
        }
        memset(ne + p->etags_cap, 0, (ncap - p->etags_cap) * sizeof(*ne));
        p->etags = ne;
        p->etags_cap = ncap;
    }
    /* memory bound: nthreads parts with the workers, one being filled */
    while (!p->failed && p->inflight >= p->nthreads)
        pthread_cond_wait(&p->cond, &p->lock);
    if (p->failed) {
        if (err)
            *err = p->err;
        rc = p->err.code != STOW_OK ? p->err.code : STOW_ERR;
        pthread_mutex_unlock(&p->lock);
        return rc;
    }
    size_t at = (p->q_head + p->q_len) % p->qcap;
    p->queue[at] = (part_job){p->part_no, p->cur, p->cur_len, p->cur_cap};
    p->q_len++;
    p->inflight++;
    p->cur = NULL;
    p->cur_len = 0;
    p->cur_cap = 0;
    pthread_cond_broadcast(&p->cond);
    p->part_no++;
    p->part_size = stow_s3_part_size(p->b->part_base, p->size_hint, p->part_no);
    /* a spare buffer of the right size, if a worker gave one back */
    while (p->nspare > 0) {
        p->nspare--;
        unsigned char *buf = p->spare[p->nspare];
        size_t cap = p->spare_cap[p->nspare];
        if (p->cur == NULL && cap >= p->part_size) {
            p->cur = buf;
            p->cur_cap = cap;
        } else {
            free(buf);
        }
    }
    pthread_mutex_unlock(&p->lock);
    return STOW_OK;
}

static int s3_put_write(stow_put *p, const void *buf, size_t len, stow_error *err)
{
    const unsigned char *src = buf;
    while (len > 0) {
        if (atomic_load(&p->cancel)) {
            pthread_mutex_lock(&p->lock);
            stow_error e = p->err;
            pthread_mutex_unlock(&p->lock);
            if (err)
                *err = e;
            return e.code != STOW_OK ? e.code : STOW_ERR;
        }
        if (p->cur_len == p->part_size) {
            int rc = dispatch_part(p, err);
            if (rc != STOW_OK)
                return rc;
            continue;
        }
        size_t room = (size_t)(p->part_size - p->cur_len);
        size_t n = len < room ? len : room;
        if (p->cur_len + n > p->cur_cap) {
            /* parts after the first are full-size; the first grows, so that small objects
             * (manifests, refs) take small buffers */
            size_t ncap;
            if (p->part_no > 1)
                ncap = (size_t)p->part_size;
            else if (p->size_hint >= 0 && p->cur_cap == 0)
                ncap = (uint64_t)p->size_hint < p->part_size ? (size_t)p->size_hint
                                                             : (size_t)p->part_size;
            else
                ncap = p->cur_cap >= S3_SMALL_START / 2 ? p->cur_cap * 2 : S3_SMALL_START;
            if (ncap < p->cur_len + n)
                ncap = p->cur_len + n;
            if (ncap > p->part_size)
                ncap = (size_t)p->part_size;
            unsigned char *nb = realloc(p->cur, ncap);
            if (nb == NULL)
                return stow_error_set(err, STOW_ERR, "out of memory for a %zu-byte part", ncap);
            p->cur = nb;
            p->cur_cap = ncap;
        }
        memcpy(p->cur + p->cur_len, src, n);
        p->cur_len += n;
        p->total += n;
        src += n;
        len -= n;
    }
    return STOW_OK;
}

/* Stops the workers (after the queue drained, or at once when cancelled) and joins them. */
static void workers_stop(stow_put *p, int cancel)
{
    pthread_mutex_lock(&p->lock);
    if (cancel)
        atomic_store(&p->cancel, 1);
    if (cancel)
        p->failed = p->failed ? p->failed : 1;
    p->stop = 1;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    p->nthreads = 0;
}

static void multipart_abort(stow_put *p)
{
    s3_call *c = malloc(sizeof(*c));
    stow_error e;
    stow_error_clear(&e);
    if (c == NULL || call_init(c, p->b, p->name, &e) != STOW_OK ||
        upload_query(c->query, sizeof(c->query), p, 0) != 0) {
        stow_warn("cannot abort the multipart upload of %s: %s", p->name, e.msg);
        free(c);
        return;
    }
    c->keep_error = 1;
    stow_httpc_request req = {0};
    req.method = "DELETE";
    int rc = call_perform(c, &req, NULL, 0, &e);
    if (rc == STOW_OK || rc == STOW_ENOTFOUND || strcmp(c->last.code, "NoSuchUpload") == 0)
        stow_debug("DELETE %s: multipart upload aborted%s", c->desc,
                   rc == STOW_OK ? "" : " (it was already gone)");
    else if (strcmp(c->last.code, "MethodNotAllowed") == 0 ||
             strcmp(c->last.code, "NotImplemented") == 0)
        stow_debug("DELETE %s: this server cannot abort multipart uploads (%s); its parts "
                   "stay until it cleans them up",
                   c->desc, c->last.code);
    else
        stow_warn("could not abort the multipart upload of %s, its parts may stay billed until "
                  "a lifecycle rule removes them: %s",
                  c->desc, e.msg);
    call_free(c);
    free(c);
}

static void put_free(stow_put *p)
{
    if (p == NULL)
        return;
    free(p->cur);
    for (int i = 0; i < p->nspare; i++)
        free(p->spare[i]);
    for (size_t i = 0; i < p->q_len; i++)
        free(p->queue[(p->q_head + i) % p->qcap].data);
    free(p->spare);
    free(p->spare_cap);
    free(p->queue);
    free(p->threads);
    free(p->etags);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
    free(p);
}

/* The builders below record a failure in the buffer and check it once at the end. */
static void sbuf_add(stow_buf *b, const char *s, size_t n, int *failed)
{
    if (!*failed && stow_buf_add(b, s, n, NULL) != STOW_OK)
        *failed = 1;
}

static void sbuf_xml_text(stow_buf *b, const char *s, int *failed)
{
    for (; *s; s++) {
        const char *esc = NULL;
        switch (*s) {
        case '&': esc = "&amp;"; break;
        case '<': esc = "&lt;"; break;
        case '>': esc = "&gt;"; break;
        case '"': esc = "&quot;"; break;
        case '\'': esc = "&apos;"; break;
        default: break;
        }
        if (esc)
            sbuf_add(b, esc, strlen(esc), failed);
        else
            sbuf_add(b, s, 1, failed);
    }
}

static void complete_end(xml_walk *w, const char *name, const char *text, size_t len)
{
    s3_error_info *e = w->ud;
    if (w->depth == 1)
        copy_trunc(e->root, sizeof(e->root), name, strlen(name));
    else if (w->depth == 2 && strcmp(xml_at(w, 1), "Error") == 0 && strcmp(name, "Code") == 0)
        copy_trunc(e->code, sizeof(e->code), text, len);
    else if (w->depth == 2 && strcmp(xml_at(w, 1), "Error") == 0 &&
             strcmp(name, "Message") == 0)
        copy_trunc(e->message, sizeof(e->message), text, len);
}

static int multipart_complete(stow_put *p, unsigned nparts, stow_error *err)
{
    static const char *const if_absent = "If-None-Match: *";
    stow_buf x;
    int failed = 0;
    stow_buf_init(&x, (size_t)STOW_S3_MAX_PARTS * 512 + 1024);
    s3_call *c = malloc(sizeof(*c));
    xml_walk *w = malloc(sizeof(*w));
    char query[3 * S3_UPLOAD_ID_MAX + 32];
    int rc = STOW_ERR;
    if (c == NULL || w == NULL || upload_query(query, sizeof(query), p, 0) != 0) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    if (stow_buf_adds(&x,
                      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CompleteMultipartUpload "
                      "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">",
                      NULL) != STOW_OK)
        failed = 1;
    for (unsigned i = 1; i <= nparts && !failed; i++) {
        if (stow_buf_addf(&x, NULL, "<Part><PartNumber>%u</PartNumber><ETag>", i) != STOW_OK)
            failed = 1;
        sbuf_xml_text(&x, p->etags[i - 1].etag, &failed);
        sbuf_add(&x, "</ETag></Part>", strlen("</ETag></Part>"), &failed);
    }
    sbuf_add(&x, "</CompleteMultipartUpload>", strlen("</CompleteMultipartUpload>"), &failed);
    if (failed) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    const char *hdrs[] = {"Content-Type: application/xml",
                          (p->flags & STOW_PUT_IF_ABSENT) ? if_absent : NULL, NULL};
    for (int attempt = 1;; attempt++) {
        rc = post_xml(p, query, stow_buf_str(&x), x.len, hdrs, c, err);
        if (rc != STOW_OK)
            break;
        /* "200 OK" can still carry an <Error> (S3 sends it when it fails late) */
        s3_error_info e;
        memset(&e, 0, sizeof(e));
        if (xml_begin(w, complete_end, &e) != 0) {
            rc = stow_error_set(err, STOW_ERR, "out of memory");
            break;
        }
        int bad = xml_feed(w, c->body ? c->body : "", c->body_len, 1) != 0;
        xml_done(w);
        if (!bad && strcmp(e.root, "Error") == 0) {
            rc = stow_error_set(err, STOW_ERR, "POST %s: CompleteMultipartUpload failed (%s%s%s)",
                                c->desc, e.code, e.message[0] ? ": " : "", e.message);
            if ((strcmp(e.code, "InternalError") == 0 || strcmp(e.code, "SlowDown") == 0) &&
                attempt < S3_COMPLETE_TRIES) {
                stow_warn("%s; retrying", err ? err->msg : "CompleteMultipartUpload failed");
                struct timespec ts = {attempt, 0};
                nanosleep(&ts, NULL);
                call_free(c);
                continue;
            }
            break;
        }
        /* AWS answers <CompleteMultipartUploadResult>, moto <...Response>: a 200 without
         * <Error> is success */
        if (bad || strcmp(e.root, "CompleteMultipartUploadResult") != 0)
            stow_debug("POST %s: CompleteMultipartUpload answered 200 with <%s>", c->desc,
                       bad ? "unparsable XML" : e.root);
        break;
    }
done:
    if (c)
        call_free(c);
    free(c);
    free(w);
    stow_buf_free(&x);
    return rc;
}

static int put_single(stow_put *p, stow_error *err)
{
    static const char *const if_absent = "If-None-Match: *";
    s3_call *c = malloc(sizeof(*c));
    if (c == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    int rc = call_init(c, p->b, p->name, err);
    if (rc == STOW_OK) {
        c->headers[0] = content_type(p->name);
        c->headers[1] = (p->flags & STOW_PUT_IF_ABSENT) ? if_absent : NULL;
        stow_sigv4_payload_hash(c->payload_hash, p->cur, p->cur_len);
        stow_httpc_request req = {0};
        req.method = "PUT";
        req.body_type = STOW_HTTPC_BODY_BUFFER;
        req.body = p->cur ? (const void *)p->cur : (const void *)"";
        req.body_len = p->cur_len;
        rc = call_perform(c, &req, NULL, 0, err);
    }
    call_free(c);
    free(c);
    return rc;
}

static int s3_put_commit(stow_put *p, stow_error *err)
{
    int rc;
    if (atomic_load(&p->cancel)) {
        pthread_mutex_lock(&p->lock);
        if (err)
            *err = p->err;
        rc = p->err.code != STOW_OK ? p->err.code : STOW_ERR;
        pthread_mutex_unlock(&p->lock);
        goto fail;
    }
    if (!p->started) {
        rc = put_single(p, err);
        put_free(p);
        return rc;
    }
    unsigned nparts = p->part_no; /* the last part is the one being filled (never empty) */
    rc = dispatch_part(p, err);
    if (rc != STOW_OK)
        goto fail;
    workers_stop(p, 0);
    if (p->failed) {
        if (err)
            *err = p->err;
        rc = p->err.code != STOW_OK ? p->err.code : STOW_ERR;
        goto fail;
    }
    for (unsigned i = 0; i < nparts; i++)
        if (p->etags[i].etag[0] == '\0') {
            rc = stow_error_set(err, STOW_ERR, "PUT %s: part %u has no ETag", p->name, i + 1);
            goto fail;
        }
    rc = multipart_complete(p, nparts, err);
    if (rc != STOW_OK)
        goto fail;
    int64_t ms = stow_now_ms() - p->t0;
    stow_debug("PUT %s/%s: multipart upload complete, %u parts, %" PRIu64 " bytes, %" PRId64
               " ms (%.1f MB/s)",
               p->b->url_red, p->name, nparts, p->total, ms,
               ms > 0 ? (double)p->total / 1e3 / (double)ms : 0.0);
    put_free(p);
    return STOW_OK;
fail:
    if (p->started) {
        workers_stop(p, 1);
        multipart_abort(p);
    }
    put_free(p);
    return rc;
}

static void s3_put_abort(stow_put *p)
{
    if (p == NULL)
        return;
    if (p->started) {
        workers_stop(p, 1);
        multipart_abort(p);
    }
    put_free(p);
}

const stow_backend_ops stow_backend_s3_ops = {
    .version = STOW_BACKEND_VERSION,
    .scheme = "s3",
    .open = s3_open,
    .get = s3_get,
    .put_begin = s3_put_begin,
    .put_write = s3_put_write,
    .put_commit = s3_put_commit,
    .put_abort = s3_put_abort,
    .head = s3_head,
    .del = s3_del,
    .list = s3_list,
    .free = s3_free,
};
