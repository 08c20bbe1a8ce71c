#include "sigv4.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "hash.h"

#define ALGORITHM "AWS4-HMAC-SHA256"
#define NAME_MAX_LEN 128  /* header name */
#define SCOPE_PART_MAX 64 /* region, service */
#define ACCESS_KEY_MAX 128
#define SECRET_MAX 256
#define HOST_MAX 300
#define METHOD_MAX 16
#define SIGNED_HEADERS_MAX 4096
#define STRING_TO_SIGN_MAX 512
#define TOKEN_HEADER "x-amz-security-token: "

/* Builders write into fixed arrays through stow_buf_init_fixed; a failed add is recorded
 * in the buffer's failed flag, which each builder checks once at the end. */
typedef stow_buf sbuf;

static void sb_init(sbuf *b, char *p, size_t cap) { stow_buf_init_fixed(b, p, cap); }

static void sb_putn(sbuf *b, const char *s, size_t n) { (void)stow_buf_add(b, s, n, NULL); }

static void sb_puts(sbuf *b, const char *s) { sb_putn(b, s, strlen(s)); }

static void sb_putc(sbuf *b, char c) { sb_putn(b, &c, 1); }

static int is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == '~';
}

static int is_upper_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static void sb_encode_byte(sbuf *b, unsigned char c, int encode_slash)
{
    static const char digits[] = "0123456789ABCDEF";
    if (is_unreserved(c) || (c == '/' && !encode_slash)) {
        sb_putc(b, (char)c);
        return;
    }
    char esc[3] = {'%', digits[c >> 4], digits[c & 15]};
    sb_putn(b, esc, 3);
}

int stow_sigv4_uri_encode(char *out, size_t cap, const char *in, int encode_slash)
{
    sbuf b;
    sb_init(&b, out, cap);
    for (const unsigned char *p = (const unsigned char *)in; *p != '\0' && !b.failed; p++)
        sb_encode_byte(&b, *p, encode_slash);
    if (b.failed) {
        if (cap > 0)
            out[0] = '\0';
        return STOW_ERR;
    }
    return STOW_OK;
}

int stow_sigv4_amz_date(char out[STOW_SIGV4_AMZ_DATE_SIZE], time_t t)
{
    struct tm tm;
    out[0] = '\0';
    if (gmtime_r(&t, &tm) == NULL || tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999)
        return STOW_ERR;
    if (strftime(out, STOW_SIGV4_AMZ_DATE_SIZE, "%Y%m%dT%H%M%SZ", &tm) != 16) {
        out[0] = '\0';
        return STOW_ERR;
    }
    return STOW_OK;
}

void stow_sigv4_payload_hash(char out[STOW_SIGV4_HASH_HEX_SIZE], const void *buf, size_t len)
{
    uint8_t digest[STOW_SHA256_LEN];
    stow_sha256_buf(digest, buf, len);
    stow_hex(out, digest, sizeof(digest));
}

/* ---- validation ---- */

static int check_chars(const char *s, size_t max, int (*ok)(unsigned char))
{
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        if (n >= max || !ok((unsigned char)s[n]))
            return 0;
    }
    return n > 0;
}

static int ok_method(unsigned char c) { return c >= 'A' && c <= 'Z'; }
static int ok_visible(unsigned char c) { return c > 0x20 && c < 0x7f; }
static int ok_scope(unsigned char c) { return is_unreserved(c); }
static int ok_access_key(unsigned char c) { return ok_visible(c) && c != '/' && c != ','; }

static int ok_amz_date(const char *s)
{
    if (strlen(s) != 16 || s[8] != 'T' || s[15] != 'Z')
        return 0;
    for (int i = 0; i < 15; i++) {
        if (i != 8 && (s[i] < '0' || s[i] > '9'))
            return 0;
    }
    return 1;
}

static int ok_payload_hash(const char *s)
{
    if (strcmp(s, STOW_SIGV4_UNSIGNED_PAYLOAD) == 0)
        return 1;
    if (strlen(s) != 64)
        return 0;
    for (int i = 0; i < 64; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    }
    return 1;
}

