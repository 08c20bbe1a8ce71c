/* Plain HTTP(S) store: objects are <base url>/<name>, read with (parallel, resumed) ranged
 * GETs and written with streamed PUTs, as served by nginx WebDAV, Apache mod_dav or an
 * artifact repository. No listing: restore-key prefixes resolve through refs/ objects.
 *
 * Authentication: basic auth from the URL's user info (percent-decoded, sent through
 * CURLOPT_USERPWD and never logged), else a bearer token from the environment variable
 * opts->token_env (default STOWAGE_HTTP_TOKEN), else ~/.netrc (or $NETRC) if it has the
 * host. Extra headers from opts->headers go on every request. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <strings.h>

#include <curl/curl.h>

#include "buf.h"
#include "log.h"
#include "readfile.h"
#include "backend.h"
#include "httpc.h"

#define HTTP_URL_MAX 4096
#define HTTP_HEADER_MAX 8192
#define HTTP_NAME_MAX 1024

typedef struct http_backend {
    stow_backend base;
    stow_httpc *hc;
    char *base_url; /* no user info, no trailing '/' */
    char url_red[512];
    char **headers; /* configured extra headers, plus the bearer header; NULL-terminated */
} http_backend;

struct stow_put {
    http_backend *b;
    stow_httpc_upload *up;
    char *url;
};

static void wipe(char *s)
{
    if (s == NULL)
        return;
    volatile char *p = s;
    while (*p)
        *p++ = '\0';
}

static void free_headers(char **v)
{
    if (v == NULL)
        return;
    for (size_t i = 0; v[i]; i++) {
        wipe(v[i]);
        free(v[i]);
    }
    free(v);
}

/* "Name: value" with a token name and no control characters (no header injection). */
static int header_ok(const char *h)
{
    const char *colon = strchr(h, ':');
    if (colon == NULL || colon == h || strlen(h) > HTTP_HEADER_MAX)
        return 0;
    for (const char *p = h; p < colon; p++) {
        unsigned char c = (unsigned char)*p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("!#$%&'*+-.^_`|~", c) != NULL))
            return 0;
    }
    for (const char *p = colon + 1; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return 0;
    }
    return 1;
}

/* Object names reach the URL unescaped, so they are checked here too (segments of
 * [A-Za-z0-9._-], never "." or ".."): that keeps every request inside the prefix. */
static int name_ok(const char *name) { return stow_backend_name_ok(name); }

static int object_url(char **out, const http_backend *b, const char *name, stow_error *err)
{
    *out = NULL;
    if (!name_ok(name))
        return stow_error_set(err, STOW_EUSAGE, "invalid object name \"%.200s\"", name ? name : "");
    size_t bl = strlen(b->base_url), nl = strlen(name);
    if (bl + 1 + nl + 1 > HTTP_URL_MAX)
        return stow_error_set(err, STOW_EUSAGE, "object URL longer than %d bytes", HTTP_URL_MAX);
    stow_buf u;
    stow_buf_init(&u, HTTP_URL_MAX - 1);
    if (stow_buf_addf(&u, err, "%s/%s", b->base_url, name) != STOW_OK)
        return STOW_ERR;
    *out = stow_buf_take(&u, NULL);
    return *out ? STOW_OK : stow_error_set(err, STOW_ERR, "out of memory");
}

/* Splits the store URL: base (user info removed) and "user:password" (decoded) or NULL. */
static int parse_store_url(char **base, char **userpwd, const char *url, stow_error *err)
{
    char red[512];
    CURLU *u = NULL;
    char *scheme = NULL, *user = NULL, *pass = NULL, *query = NULL, *frag = NULL, *full = NULL;
    int rc = STOW_EUSAGE;
    *base = NULL;
    *userpwd = NULL;
    stow_redact_url(red, sizeof(red), url);
    u = curl_url();
    if (u == NULL) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) {
        stow_error_set(err, STOW_EUSAGE, "store URL \"%s\" is not a valid URL", red);
        goto done;
    }
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0)) {
        stow_error_set(err, STOW_EUSAGE, "store URL \"%s\" is not http:// or https://", red);
        goto done;
    }
    if (curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK ||
        curl_url_get(u, CURLUPART_FRAGMENT, &frag, 0) == CURLUE_OK) {
        stow_error_set(err, STOW_EUSAGE, "store URL \"%s\" must not have a query or fragment", red);
        goto done;
    }
    if (curl_url_get(u, CURLUPART_USER, &user, CURLU_URLDECODE) == CURLUE_OK) {
        curl_url_get(u, CURLUPART_PASSWORD, &pass, CURLU_URLDECODE);
        if (strpbrk(user, ":\r\n") != NULL || (pass && strpbrk(pass, "\r\n") != NULL)) {
            stow_error_set(err, STOW_EUSAGE, "store URL \"%s\": invalid user name or password",
                           red);
            goto done;
        }
        size_t n = strlen(user) + 1 + (pass ? strlen(pass) : 0) + 1;
        *userpwd = malloc(n);
        if (*userpwd == NULL) {
            rc = stow_error_set(err, STOW_ERR, "out of memory");
            goto done;
        }
        snprintf(*userpwd, n, "%s:%s", user, pass ? pass : "");
        curl_url_set(u, CURLUPART_USER, NULL, 0);
        curl_url_set(u, CURLUPART_PASSWORD, NULL, 0);
    }
    if (curl_url_get(u, CURLUPART_URL, &full, 0) != CURLUE_OK) {
        stow_error_set(err, STOW_EUSAGE, "store URL \"%s\" is not a valid URL", red);
        goto done;
    }
    size_t len = strlen(full);
    while (len > 0 && full[len - 1] == '/')
        len--;
    if (len >= HTTP_URL_MAX - HTTP_NAME_MAX - 2) {
        stow_error_set(err, STOW_EUSAGE, "store URL \"%s\" is too long", red);
        goto done;
    }
    *base = strndup(full, len);
    if (*base == NULL) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    rc = STOW_OK;
