/* AWS container credentials (s3_container.h): ECS, CodeBuild, EKS Pod Identity. */
#include "s3_container.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <curl/curl.h>

#include "buf.h"
#include "httpc.h"
#include "log.h"
#include "readfile.h"
#include "util.h"

#define BODY_MAX 65536 /* cap on the service's answer */
#define URL_MAX 2048
#define CONNECT_TIMEOUT_MS 2000L
#define TIMEOUT_MS 5000L
#define RETRIES 2 /* the agents answer 5xx while starting; the SDKs retry too */

static const char *env_nonempty(const char *name)
{
    const char *v = getenv(name);
    return (v != NULL && v[0] != '\0') ? v : NULL;
}

/* ---- the host rule ---- */

static int ipv4_allowed(const struct in_addr *a)
{
    const unsigned char *b = (const unsigned char *)&a->s_addr;
    if (b[0] == 127)
        return 1; /* 127.0.0.0/8 */
    return b[0] == 169 && b[1] == 254 && b[2] == 170 && (b[3] == 2 || b[3] == 23);
}

static int ipv6_allowed(const struct in6_addr *a)
{
    static const unsigned char eks[16] = {0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0, 0,
                                          0,    0,    0,    0,    0, 0, 0, 0x23};
    if (IN6_IS_ADDR_LOOPBACK(a) || memcmp(a->s6_addr, eks, 16) == 0)
        return 1;
    if (IN6_IS_ADDR_V4MAPPED(a)) {
        struct in_addr v4;
        memcpy(&v4.s_addr, a->s6_addr + 12, 4);
        return ipv4_allowed(&v4);
    }
    return 0;
}

/* A name (not an address literal) is allowed when it resolves, and only to loopback. */
static int name_is_loopback(const char *host)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || res == NULL)
        return 0;
    int ok = 1;
    for (const struct addrinfo *ai = res; ai != NULL && ok; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET) {
            const struct sockaddr_in *s = (const struct sockaddr_in *)(const void *)ai->ai_addr;
            ok = ((const unsigned char *)&s->sin_addr.s_addr)[0] == 127;
        } else if (ai->ai_family == AF_INET6) {
            const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)(const void *)ai->ai_addr;
            ok = IN6_IS_ADDR_LOOPBACK(&s->sin6_addr);
        } else {
            ok = 0;
        }
    }
    freeaddrinfo(res);
    return ok;
}

int stow_s3_container_url_ok(const char *url, stow_error *err)
{
    char red[512], host[256];
    CURLU *u = curl_url();
    char *sch = NULL, *h = NULL, *user = NULL;
    int rc = STOW_EUSAGE;
    stow_redact_url(red, sizeof(red), url ? url : "");
    if (u == NULL) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    if (url == NULL || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &sch, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &h, 0) != CURLUE_OK) {
        stow_error_set(err, STOW_EUSAGE,
                       "AWS_CONTAINER_CREDENTIALS_FULL_URI \"%s\" is not a valid URL", red);
        goto done;
    }
    if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK) {
        stow_error_set(err, STOW_EUSAGE,
                       "AWS_CONTAINER_CREDENTIALS_FULL_URI \"%s\" must not carry user info", red);
        goto done;
    }
    if (strcasecmp(sch, "https") == 0) {
        rc = STOW_OK;
        goto done;
    }
    if (strcasecmp(sch, "http") != 0) {
        stow_error_set(err, STOW_EUSAGE,
                       "AWS_CONTAINER_CREDENTIALS_FULL_URI \"%s\" must be http:// or https://",
                       red);
        goto done;
    }
    /* "[::1]" -> "::1"; a zone id ("%25eth0") is not allowed */
    size_t hl = strlen(h);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        if (hl - 2 >= sizeof(host))
            goto refused;
        memcpy(host, h + 1, hl - 2);
        host[hl - 2] = '\0';
    } else if (stow_strlcpy(host, h, sizeof(host)) != 0) {
        goto refused;
    }
    struct in_addr v4;
    struct in6_addr v6;
    int allowed;
    if (inet_pton(AF_INET, host, &v4) == 1)
        allowed = ipv4_allowed(&v4);
    else if (inet_pton(AF_INET6, host, &v6) == 1)
        allowed = ipv6_allowed(&v6);
    else
        allowed = name_is_loopback(host);
    if (allowed) {
        rc = STOW_OK;
        goto done;
    }