static int has_token(const stow_sigv4_request *req)
{
    return req->session_token != NULL && req->session_token[0] != '\0';
}

static int validate(const stow_sigv4_request *req, stow_error *err)
{
#define REQUIRE(cond, what)                                                                        \
    do {                                                                                           \
        if (!(cond))                                                                               \
            return stow_error_set(err, STOW_EUSAGE, "sigv4: %s", what);                            \
    } while (0)
    REQUIRE(req->method && check_chars(req->method, METHOD_MAX, ok_method),
            "method missing or not an upper-case word");
    REQUIRE(req->host && check_chars(req->host, HOST_MAX, ok_visible), "host missing or malformed");
    REQUIRE(req->amz_date && ok_amz_date(req->amz_date),
            "amz date missing or not YYYYMMDDTHHMMSSZ");
    REQUIRE(req->region && check_chars(req->region, SCOPE_PART_MAX, ok_scope),
            "region missing or malformed");
    REQUIRE(req->service && check_chars(req->service, SCOPE_PART_MAX, ok_scope),
            "service missing or malformed");
    REQUIRE(req->access_key && check_chars(req->access_key, ACCESS_KEY_MAX, ok_access_key),
            "access key missing or malformed");
    /* the secret is never echoed, only its presence and length are checked */
    REQUIRE(req->secret_key && req->secret_key[0] != '\0' &&
                strnlen(req->secret_key, SECRET_MAX + 1) <= SECRET_MAX,
            "secret key missing or longer than 256 bytes");
    REQUIRE(req->payload_hash && ok_payload_hash(req->payload_hash),
            "payload hash must be 64 lower-case hex digits or UNSIGNED-PAYLOAD");
    if (has_token(req)) {
        REQUIRE(check_chars(req->session_token, STOW_SIGV4_TOKEN_LINE_MAX - sizeof(TOKEN_HEADER),
                            ok_visible),
                "session token too long or contains spaces or control characters");
    }
#undef REQUIRE
    return STOW_OK;
}

/* ---- path ---- */

static int put_path(sbuf *b, const char *path, stow_error *err)
{
    if (path == NULL || path[0] == '\0') {
        sb_putc(b, '/');
        return STOW_OK;
    }
    if (path[0] != '/')
        return stow_error_set(err, STOW_EUSAGE, "sigv4: path must start with '/'");
    size_t n = strnlen(path, STOW_SIGV4_PATH_MAX + 1);
    if (n > STOW_SIGV4_PATH_MAX)
        return stow_error_set(err, STOW_EUSAGE, "sigv4: path longer than %d bytes",
                              STOW_SIGV4_PATH_MAX);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)path[i];
        if (c == '%') {
            if (i + 2 >= n || !is_upper_hex((unsigned char)path[i + 1]) ||
                !is_upper_hex((unsigned char)path[i + 2]))
                return stow_error_set(err, STOW_EUSAGE,
                                      "sigv4: path has '%%' not followed by two upper-case hex "
                                      "digits at offset %zu",
                                      i);
            i += 2;
        } else if (!is_unreserved(c) && c != '/') {
            return stow_error_set(err, STOW_EUSAGE,
                                  "sigv4: path is not URI-encoded (byte 0x%02X at offset %zu); "
                                  "build it with stow_sigv4_uri_encode",
                                  c, i);
        }
    }
    sb_putn(b, path, n);
    return STOW_OK;
}

/* ---- query ---- */

typedef struct qparam {
    const char *key; /* encoded, NUL-terminated, in the arena */
    const char *val;
} qparam;

static int qparam_cmp(const void *a, const void *b)
{
    const qparam *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c != 0 ? c : strcmp(x->val, y->val);
}

