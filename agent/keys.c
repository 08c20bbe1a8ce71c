#include "keys.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include "branch.h"
#include "glob.h"
#include "hash.h"

#define QUOTE_MAX 256 /* how much of a template or key a message quotes */

/* ---- characters and messages ------------------------------------------------------------- */

static int key_char_ok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

void stow_key_escape_ref(char out[STOW_KEY_MAX + 1], const char *name)
{
    static const char hx[] = "0123456789abcdef";
    size_t o = 0, keep = STOW_KEY_MAX - 2 - 32, cut = 0;
    int too_long = 0;
    for (size_t i = 0; name[i] != '\0'; i++) {
        unsigned char c = (unsigned char)name[i];
        int plain = c != '_' && key_char_ok(c) && !(i == 0 && c == '.');
        size_t need = plain ? 1 : 3;
        if (o + need > STOW_KEY_MAX) {
            too_long = 1;
            break;
        }
        if (o + need <= keep)
            cut = o + need;
        if (plain) {
            out[o++] = (char)c;
        } else {
            out[o++] = '_';
            out[o++] = hx[c >> 4];
            out[o++] = hx[c & 15];
        }
    }
    out[o] = '\0';
    if (too_long) {
        uint8_t d[STOW_SHA256_LEN];
        char hex[2 * STOW_SHA256_LEN + 1];
        stow_sha256_buf(d, name, strlen(name));
        stow_hex(hex, d, sizeof(d));
        snprintf(out + cut, STOW_KEY_MAX + 1 - cut, "__%.32s", hex);
    }
}

/* Copies len bytes of s into out for a message: non-printable bytes become \xNN, and a
 * string that does not fit ends in "...". Returns out. */
const char *stow_key_quote(char *out, size_t outsz, const char *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        size_t need = (c >= 0x20 && c < 0x7f) ? 1 : 4;
        if (o + need + 4 > outsz) { /* keep room for "..." and NUL */
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (need == 1) {
            out[o++] = (char)c;
        } else {
            snprintf(out + o, outsz - o, "\\x%02x", c);
            o += 4;
        }
    }
    out[o] = '\0';
    return out;
}

void stow_key_sanitize(char *s)
{
    if (s == NULL)
        return;
    for (; *s != '\0'; s++) {
        if (!key_char_ok((unsigned char)*s))
            *s = '-';
    }
}

int stow_key_validate(const char *key, const char *what, stow_error *err)
{
    char q[QUOTE_MAX];
    if (what == NULL)
        what = "key";
    if (key == NULL || key[0] == '\0')
        return stow_error_set(err, STOW_EUSAGE, "%s is empty", what);
    size_t len = strlen(key);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)key[i];
        if (key_char_ok(c))
            continue;
        char shown[8];
        if (c >= 0x20 && c < 0x7f)
            snprintf(shown, sizeof(shown), "'%c'", (char)c);
        else
            snprintf(shown, sizeof(shown), "\\x%02x", c);
        return stow_error_set(err, STOW_EUSAGE,
                              "%s \"%s\": character %s at offset %zu is not allowed "
                              "(allowed: A-Z a-z 0-9 . _ -)",
                              what, stow_key_quote(q, sizeof(q), key, len), shown, i);
    }
    if (key[0] == '.')
        return stow_error_set(err, STOW_EUSAGE, "%s \"%s\" must not start with '.'", what,
                              stow_key_quote(q, sizeof(q), key, len));
    if (len > STOW_KEY_MAX)
        return stow_error_set(err, STOW_EUSAGE, "%s \"%s\" is %zu bytes long; the limit is %d",
                              what, stow_key_quote(q, sizeof(q), key, len), len, STOW_KEY_MAX);
    return STOW_OK;
}

/* ---- templates ----------------------------------------------------------------------------- */

typedef struct {
    char *buf;
    size_t len, cap;
} strbuf;