done:
    if (rc != STOW_OK) {
        wipe(*userpwd);
        free(*userpwd);
        *userpwd = NULL;
    }
    wipe(pass);
    curl_free(scheme);
    curl_free(user);
    curl_free(pass);
    curl_free(query);
    curl_free(frag);
    curl_free(full);
    curl_url_cleanup(u);
    return rc;
}

static void http_free(stow_backend *sb)
{
    http_backend *b = (http_backend *)sb;
    if (b == NULL)
        return;
    stow_httpc_free(b->hc);
    free(b->base_url);
    free_headers(b->headers);
    free(b);
}

static int http_open(stow_backend **out, const stow_backend_opts *opts, stow_error *err)
{
    char *userpwd = NULL;
    int rc;
    *out = NULL;
    if (opts == NULL || opts->url == NULL)
        return stow_error_set(err, STOW_EUSAGE, "no store URL");
    http_backend *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    b->base.ops = &stow_backend_http_ops;
    rc = parse_store_url(&b->base_url, &userpwd, opts->url, err);
    if (rc != STOW_OK)
        goto done;
    stow_redact_url(b->url_red, sizeof(b->url_red), b->base_url);

    size_t nh = 0;
    while (opts->headers && opts->headers[nh])
        nh++;
    b->headers = calloc(nh + 2, sizeof(*b->headers));
    if (b->headers == NULL) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    size_t k = 0;
    for (size_t i = 0; i < nh; i++) {
        if (!header_ok(opts->headers[i])) {
            /* the value may be a secret: name only the position */
            rc = stow_error_set(err, STOW_EUSAGE,
                                "extra HTTP header #%zu is not \"Name: value\" on one line", i + 1);
            goto done;
        }
        if ((b->headers[k++] = strdup(opts->headers[i])) == NULL) {
            rc = stow_error_set(err, STOW_ERR, "out of memory");
            goto done;
        }
    }
    const char *env = opts->token_env && *opts->token_env ? opts->token_env : "STOWAGE_HTTP_TOKEN";
    const char *token = getenv(env);
    int have_token = 0;
    if (token && *token && userpwd == NULL) {
        char line[HTTP_HEADER_MAX];
        int n = snprintf(line, sizeof(line), "Authorization: Bearer %s", token);
        if (n < 0 || (size_t)n >= sizeof(line) || !header_ok(line)) {
            wipe(line);
            rc = stow_error_set(err, STOW_EUSAGE,
                                "the bearer token in $%s is too long or has control characters",
                                env);
            goto done;
        }
        b->headers[k] = strdup(line);
        wipe(line);
        if (b->headers[k++] == NULL) {
            rc = stow_error_set(err, STOW_ERR, "out of memory");
            goto done;
        }
        have_token = 1;
    } else if (token && *token) {
        stow_debug("http store %s: using the URL's user info, not $%s", b->url_red, env);
    }

    stow_httpc_config cfg;
    stow_httpc_config_init(&cfg, opts);
    cfg.userpwd = userpwd;
    cfg.netrc = userpwd == NULL && !have_token;
    if (cfg.netrc) {
        /* curl reads the .netrc itself, whole: let it only read a regular file of sane size
         * (a FIFO would hang every request, /dev/zero would never end). */
        char nbuf[4096];
        const char *nf = getenv("NETRC"), *home = getenv("HOME");
        if ((nf == NULL || nf[0] == '\0') && home != NULL &&
            snprintf(nbuf, sizeof(nbuf), "%s/.netrc", home) < (int)sizeof(nbuf))
            nf = nbuf;
        int fd = -1;
        stow_error nerr = {0};
        if (nf != NULL && nf[0] != '\0') {
            int nrc = stow_open_file(&fd, nf, 1u << 20, &nerr);
            if (fd >= 0)
                close(fd);
            if (nrc != STOW_OK) {
                if (nrc != STOW_ENOTFOUND)
                    stow_warn("not reading %s: %s", nf, nerr.msg);
                cfg.netrc = 0;
            }
        }
    }
    cfg.headers = (const char *const *)b->headers;
    rc = stow_httpc_new(&b->hc, &cfg, err);
    if (rc != STOW_OK)
        goto done;
    stow_debug("http store %s (%s)", b->url_red,
               userpwd      ? "basic auth from the URL"
               : have_token ? "bearer token"
                            : "anonymous or .netrc");
done:
    wipe(userpwd);
    free(userpwd);
    if (rc != STOW_OK) {
        http_free(&b->base);
        return rc;
    }
    *out = &b->base;
    return STOW_OK;
}