/* Decodes s[0..n) and encodes it again the AWS way into the arena, NUL-terminated. */
static int requote(sbuf *arena, const char *s, size_t n, stow_error *err)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            int hi = i + 2 < n ? hex_value((unsigned char)s[i + 1]) : -1;
            int lo = hi >= 0 ? hex_value((unsigned char)s[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return stow_error_set(err, STOW_EUSAGE,
                                      "sigv4: query has '%%' not followed by two hex digits");
            c = (unsigned char)(hi * 16 + lo);
            i += 2;
        } else if (c == '+') {
            return stow_error_set(err, STOW_EUSAGE,
                                  "sigv4: query has a literal '+'; send %%2B or %%20");
        } else if (c <= 0x20 || c >= 0x7f || c == '#') {
            return stow_error_set(err, STOW_EUSAGE, "sigv4: query is not URI-encoded (byte 0x%02X)",
                                  c);
        }
        sb_encode_byte(arena, c, 1);
    }
    sb_putc(arena, '\0');
    return STOW_OK;
}

static int put_query(sbuf *b, const char *query, stow_error *err)
{
    int rc = STOW_EUSAGE;
    char *mem = NULL;
    qparam *params = NULL;
    size_t nparams = 0;

    if (query == NULL || query[0] == '\0')
        return STOW_OK;
    size_t len = strnlen(query, STOW_SIGV4_QUERY_MAX + 1);
    if (len > STOW_SIGV4_QUERY_MAX)
        return stow_error_set(err, STOW_EUSAGE, "sigv4: query longer than %d bytes",
                              STOW_SIGV4_QUERY_MAX);
    /* every input byte becomes at most 3 output bytes, plus two NULs per parameter */
    size_t arena_cap = 5 * len + 2;
    mem = malloc(arena_cap);
    params = calloc(STOW_SIGV4_MAX_QUERY_PARAMS, sizeof(*params));
    if (mem == NULL || params == NULL) {
        rc = stow_error_set(err, STOW_ERR, "sigv4: out of memory");
        goto done;
    }
    sbuf arena;
    sb_init(&arena, mem, arena_cap);

    const char *p = query;
    while (*p != '\0') {
        size_t seglen = strcspn(p, "&");
        if (seglen > 0) {
            if (nparams == STOW_SIGV4_MAX_QUERY_PARAMS) {
                stow_error_set(err, STOW_EUSAGE, "sigv4: more than %d query parameters",
                               STOW_SIGV4_MAX_QUERY_PARAMS);
                goto done;
            }
            const char *eq = memchr(p, '=', seglen);
            size_t klen = eq ? (size_t)(eq - p) : seglen;
            if (klen == 0) {
                stow_error_set(err, STOW_EUSAGE, "sigv4: query parameter without a name");
                goto done;
            }
            if (eq != NULL && memchr(eq + 1, '=', seglen - klen - 1) != NULL) {
                stow_error_set(err, STOW_EUSAGE, "sigv4: query value has a literal '='");
                goto done;
            }
            size_t key_off = arena.len;
            if (requote(&arena, p, klen, err) != STOW_OK)
                goto done;
            size_t val_off = arena.len;
            if (eq != NULL && requote(&arena, eq + 1, seglen - klen - 1, err) != STOW_OK)
                goto done;
            if (eq == NULL)
                sb_putc(&arena, '\0');
            if (arena.failed) { /* cannot happen given arena_cap; kept as a guard */
                stow_error_set(err, STOW_EUSAGE, "sigv4: query too long");
                goto done;
            }
            /* sb_putc of '\0' stores it and advances len, so offsets stay valid */
            params[nparams].key = mem + key_off;
            params[nparams].val = mem + val_off;
            nparams++;
        }
        p += seglen;
        if (*p == '&')
            p++;
    }
    qsort(params, nparams, sizeof(*params), qparam_cmp);
    for (size_t i = 0; i < nparams; i++) {
        if (i > 0)
            sb_putc(b, '&');
        sb_puts(b, params[i].key);
        sb_putc(b, '=');
        sb_puts(b, params[i].val);
    }
    rc = STOW_OK;
done:
    free(params);
    free(mem);
    return rc;
}

/* ---- headers ---- */