refused:
    stow_error_set(err, STOW_EUSAGE,
                   "AWS_CONTAINER_CREDENTIALS_FULL_URI \"%s\": plain http is only allowed to a "
                   "loopback address (127.0.0.0/8, ::1, localhost) or the ECS/EKS agents "
                   "169.254.170.2, 169.254.170.23, fd00:ec2::23; use https for other hosts",
                   red);
done:
    curl_free(sch);
    curl_free(h);
    curl_free(user);
    curl_url_cleanup(u);
    return rc;
}

/* ---- the authorization token ---- */

/* The token from the file (it wins) or the variable; *out is malloc'd, "" when neither is
 * set. Trailing line breaks and blanks are dropped; a token with other control characters
 * is refused (it would split the header). */
static int auth_token(char **out, stow_error *err)
{
    const char *file = env_nonempty("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
    const char *val = env_nonempty("AWS_CONTAINER_AUTHORIZATION_TOKEN");
    const char *what = file ? "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"
                            : "AWS_CONTAINER_AUTHORIZATION_TOKEN";
    stow_buf b;
    stow_error e = {0};
    int rc = STOW_OK;
    *out = NULL;
    stow_buf_init(&b, STOW_S3_CONTAINER_TOKEN_MAX + 1);
    if (file != NULL) {
        rc = stow_read_file(&b, file, STOW_S3_CONTAINER_TOKEN_MAX, &e);
        if (rc != STOW_OK) {
            rc = stow_error_set(err, STOW_EAUTH, "container credentials: %s: %s", what, e.msg);
            goto done;
        }
    } else if (val != NULL) {
        if (strlen(val) > STOW_S3_CONTAINER_TOKEN_MAX) {
            rc = stow_error_set(err, STOW_EAUTH,
                                "container credentials: %s is longer than %d bytes", what,
                                STOW_S3_CONTAINER_TOKEN_MAX);
            goto done;
        }
        if ((rc = stow_buf_add(&b, val, strlen(val), err)) != STOW_OK)
            goto done;
    }
    size_t n = b.len;
    const char *s = b.len ? stow_buf_str(&b) : "";
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
            rc = stow_error_set(err, STOW_EAUTH,
                                "container credentials: %s has a control character", what);
            goto done;
        }
    if ((*out = malloc(n + 1)) == NULL) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    memcpy(*out, s, n);
    (*out)[n] = '\0';
done:
    if (b.ptr != NULL)
        OPENSSL_cleanse(b.ptr, b.cap);
    stow_buf_free(&b);
    return rc;
}

/* ---- the request ---- */

typedef stow_httpc_collector body;

static int on_prepare(void *ud, const stow_httpc_attempt *att, struct curl_slist **headers,
                      stow_error *err)
{
    (void)att, (void)headers, (void)err;
    stow_httpc_collect_reset(ud);
    return STOW_OK;
}