static int sb_append(strbuf *b, const char *s, size_t n, stow_error *err)
{
    if (n > STOW_KEY_EXPANDED_MAX - b->len)
        return stow_error_set(err, STOW_EUSAGE, "expansion longer than %d bytes",
                              STOW_KEY_EXPANDED_MAX);
    if (b->buf == NULL) { /* small and bounded: allocate the cap once */
        b->cap = STOW_KEY_EXPANDED_MAX + 1;
        b->buf = malloc(b->cap);
        if (b->buf == NULL)
            return stow_error_set(err, STOW_ERR, "out of memory");
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = '\0';
    return STOW_OK;
}

static int uname_field(char *out, size_t outsz, int machine, stow_error *err)
{
    struct utsname u;
    if (uname(&u) != 0)
        return stow_error_set(err, STOW_ERR, "uname: %s", strerror(errno));
    const char *f = machine ? u.machine : u.sysname;
    size_t n = strnlen(f, machine ? sizeof(u.machine) : sizeof(u.sysname));
    if (n >= outsz)
        n = outsz - 1;
    memcpy(out, f, n);
    out[n] = '\0';
    return STOW_OK;
}

static int expand_os(strbuf *b, stow_error *err)
{
    char s[128];
    int rc = uname_field(s, sizeof(s), 0, err);
    if (rc != STOW_OK)
        return rc;
    for (char *p = s; *p != '\0'; p++) {
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    }
    stow_key_sanitize(s);
    return sb_append(b, s, strlen(s), err);
}

static int expand_arch(strbuf *b, stow_error *err)
{
    char s[128];
    int rc = uname_field(s, sizeof(s), 1, err);
    if (rc != STOW_OK)
        return rc;
    const char *v = s;
    if (strcmp(s, "x86_64") == 0 || strcmp(s, "amd64") == 0)
        v = "x64";
    else if (strcmp(s, "aarch64") == 0 || strcmp(s, "arm64") == 0)
        v = "arm64";
    else
        stow_key_sanitize(s);
    return sb_append(b, v, strlen(v), err);
}

static int expand_env(strbuf *b, const char *name, size_t n, stow_error *err)
{
    char q[QUOTE_MAX];
    char var[256];
    int ok = n > 0 && n < sizeof(var) && !(name[0] >= '0' && name[0] <= '9');
    for (size_t i = 0; ok && i < n; i++) {
        char ch = name[i];
        ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
             ch == '_';
    }
    if (!ok)
        return stow_error_set(err, STOW_EUSAGE,
                              "invalid environment variable name \"%s\" "
                              "(expected [A-Za-z_][A-Za-z0-9_]*)",
                              stow_key_quote(q, sizeof(q), name, n));
    memcpy(var, name, n);
    var[n] = '\0';
    const char *v = getenv(var);
    if (v == NULL)
        return stow_error_set(err, STOW_EUSAGE, "environment variable %s is not set", var);
    if (v[0] == '\0')
        return stow_error_set(err, STOW_EUSAGE, "environment variable %s is empty", var);
    size_t start = b->len;
    int rc = sb_append(b, v, strlen(v), err);
    if (rc == STOW_OK)
        stow_key_sanitize(b->buf + start);
    return rc;
}

static int expand_hash(strbuf *b, const char *globs, size_t n, const char *base_dir,
                       stow_error *err)
{
    char hex[STOW_SHA256_HEX_LEN + 1];
    char *list = strndup(globs, n);
    if (list == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    int rc = stow_key_hash_files(hex, list, base_dir, err);
    free(list);
    if (rc != STOW_OK)
        return rc;
    return sb_append(b, hex, STOW_SHA256_HEX_LEN, err);
}

static int expand_branch(strbuf *b, const char *base_dir, stow_error *err)
{
    char *branch = NULL;
    int rc = stow_key_branch(&branch, base_dir, err);
    if (rc == STOW_OK)
        rc = sb_append(b, branch, strlen(branch), err);
    free(branch);
    return rc;
}

/* {ref:NAME}: the variable escaped as a scope (stow_key_escape_ref); unset or empty gives "",
 * so a fallback scope of a ref that does not exist here drops out. */
static int expand_ref(strbuf *b, const char *name, size_t n, stow_error *err)
{
    char esc[STOW_KEY_MAX + 1];
    char var[256];
    int ok = n > 0 && n < sizeof(var) && !(name[0] >= '0' && name[0] <= '9');
    for (size_t i = 0; ok && i < n; i++)
        ok = (name[i] >= 'a' && name[i] <= 'z') || (name[i] >= 'A' && name[i] <= 'Z') ||
             (name[i] >= '0' && name[i] <= '9') || name[i] == '_';
    if (!ok)
        return expand_env(b, name, n, err); /* its message names the bad variable */
    memcpy(var, name, n);
    var[n] = '\0';
    const char *v = getenv(var);
    if (v == NULL || v[0] == '\0')
        return STOW_OK;
    stow_key_escape_ref(esc, v);
    return sb_append(b, esc, strlen(esc), err);
}

static int placeholder_is(const char *s, size_t n, const char *word)
{
    return strlen(word) == n && memcmp(s, word, n) == 0;
}

/* Expands the placeholder body s (n bytes, between the braces). */
static int expand_placeholder(strbuf *b, const char *s, size_t n, const char *base_dir,
                              stow_error *err)
{
    if (placeholder_is(s, n, "os"))
        return expand_os(b, err);
    if (placeholder_is(s, n, "arch"))
        return expand_arch(b, err);
    if (placeholder_is(s, n, "branch"))
        return expand_branch(b, base_dir, err);
    if (n >= 4 && memcmp(s, "env:", 4) == 0)
        return expand_env(b, s + 4, n - 4, err);
    if (n >= 5 && memcmp(s, "hash:", 5) == 0)
        return expand_hash(b, s + 5, n - 5, base_dir, err);
    if (n >= 4 && memcmp(s, "ref:", 4) == 0)
        return expand_ref(b, s + 4, n - 4, err);
    return stow_error_set(err, STOW_EUSAGE,
                          "unknown placeholder (known: {hash:GLOB[,GLOB...]}, {os}, {arch}, "
                          "{env:NAME}, {ref:NAME}, {branch})");
}

int stow_key_expand(char **out, const char *tmpl, const char *base_dir, stow_error *err)
{
    int rc = STOW_OK;
    strbuf b = {0};
    char qt[QUOTE_MAX], qp[QUOTE_MAX];

    *out = NULL;
    if (tmpl == NULL)
        return stow_error_set(err, STOW_EUSAGE, "no key template given");
    size_t tlen = strlen(tmpl);
    stow_key_quote(qt, sizeof(qt), tmpl, tlen);
    if (tlen > STOW_KEY_TEMPLATE_MAX)
        return stow_error_set(err, STOW_EUSAGE, "key template \"%s\" is longer than %d bytes", qt,
                              STOW_KEY_TEMPLATE_MAX);
    rc = sb_append(&b, "", 0, err);
    if (rc != STOW_OK)
        goto done;
    for (size_t i = 0; i < tlen;) {
        if (tmpl[i] == '}') {
            rc = stow_error_set(err, STOW_EUSAGE,
                                "key template \"%s\": '}' at offset %zu without '{'", qt, i);
            goto done;
        }
        if (tmpl[i] != '{') {
            size_t j = i;
            while (j < tlen && tmpl[j] != '{' && tmpl[j] != '}')
                j++;
            rc = sb_append(&b, tmpl + i, j - i, err);
            if (rc != STOW_OK) {
                stow_error_wrap(err, "key template \"%s\"", qt);
                goto done;
            }
            i = j;
            continue;
        }
        size_t j = i + 1;
        while (j < tlen && tmpl[j] != '}' && tmpl[j] != '{')
            j++;
        if (j == tlen || tmpl[j] == '{') {
            rc = stow_error_set(err, STOW_EUSAGE,
                                "key template \"%s\": unterminated '{' at offset %zu: \"%s\"", qt,
                                i, stow_key_quote(qp, sizeof(qp), tmpl + i, j - i));
            goto done;
        }
        rc = expand_placeholder(&b, tmpl + i + 1, j - i - 1, base_dir, err);
        if (rc != STOW_OK) {
            stow_error_wrap(err, "key template \"%s\": %s", qt,
                            stow_key_quote(qp, sizeof(qp), tmpl + i, j + 1 - i));
            goto done;
        }
        i = j + 1;
    }
    *out = b.buf;
    b.buf = NULL;
done:
    free(b.buf);
    return rc;
}