typedef struct hdr {
    char name[NAME_MAX_LEN + 1]; /* lower-case */
    const char *value;           /* raw; trimmed and collapsed on output */
} hdr;

static int hdr_cmp(const void *a, const void *b)
{
    return strcmp(((const hdr *)a)->name, ((const hdr *)b)->name);
}

static int is_tchar(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int add_header(hdr *h, const char *name, size_t nlen, const char *value, stow_error *err)
{
    if (nlen == 0 || nlen > NAME_MAX_LEN)
        return stow_error_set(err, STOW_EUSAGE, "sigv4: header name empty or too long");
    for (size_t i = 0; i < nlen; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!is_tchar(c))
            return stow_error_set(err, STOW_EUSAGE, "sigv4: bad character in header name");
        h->name[i] = (char)((c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c);
    }
    h->name[nlen] = '\0';
    for (const unsigned char *v = (const unsigned char *)value; *v != '\0'; v++) {
        if ((*v < 0x20 && *v != '\t') || *v == 0x7f)
            return stow_error_set(err, STOW_EUSAGE,
                                  "sigv4: control character in the value of header %s", h->name);
    }
    h->value = value;
    return STOW_OK;
}

/* Value with leading and trailing blanks removed and inner runs collapsed to one space. */
static void sb_put_header_value(sbuf *b, const char *v)
{
    int started = 0, pending = 0;
    for (; *v != '\0'; v++) {
        if (*v == ' ' || *v == '\t') {
            pending = started;
            continue;
        }
        if (pending)
            sb_putc(b, ' ');
        pending = 0;
        started = 1;
        sb_putc(b, *v);
    }
}

static int collect_headers(hdr *hs, size_t *count, const stow_sigv4_request *req, stow_error *err)
{
    size_t n = 0;
    int rc;
    if ((rc = add_header(&hs[n++], "host", 4, req->host, err)) != STOW_OK)
        return rc;
    if ((rc = add_header(&hs[n++], "x-amz-content-sha256", 20, req->payload_hash, err)) != STOW_OK)
        return rc;
    if ((rc = add_header(&hs[n++], "x-amz-date", 10, req->amz_date, err)) != STOW_OK)
        return rc;
    if (has_token(req) &&
        (rc = add_header(&hs[n++], "x-amz-security-token", 20, req->session_token, err)) != STOW_OK)
        return rc;
    for (size_t i = 0; req->headers != NULL && req->headers[i] != NULL; i++) {
        if (i >= STOW_SIGV4_MAX_HEADERS)
            return stow_error_set(err, STOW_EUSAGE, "sigv4: more than %d extra headers",
                                  STOW_SIGV4_MAX_HEADERS);
        const char *line = req->headers[i];
        const char *colon = strchr(line, ':');
        if (colon == NULL)
            return stow_error_set(err, STOW_EUSAGE, "sigv4: header without ':' (#%zu)", i + 1);
        if ((rc = add_header(&hs[n++], line, (size_t)(colon - line), colon + 1, err)) != STOW_OK)
            return rc;
    }
    qsort(hs, n, sizeof(*hs), hdr_cmp);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(hs[i - 1].name, hs[i].name) == 0)
            return stow_error_set(err, STOW_EUSAGE,
                                  "sigv4: header %s given twice (host, x-amz-date, "
                                  "x-amz-content-sha256 and x-amz-security-token are added "
                                  "by the signer)",
                                  hs[i].name);
    }
    *count = n;
    return STOW_OK;
}

/* ---- canonical request, string to sign, signature ---- */