int stow_s3_creds_from_container(stow_s3_creds *out, const char *relative_base, stow_error *err)
{
    const char *rel = env_nonempty("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    const char *full = env_nonempty("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    char url[URL_MAX], shown[512];
    char *token = NULL, *hdr = NULL;
    const char *hdrs[2] = {NULL, NULL};
    stow_httpc *h = NULL;
    body b;
    stow_error e = {0};
    int rc;

    memset(out, 0, sizeof(*out));
    stow_buf_init(&b.buf, BODY_MAX);
    b.overflow = 0;
    if (rel == NULL && full == NULL)
        return stow_error_set(err, STOW_ENOTFOUND,
                              "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI and _FULL_URI not set");
    if (rel != NULL) {
        if (relative_base == NULL || relative_base[0] == '\0')
            relative_base = STOW_S3_CONTAINER_HOST;
        if (rel[0] != '/')
            return stow_error_set(err, STOW_EUSAGE,
                                  "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI must start with '/'");
        int n = snprintf(url, sizeof(url), "%s%s", relative_base, rel);
        if (n < 0 || (size_t)n >= sizeof(url))
            return stow_error_set(err, STOW_EUSAGE,
                                  "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI is too long");
    } else {
        if (stow_strlcpy(url, full, sizeof(url)) != 0)
            return stow_error_set(err, STOW_EUSAGE,
                                  "AWS_CONTAINER_CREDENTIALS_FULL_URI is too long");
        if ((rc = stow_s3_container_url_ok(url, err)) != STOW_OK)
            return rc;
        /* the agents want the token; only the full-URI form carries one */
        if ((rc = auth_token(&token, err)) != STOW_OK)
            return rc;
        if (token[0] != '\0') {
            size_t hl = strlen(token) + sizeof("Authorization: ");
            if ((hdr = malloc(hl)) == NULL) {
                rc = stow_error_set(err, STOW_ERR, "out of memory");
                goto done;
            }
            snprintf(hdr, hl, "Authorization: %s", token);
            hdrs[0] = hdr;
        }
    }
    stow_redact_url(shown, sizeof(shown), url);

    stow_httpc_config cfg;
    stow_httpc_config_init(&cfg, NULL);
    cfg.connect_timeout_ms = CONNECT_TIMEOUT_MS;
    cfg.deadline_ms = TIMEOUT_MS;
    cfg.low_speed_timeout_s = TIMEOUT_MS / 1000;
    cfg.max_retries = RETRIES;
    cfg.parallel = 1;
    cfg.no_proxy = 1; /* a local agent: never through a proxy */
    cfg.ca_bundle = env_nonempty("AWS_CA_BUNDLE");
    if ((rc = stow_httpc_new(&h, &cfg, err)) != STOW_OK)
        goto done;

    stow_httpc_request req;
    stow_httpc_result res;
    memset(&req, 0, sizeof(req));
    req.method = "GET";
    req.url = url;
    req.headers = hdrs[0] ? hdrs : NULL;
    req.no_resume = 1;
    req.sink = stow_httpc_collect;
    req.sink_ud = &b;
    req.prepare = on_prepare;
    req.ud = &b;
    rc = stow_httpc_perform(h, &req, &res, &e);
    if (b.overflow) {
        rc = stow_error_set(err, STOW_EAUTH,
                            "container credentials %s: answer longer than %d bytes", shown,
                            BODY_MAX);
        goto done;
    }
    if (rc != STOW_OK) {
        rc = stow_error_set(err, STOW_EAUTH, "container credentials %s: %s", shown, e.msg);
        goto done;
    }
    char what[600];
    snprintf(what, sizeof(what), "container credentials %s", shown);
    if ((rc = stow_s3_creds_from_json(out, &b.buf, what, err)) != STOW_OK)
        goto done;
    snprintf(out->source, sizeof(out->source), "container credentials %.400s", shown);
    rc = STOW_OK;
done:
    if (rc != STOW_OK)
        stow_s3_creds_clear(out);
    if (token != NULL) {
        OPENSSL_cleanse(token, strlen(token));
        free(token);
    }
    if (hdr != NULL) {
        OPENSSL_cleanse(hdr, strlen(hdr));
        free(hdr);
    }
    if (b.buf.ptr != NULL)
        OPENSSL_cleanse(b.buf.ptr, b.buf.cap);
    stow_buf_free(&b.buf);
    stow_httpc_free(h);
    return rc;
}
