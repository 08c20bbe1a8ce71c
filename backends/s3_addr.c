/* S3 store URL and addressing (s3.h): bucket, decoded prefix, endpoint or AWS host,
 * path-style or virtual-hosted, region; and the multipart part sizes. */
#include <errno.h>
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
#include "s3_int.h"
#include "util.h"

int s3_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == '~';
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
static int parse_prefix(char *out, size_t cap, const char *in, const char *url_red, stow_error *err)
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
            return stow_error_set(err, STOW_EUSAGE, "store URL %s: control character in the prefix",
                                  url_red);
        if (n + 2 >= cap)
            return stow_error_set(err, STOW_EUSAGE, "store URL %s: prefix longer than %zu bytes",
                                  url_red, cap - 2);
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
static int parse_endpoint(stow_s3_location *loc, char *scheme, size_t scheme_cap, char *hostport,
                          size_t hp_cap, const char *endpoint, stow_error *err)
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
                       "S3 endpoint \"%s\" has no scheme: write http://%s or https://%s", red, red,
                       red);
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
            if (!(s3_unreserved(c) || c == '/' ||
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

    const char *rg = region;
    out->region_from = "option";
    if (rg == NULL || *rg == '\0')
        rg = getenv(out->region_from = "AWS_REGION");
    if (rg == NULL || *rg == '\0')
        rg = getenv(out->region_from = "AWS_DEFAULT_REGION");
    if (rg == NULL || *rg == '\0') {
        rg = "us-east-1";
        out->region_from = "default";
    }
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
    out->endpoint_from = "option";
    if (endpoint == NULL || *endpoint == '\0')
        endpoint = getenv(out->endpoint_from = "AWS_ENDPOINT_URL_S3");
    if (endpoint == NULL || *endpoint == '\0')
        endpoint = getenv(out->endpoint_from = "AWS_ENDPOINT_URL");
    if (endpoint == NULL || *endpoint == '\0')
        out->endpoint_from = "AWS";
    if (endpoint && *endpoint) {
        rc = parse_endpoint(out, scheme, sizeof(scheme), hostport, sizeof(hostport), endpoint, err);
        if (rc != STOW_OK && strcmp(out->endpoint_from, "option") != 0)
            stow_error_wrap(err, "%s", out->endpoint_from);
        if (rc != STOW_OK)
            return rc;
        out->path_style = path_style != 0;
    } else {
        const char *suffix = strncmp(out->region, "cn-", 3) == 0 ? "amazonaws.com.cn"
                                                                 : "amazonaws.com";
        /* AWS_USE_FIPS_ENDPOINT / AWS_USE_DUALSTACK_ENDPOINT, as the SDKs name the hosts */
        const char *fips = getenv("AWS_USE_FIPS_ENDPOINT"),
                   *dual = getenv("AWS_USE_DUALSTACK_ENDPOINT");
        int use_fips = fips != NULL && strcasecmp(fips, "true") == 0;
        int use_dual = dual != NULL && strcasecmp(dual, "true") == 0;
        n = snprintf(hostport, sizeof(hostport), "s3%s%s.%s.%s", use_fips ? "-fips" : "",
                     use_dual ? ".dualstack" : "", out->region, suffix);
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

int stow_s3_describe(stow_s3_location *loc, char *source, size_t source_cap, char *key_hint,
                     size_t hint_cap, const stow_backend *sb)
{
    if (sb == NULL || sb->ops != &stow_backend_s3_ops)
        return STOW_EUSAGE;
    s3_backend *b = (s3_backend *)(uintptr_t)sb;
    *loc = b->loc;
    pthread_mutex_lock(&b->creds_lock);
    stow_strlcpy(source, b->creds.source, source_cap);
    size_t n = strlen(b->creds.access_key);
    int stars = n > 4 ? (int)(n - 4 > 16 ? 16 : n - 4) : 4; /* short ids: nothing shown */
    snprintf(key_hint, hint_cap, "%.*s%s", stars, "****************",
             n > 4 ? b->creds.access_key + n - 4 : "");
    pthread_mutex_unlock(&b->creds_lock);
    return STOW_OK;
}