static int build_canonical(sbuf *canon, sbuf *signed_headers, const stow_sigv4_request *req,
                           stow_error *err)
{
    int rc = STOW_OK;
    hdr *hs = NULL;
    size_t nh = 0;

    if ((rc = validate(req, err)) != STOW_OK)
        return rc;
    hs = calloc(STOW_SIGV4_MAX_HEADERS + 4, sizeof(*hs));
    if (hs == NULL)
        return stow_error_set(err, STOW_ERR, "sigv4: out of memory");

    sb_puts(canon, req->method);
    sb_putc(canon, '\n');
    if ((rc = put_path(canon, req->path, err)) != STOW_OK)
        goto done;
    sb_putc(canon, '\n');
    if ((rc = put_query(canon, req->query, err)) != STOW_OK)
        goto done;
    sb_putc(canon, '\n');
    if ((rc = collect_headers(hs, &nh, req, err)) != STOW_OK)
        goto done;
    for (size_t i = 0; i < nh; i++) {
        sb_puts(canon, hs[i].name);
        sb_putc(canon, ':');
        sb_put_header_value(canon, hs[i].value);
        sb_putc(canon, '\n');
        if (i > 0)
            sb_putc(signed_headers, ';');
        sb_puts(signed_headers, hs[i].name);
    }
    sb_putc(canon, '\n');
    sb_puts(canon, signed_headers->ptr);
    sb_putc(canon, '\n');
    sb_puts(canon, req->payload_hash);
    if (signed_headers->failed) {
        rc = stow_error_set(err, STOW_EUSAGE, "sigv4: signed header list too long");
        goto done;
    }
    if (canon->failed) {
        rc = stow_error_set(err, STOW_EUSAGE, "sigv4: canonical request does not fit in %zu bytes",
                            canon->max + 1);
        goto done;
    }
done:
    free(hs);
    return rc;
}

static void put_scope(sbuf *b, const stow_sigv4_request *req)
{
    sb_putn(b, req->amz_date, 8);
    sb_putc(b, '/');
    sb_puts(b, req->region);
    sb_putc(b, '/');
    sb_puts(b, req->service);
    sb_puts(b, "/aws4_request");
}

static void build_string_to_sign(sbuf *sts, const sbuf *canon, const stow_sigv4_request *req)
{
    char hex[STOW_SIGV4_HASH_HEX_SIZE];
    stow_sigv4_payload_hash(hex, canon->ptr, canon->len);
    sb_puts(sts, ALGORITHM "\n");
    sb_puts(sts, req->amz_date);
    sb_putc(sts, '\n');
    put_scope(sts, req);
    sb_putc(sts, '\n');
    sb_puts(sts, hex);
}

static int hmac(uint8_t out[STOW_SHA256_LEN], const void *key, size_t keylen, const void *data,
                size_t datalen)
{
    unsigned int outlen = 0;
    if (keylen > INT32_MAX ||
        HMAC(EVP_sha256(), key, (int)keylen, data, datalen, out, &outlen) == NULL ||
        outlen != STOW_SHA256_LEN)
        return STOW_ERR;
    return STOW_OK;
}

static int compute_signature(char out[STOW_SIGV4_HASH_HEX_SIZE], const stow_sigv4_request *req,
                             const char *string_to_sign, size_t sts_len, stow_error *err)
{
    int rc = STOW_ERR;
    char kin[4 + SECRET_MAX + 1];
    uint8_t k[STOW_SHA256_LEN];
    uint8_t sig[STOW_SHA256_LEN];
    size_t slen = strlen(req->secret_key); /* bounded by validate */

    memcpy(kin, "AWS4", 4);
    memcpy(kin + 4, req->secret_key, slen);
    if (hmac(k, kin, 4 + slen, req->amz_date, 8) != STOW_OK ||
        hmac(k, k, sizeof(k), req->region, strlen(req->region)) != STOW_OK ||
        hmac(k, k, sizeof(k), req->service, strlen(req->service)) != STOW_OK ||
        hmac(k, k, sizeof(k), "aws4_request", 12) != STOW_OK ||
        hmac(sig, k, sizeof(k), string_to_sign, sts_len) != STOW_OK) {
        stow_error_set(err, STOW_ERR, "sigv4: HMAC-SHA256 failed");
        goto done;
    }
    stow_hex(out, sig, sizeof(sig));
    rc = STOW_OK;
done:
    OPENSSL_cleanse(kin, sizeof(kin));
    OPENSSL_cleanse(k, sizeof(k));
    return rc;
}