static int http_get(stow_backend *sb, const char *name, uint64_t offset, uint64_t length,
                    stow_sink_fn sink, void *ud, stow_error *err)
{
    http_backend *b = (http_backend *)sb;
    char *url = NULL;
    int rc = object_url(&url, b, name, err);
    if (rc != STOW_OK)
        return rc;
    stow_httpc_request req = {0};
    req.method = "GET";
    req.url = url;
    req.offset = offset;
    req.length = length;
    req.sink = sink;
    req.sink_ud = ud;
    rc = stow_httpc_get(b->hc, &req, NULL, err);
    free(url);
    return rc;
}

static int http_head(stow_backend *sb, const char *name, stow_object_info *info, stow_error *err);

static int http_put_begin(stow_put **out, stow_backend *sb, const char *name, int64_t size_hint,
                          unsigned flags, stow_error *err)
{
    http_backend *b = (http_backend *)sb;
    static const char *const if_absent[] = {"If-None-Match: *", NULL};
    *out = NULL;
    if (flags & STOW_PUT_IF_ABSENT) {
        /* Best effort: servers that honour If-None-Match on PUT (sent below) are exact;
         * for those that ignore it (nginx WebDAV) a HEAD first narrows the race. */
        stow_object_info info;
        int hr = http_head(sb, name, &info, err);
        if (hr == STOW_OK)
            return stow_error_set(err, STOW_EEXIST, "%s/%s already exists", b->url_red, name);
        if (hr != STOW_ENOTFOUND)
            return hr;
        stow_error_clear(err);
    }
    stow_put *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    p->b = b;
    int rc = object_url(&p->url, b, name, err);
    if (rc != STOW_OK) {
        free(p);
        return rc;
    }
    stow_httpc_request req = {0};
    req.method = "PUT";
    req.url = p->url;
    req.headers = (flags & STOW_PUT_IF_ABSENT) ? if_absent : NULL;
    rc = stow_httpc_put_begin(&p->up, b->hc, &req, size_hint < 0 ? -1 : size_hint, err);
    if (rc != STOW_OK) {
        free(p->url);
        free(p);
        return rc;
    }
    *out = p;
    return STOW_OK;
}

static int http_put_write(stow_put *p, const void *buf, size_t len, stow_error *err)
{
    return stow_httpc_put_write(p->up, buf, len, err);
}

static int http_put_commit(stow_put *p, stow_error *err)
{
    int rc = stow_httpc_put_commit(p->up, NULL, err);
    free(p->url);
    free(p);
    return rc;
}

static void http_put_abort(stow_put *p)
{
    if (p == NULL)
        return;
    stow_httpc_put_abort(p->up);
    free(p->url);
    free(p);
}

static int http_head(stow_backend *sb, const char *name, stow_object_info *info, stow_error *err)
{
    http_backend *b = (http_backend *)sb;
    char *url = NULL;
    int rc = object_url(&url, b, name, err);
    if (rc != STOW_OK)
        return rc;
    stow_httpc_request req = {0};
    req.method = "HEAD";
    req.url = url;
    stow_httpc_result res;
    rc = stow_httpc_perform(b->hc, &req, &res, err);
    if (rc == STOW_OK && info) {
        info->size = res.content_length >= 0 ? (uint64_t)res.content_length : 0;
        info->mtime = res.last_modified;
    }
    free(url);
    return rc;
}

static int http_del(stow_backend *sb, const char *name, stow_error *err)
{
    http_backend *b = (http_backend *)sb;
    char *url = NULL;
    int rc = object_url(&url, b, name, err);
    if (rc != STOW_OK)
        return rc;
    stow_httpc_request req = {0};
    req.method = "DELETE";
    req.url = url;
    rc = stow_httpc_perform(b->hc, &req, NULL, err);
    if (rc == STOW_ENOTFOUND) {
        stow_error_clear(err);
        rc = STOW_OK;
    }
    free(url);
    return rc;
}

const stow_backend_ops stow_backend_http_ops = {
    .version = STOW_BACKEND_VERSION,
    .scheme = "http",
    .open = http_open,
    .get = http_get,
    .put_begin = http_put_begin,
    .put_write = http_put_write,
    .put_commit = http_put_commit,
    .put_abort = http_put_abort,
    .head = http_head,
    .del = http_del,
    .list = NULL,
    .free = http_free,
};