int stow_sigv4_canonical_request(char *out, size_t cap, const stow_sigv4_request *req,
                                 stow_error *err)
{
    char shbuf[SIGNED_HEADERS_MAX];
    sbuf canon, sh;
    sb_init(&canon, out, cap);
    sb_init(&sh, shbuf, sizeof(shbuf));
    return build_canonical(&canon, &sh, req, err);
}

int stow_sigv4_string_to_sign(char *out, size_t cap, const stow_sigv4_request *req, stow_error *err)
{
    int rc;
    char shbuf[SIGNED_HEADERS_MAX];
    char *cbuf = malloc(STOW_SIGV4_CANONICAL_MAX);
    sbuf canon, sh, sts;
    if (cbuf == NULL)
        return stow_error_set(err, STOW_ERR, "sigv4: out of memory");
    sb_init(&canon, cbuf, STOW_SIGV4_CANONICAL_MAX);
    sb_init(&sh, shbuf, sizeof(shbuf));
    sb_init(&sts, out, cap);
    rc = build_canonical(&canon, &sh, req, err);
    if (rc == STOW_OK) {
        build_string_to_sign(&sts, &canon, req);
        if (sts.failed)
            rc = stow_error_set(err, STOW_EUSAGE, "sigv4: string to sign does not fit");
    }
    free(cbuf);
    return rc;
}

int stow_sigv4_sign(stow_sigv4_headers *out, const stow_sigv4_request *req, stow_error *err)
{
    int rc;
    char shbuf[SIGNED_HEADERS_MAX];
    char stsbuf[STRING_TO_SIGN_MAX];
    char *cbuf = NULL;
    sbuf canon, sh, sts, line;

    memset(out, 0, sizeof(*out));
    cbuf = malloc(STOW_SIGV4_CANONICAL_MAX);
    if (cbuf == NULL)
        return stow_error_set(err, STOW_ERR, "sigv4: out of memory");
    sb_init(&canon, cbuf, STOW_SIGV4_CANONICAL_MAX);
    sb_init(&sh, shbuf, sizeof(shbuf));
    sb_init(&sts, stsbuf, sizeof(stsbuf));

    if ((rc = build_canonical(&canon, &sh, req, err)) != STOW_OK)
        goto done;
    build_string_to_sign(&sts, &canon, req);
    if (sts.failed) { /* bounded by validate(); a guard, not an expected path */
        rc = stow_error_set(err, STOW_EUSAGE, "sigv4: string to sign does not fit");
        goto done;
    }
    if ((rc = compute_signature(out->signature, req, sts.ptr, sts.len, err)) != STOW_OK)
        goto done;

    sb_init(&line, out->authorization, sizeof(out->authorization));
    sb_puts(&line, "Authorization: " ALGORITHM " Credential=");
    sb_puts(&line, req->access_key);
    sb_putc(&line, '/');
    put_scope(&line, req);
    sb_puts(&line, ", SignedHeaders=");
    sb_puts(&line, sh.ptr);
    sb_puts(&line, ", Signature=");
    sb_puts(&line, out->signature);
    if (line.failed) {
        rc = stow_error_set(err, STOW_EUSAGE, "sigv4: Authorization header does not fit");
        goto done;
    }
    snprintf(out->amz_date, sizeof(out->amz_date), "x-amz-date: %s", req->amz_date);
    snprintf(out->content_sha256, sizeof(out->content_sha256), "x-amz-content-sha256: %s",
             req->payload_hash);
    if (has_token(req)) {
        sb_init(&line, out->security_token, sizeof(out->security_token));
        sb_puts(&line, TOKEN_HEADER);
        sb_puts(&line, req->session_token); /* length bounded by validate() */
        if (line.failed) {
            rc = stow_error_set(err, STOW_EUSAGE, "sigv4: session token does not fit");
            goto done;
        }
    }
    rc = STOW_OK;
done:
    if (rc != STOW_OK) {
        OPENSSL_cleanse(out, sizeof(*out));
    }
    free(cbuf);
    return rc;
}
