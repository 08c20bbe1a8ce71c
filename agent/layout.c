#include "layout.h"
#include "keys.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "util.h"

/* ------------------------------------------------------------------------------------------
 * Names
 * ------------------------------------------------------------------------------------------ */

static int build(char *out, size_t outsz, const char *fmt1, const char *a, const char *fmt2,
                 const char *b, const char *suffix)
{
    int n = snprintf(out, outsz, "%s%s%s%s%s", fmt1, a, fmt2, b, suffix);
    if (n < 0 || (size_t)n >= outsz || !stow_backend_name_ok(out))
        return STOW_EUSAGE;
    return STOW_OK;
}

int stow_layout_manifest_name(char *out, size_t outsz, const char *scope, const char *key)
{
    return build(out, outsz, STOW_LAYOUT_MANIFESTS, scope, "/", key, ".json");
}

int stow_layout_ref_name(char *out, size_t outsz, const char *scope, const char *prefix)
{
    return build(out, outsz, STOW_LAYOUT_REFS, scope, "/", prefix, "");
}

int stow_layout_access_name(char *out, size_t outsz, const char *scope, const char *key)
{
    return build(out, outsz, STOW_LAYOUT_ACCESS, scope, "/", key, "");
}

int stow_layout_layer_name(char *out, size_t outsz, const char *id)
{
    return build(out, outsz, STOW_LAYOUT_LAYERS, id, "", "", ".tar.zst");
}

int stow_layout_lease_name(char *out, size_t outsz, const char *id)
{
    return build(out, outsz, STOW_LAYOUT_LEASES, id, "", "", ".json");
}

/* Splits "<dir><scope>/<rest><suffix>" (rest without '/'); parts are STOW_LAYOUT_PART_MAX. */
static int split2(char *scope, char *rest, const char *name, const char *dir, const char *suffix)
{
    size_t dl = strlen(dir);
    if (strncmp(name, dir, dl) != 0)
        return -1;
    const char *s = name + dl;
    const char *slash = strchr(s, '/');
    if (slash == NULL || slash == s || strchr(slash + 1, '/') != NULL ||
        (size_t)(slash - s) >= STOW_LAYOUT_PART_MAX)
        return -1;
    const char *r = slash + 1;
    size_t rl = strlen(r), sl = strlen(suffix);
    if (rl <= sl || strcmp(r + rl - sl, suffix) != 0 || rl - sl >= STOW_LAYOUT_PART_MAX ||
        r[0] == '.')
        return -1;
    memcpy(scope, s, (size_t)(slash - s));
    scope[slash - s] = '\0';
    memcpy(rest, r, rl - sl);
    rest[rl - sl] = '\0';
    /* A listed name that stowage could not have written (hostile or foreign store content)
     * is not an entry: it never reaches a log line or stdout. */
    if (stow_key_validate(scope, "scope", NULL) != STOW_OK ||
        stow_key_validate(rest, "key", NULL) != STOW_OK)
        return -1;
    return 0;
}

int stow_layout_parse_manifest(char *scope, char *key, const char *name)
{
    return split2(scope, key, name, STOW_LAYOUT_MANIFESTS, ".json");
}

int stow_layout_parse_ref(char *scope, char *prefix, const char *name)
{
    return split2(scope, prefix, name, STOW_LAYOUT_REFS, "");
}

int stow_layout_parse_access(char *scope, char *key, const char *name)
{
    return split2(scope, key, name, STOW_LAYOUT_ACCESS, "");
}

static int is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* "<dir><32 hex><suffix>" */
static int parse_id(char *id, const char *name, const char *dir, const char *suffix)
{
    size_t dl = strlen(dir), sl = strlen(suffix);
    if (strncmp(name, dir, dl) != 0)
        return -1;
    const char *p = name + dl;
    if (strlen(p) != STOW_LAYER_ID_LEN + sl || strcmp(p + STOW_LAYER_ID_LEN, suffix) != 0 ||
        !is_hex(p, STOW_LAYER_ID_LEN))
        return -1;
    memcpy(id, p, STOW_LAYER_ID_LEN);
    id[STOW_LAYER_ID_LEN] = '\0';
    return 0;
}

int stow_layout_parse_layer(char *id, const char *name)
{
    return parse_id(id, name, STOW_LAYOUT_LAYERS, ".tar.zst");
}

int stow_layout_parse_lease(char *id, const char *name)
{
    return parse_id(id, name, STOW_LAYOUT_LEASES, ".json");
}

int stow_layout_parse_temp(char *target, size_t targetsz, const char *name)
{
    /* backends/file.c: "%s/.%s.%s.tmp" with 16 hex characters of randomness. */
    const char *slash = strrchr(name, '/');
    const char *base = slash ? slash + 1 : name;
    size_t bl = strlen(base);
    if (base[0] != '.' || bl < 1 + 1 + 1 + 16 + 4 || strcmp(base + bl - 4, ".tmp") != 0)
        return -1;
    const char *rnd = base + bl - 4 - 16;
    if (rnd[-1] != '.' || !is_hex(rnd, 16))
        return -1;
    size_t dirlen = (size_t)(base - name);
    size_t tl = (size_t)(rnd - 1 - (base + 1));
    if (dirlen + tl + 1 > targetsz)
        return -1;
    memcpy(target, name, dirlen);
    memcpy(target + dirlen, base + 1, tl);
    target[dirlen + tl] = '\0';
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Formats
 * ------------------------------------------------------------------------------------------ */

static int dump(char **out, size_t *outlen, json_t *o, stow_error *err)
{
    *out = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (*out == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    if (outlen)
        *outlen = strlen(*out);
    return STOW_OK;
}

int stow_layout_ref_encode(char **out, size_t *outlen, const char *key, int64_t created,
                           stow_error *err)
{
    return dump(out, outlen, json_pack("{s:s, s:I}", "key", key, "created", (json_int_t)created),
                err);
}

int stow_layout_ref_decode(char *key, size_t keysz, const char *buf, size_t len, const char *prefix,
                           const char *what, stow_error *err)
{
    json_error_t je;
    json_t *o = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
    const char *k = NULL;
    int rc = STOW_OK;
    if (o == NULL || json_unpack(o, "{s:s}", "key", &k) != 0 || k[0] == '\0' ||
        (prefix != NULL && strncmp(k, prefix, strlen(prefix)) != 0) ||
        strlen(k) >= STOW_LAYOUT_PART_MAX || stow_key_validate(k, "key", NULL) != STOW_OK ||
        stow_strlcpy(key, k, keysz) != 0)
        rc = stow_error_set(err, STOW_ECORRUPT, "%s: not a valid ref", what);
    json_decref(o);
    return rc;
}

int stow_layout_access_encode(char *out, size_t outsz, int64_t t)
{
    int n = snprintf(out, outsz, "{\"time\":%lld}", (long long)t);
    return (n < 0 || (size_t)n >= outsz) ? STOW_ERR : n;
}

int64_t stow_layout_access_decode(const char *buf, size_t len)
{
    json_error_t je;
    json_t *o = json_loadb(buf, len, 0, &je);
    json_int_t v = 0;
    int64_t t = 0;
    if (o != NULL && json_unpack(o, "{s:I}", "time", &v) == 0 && v > 0)
        t = (int64_t)v;
    json_decref(o);
    return t;
}

int stow_lease_encode(char **out, size_t *outlen, const stow_lease *l, stow_error *err)
{
    json_t *ids = json_array();
    for (size_t i = 0; ids != NULL && i < l->nlayers; i++)
        if (json_array_append_new(ids, json_string(l->layers[i])) != 0) {
            json_decref(ids);
            ids = NULL;
        }
    if (ids == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    return dump(out, outlen,
                json_pack("{s:s, s:I, s:s, s:s, s:o}", "id", l->id, "time", (json_int_t)l->time,
                          "scope", l->scope, "key", l->key, "layers", ids),
                err);
}

void stow_lease_clear(stow_lease *l)
{
    free(l->layers);
    memset(l, 0, sizeof(*l));
}

int stow_lease_decode(stow_lease *l, const char *buf, size_t len, const char *what, stow_error *err)
{
    json_error_t je;
    json_t *o = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je), *ids = NULL;
    const char *id = NULL, *scope = NULL, *key = NULL;
    json_int_t t = 0;
    int rc = STOW_ECORRUPT;
    memset(l, 0, sizeof(*l));
    if (o == NULL ||
        json_unpack(o, "{s:s, s:I, s:s, s:s, s:o}", "id", &id, "time", &t, "scope", &scope, "key",
                    &key, "layers", &ids) != 0 ||
        !json_is_array(ids) || json_array_size(ids) > 2 * STOW_MAX_LAYERS ||
        strlen(id) != STOW_LAYER_ID_LEN || !is_hex(id, STOW_LAYER_ID_LEN) || t <= 0 ||
        stow_strlcpy(l->scope, scope, sizeof(l->scope)) != 0 ||
        stow_strlcpy(l->key, key, sizeof(l->key)) != 0)
        goto done;
    memcpy(l->id, id, STOW_LAYER_ID_LEN + 1);
    l->time = (int64_t)t;
    size_t n = json_array_size(ids);
    l->layers = calloc(n ? n : 1, sizeof(*l->layers));
    if (l->layers == NULL) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(ids, i));
        if (s == NULL || strlen(s) != STOW_LAYER_ID_LEN || !is_hex(s, STOW_LAYER_ID_LEN))
            goto done;
        memcpy(l->layers[i], s, STOW_LAYER_ID_LEN + 1);
    }
    l->nlayers = n;
    rc = STOW_OK;
done:
    if (rc == STOW_ECORRUPT)
        stow_error_set(err, STOW_ECORRUPT, "%s: not a valid lease", what);
    if (rc != STOW_OK)
        stow_lease_clear(l);
    json_decref(o);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Capped reads
 * ------------------------------------------------------------------------------------------ */

typedef struct {
    stow_buf buf;
    int too_big;
} fetch_ctx;

static int fetch_sink(void *ud, const void *data, size_t len)
{
    fetch_ctx *c = ud;
    stow_error e = {0};
    if (len > c->buf.max - c->buf.len) {
        c->too_big = 1;
        return -1;
    }
    return stow_buf_add(&c->buf, data, len, &e) == STOW_OK ? 0 : -1;
}

int stow_layout_fetch(char **out, size_t *outlen, stow_backend *b, const char *name, size_t max,
                      stow_error *err)
{
    fetch_ctx c = {.too_big = 0};
    *out = NULL;
    if (outlen)
        *outlen = 0;
    stow_buf_init(&c.buf, max);
    int rc = stow_backend_get(b, name, 0, 0, fetch_sink, &c, err);
    if (c.too_big)
        rc = stow_error_set(err, STOW_ECORRUPT, "%s is larger than the %zu-byte limit", name, max);
    if (rc == STOW_OK) {
        size_t len = 0;
        *out = stow_buf_take(&c.buf, &len);
        if (*out == NULL)
            rc = stow_error_set(err, STOW_ERR, "out of memory");
        else if (outlen)
            *outlen = len;
    }
    stow_buf_free(&c.buf);
    return rc;
}

#define SIG_TAG "stowage-signature "

int stow_layout_manifest_seal(char **out, size_t *outlen, const char *name, const char *body,
                              size_t len, const stow_signer *signer, stow_error *err)
{
    char sig[STOW_SIGN_HEX_MAX], trailer[STOW_SIGN_ALG_MAX + STOW_SIGN_HEX_MAX + 32];
    int tl = 0;
    *out = NULL;
    if (stow_signer_can_sign(signer)) {
        int rc = stow_signer_sign(signer, sig, sizeof(sig), name, body, len, err);
        if (rc != STOW_OK)
            return rc;
        tl = snprintf(trailer, sizeof(trailer), "\n" SIG_TAG "%s %s\n", stow_signer_alg(signer),
                      sig);
        if (tl < 0 || (size_t)tl >= sizeof(trailer))
            return stow_error_set(err, STOW_ERR, "signature trailer too long");
    }
    if (len > SIZE_MAX - (size_t)tl - 1 || (*out = malloc(len + (size_t)tl + 1)) == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    memcpy(*out, body, len);
    memcpy(*out + len, trailer, (size_t)tl);
    (*out)[len + (size_t)tl] = '\0';
    *outlen = len + (size_t)tl;
    return STOW_OK;
}

static int token_ok(const char *s, size_t n, int hex_only)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
                 (!hex_only && ((c >= 'g' && c <= 'z') || c == '-'));
        if (!ok)
            return 0;
    }
    return 1;
}

int stow_layout_manifest_unseal(size_t *bodylen, char *alg, size_t algsz, char *sig, size_t sigsz,
                                const char *buf, size_t len)
{
    *bodylen = len;
    alg[0] = sig[0] = '\0';
    if (len < 2 || buf[len - 1] != '\n')
        return 0;
    size_t nl = len - 1;
    size_t stop = len - 1 > algsz + sigsz + 32 ? len - 1 - (algsz + sigsz + 32) : 0;
    while (nl > stop && buf[nl - 1] != '\n')
        nl--;
    if (nl == 0 || buf[nl - 1] != '\n')
        return 0;
    const char *line = buf + nl; /* after the newline that ends the manifest */
    size_t ll = len - 1 - nl, tag = strlen(SIG_TAG);
    if (ll <= tag || memcmp(line, SIG_TAG, tag) != 0)
        return 0;
    const char *a = line + tag, *end = line + ll;
    const char *sp = memchr(a, ' ', (size_t)(end - a));
    if (sp == NULL)
        return 0;
    size_t al = (size_t)(sp - a), sl = (size_t)(end - sp - 1);
    if (al >= algsz || sl >= sigsz || !token_ok(a, al, 0) || !token_ok(sp + 1, sl, 1))
        return 0;
    memcpy(alg, a, al);
    alg[al] = '\0';
    memcpy(sig, sp + 1, sl);
    sig[sl] = '\0';
    *bodylen = nl - 1;
    return 1;
}

int stow_layout_fetch_manifest_verified(stow_manifest **out, int *refused, stow_backend *b,
                                        const char *scope, const char *key,
                                        const stow_signer *signer, stow_error *err)
{
    char name[STOW_LAYOUT_NAME_MAX], alg[STOW_SIGN_ALG_MAX], sig[STOW_SIGN_HEX_MAX];
    char *buf = NULL;
    size_t len = 0, bodylen = 0;
    *out = NULL;
    if (refused != NULL)
        *refused = 0;
    if (stow_layout_manifest_name(name, sizeof(name), scope, key) != STOW_OK)
        return stow_error_set(err, STOW_EUSAGE, "bad scope or key: %s / %s", scope, key);
    int rc = stow_layout_fetch(&buf, &len, b, name, STOW_MANIFEST_MAX_BYTES, err);
    if (rc != STOW_OK)
        goto done;
    int sealed = stow_layout_manifest_unseal(&bodylen, alg, sizeof(alg), sig, sizeof(sig), buf,
                                             len);
    if (signer != NULL) {
        stow_error verr = {0};
        if (!sealed)
            rc = stow_error_set(&verr, STOW_ECORRUPT, "the entry is not signed");
        else
            rc = stow_signer_verify(signer, alg, sig, name, buf, bodylen, &verr);
        if (rc != STOW_OK) {
            if (refused != NULL)
                *refused = rc == STOW_ECORRUPT;
            rc = stow_error_set(err, rc, "%s refused: %s", name, verr.msg);
            goto done;
        }
    }
    rc = stow_manifest_decode(out, buf, bodylen, name, err);
    if (rc == STOW_OK && strcmp((*out)->key, key) != 0) {
        rc = stow_error_set(err, STOW_ECORRUPT, "%s: manifest names another key, \"%s\"", name,
                            (*out)->key);
        stow_manifest_free(*out);
        *out = NULL;
    }
done:
    free(buf);
    return rc;
}

int stow_layout_fetch_manifest(stow_manifest **out, stow_backend *b, const char *scope,
                               const char *key, stow_error *err)
{
    return stow_layout_fetch_manifest_verified(out, NULL, b, scope, key, NULL, err);
}

int stow_layout_fetch_ref(char *key, size_t keysz, stow_backend *b, const char *scope,
                          const char *prefix, stow_error *err)
{
    char name[STOW_LAYOUT_NAME_MAX];
    char *buf = NULL;
    size_t len = 0;
    if (stow_layout_ref_name(name, sizeof(name), scope, prefix) != STOW_OK)
        return stow_error_set(err, STOW_EUSAGE, "bad scope or restore key: %s / %s", scope, prefix);
    int rc = stow_layout_fetch(&buf, &len, b, name, STOW_REF_MAX_BYTES, err);
    if (rc == STOW_OK)
        rc = stow_layout_ref_decode(key, keysz, buf, len, prefix, name, err);
    free(buf);
    return rc;
}

int64_t stow_layout_fetch_access(stow_backend *b, const char *scope, const char *key)
{
    char name[STOW_LAYOUT_NAME_MAX];
    char *buf = NULL;
    size_t len = 0;
    stow_error err = {0};
    int64_t t = 0;
    if (stow_layout_access_name(name, sizeof(name), scope, key) == STOW_OK &&
        stow_layout_fetch(&buf, &len, b, name, STOW_ACCESS_MAX_BYTES, &err) == STOW_OK)
        t = stow_layout_access_decode(buf, len);
    free(buf);
    return t;
}

int stow_layout_fetch_lease(stow_lease *out, stow_backend *b, const char *name, stow_error *err)
{
    char *buf = NULL;
    size_t len = 0;
    int rc = stow_layout_fetch(&buf, &len, b, name, STOW_LEASE_MAX_BYTES, err);
    memset(out, 0, sizeof(*out));
    if (rc == STOW_OK)
        rc = stow_lease_decode(out, buf, len, name, err);
    free(buf);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Writers
 * ------------------------------------------------------------------------------------------ */

int stow_layout_put_ref(stow_backend *b, const char *scope, const char *prefix, const char *key,
                        int64_t created, stow_error *err)
{
    char name[STOW_LAYOUT_NAME_MAX];
    char *body = NULL;
    size_t len = 0;
    if (stow_layout_ref_name(name, sizeof(name), scope, prefix) != STOW_OK)
        return stow_error_set(err, STOW_EUSAGE, "bad scope or restore key: %s / %s", scope, prefix);
    int rc = stow_layout_ref_encode(&body, &len, key, created, err);
    if (rc == STOW_OK)
        rc = stow_backend_put_buffer(b, name, body, len, 0, err);
    free(body);
    return rc;
}

int stow_layout_put_access(stow_backend *b, const char *scope, const char *key, int64_t t,
                           stow_error *err)
{
    char name[STOW_LAYOUT_NAME_MAX];
    char body[64];
    if (stow_layout_access_name(name, sizeof(name), scope, key) != STOW_OK)
        return stow_error_set(err, STOW_EUSAGE, "bad scope or key: %s / %s", scope, key);
    int n = stow_layout_access_encode(body, sizeof(body), t);
    if (n < 0)
        return stow_error_set(err, STOW_ERR, "access marker too long");
    return stow_backend_put_buffer(b, name, body, (size_t)n, 0, err);
}

int stow_layout_put_lease(stow_backend *b, const stow_lease *l, stow_error *err)
{
    char name[STOW_LAYOUT_NAME_MAX];
    char *body = NULL;
    size_t len = 0;
    if (stow_layout_lease_name(name, sizeof(name), l->id) != STOW_OK)
        return stow_error_set(err, STOW_EUSAGE, "bad lease id %s", l->id);
    int rc = stow_lease_encode(&body, &len, l, err);
    if (rc == STOW_OK)
        rc = stow_backend_put_buffer(b, name, body, len, 0, err);
    free(body);
    return rc;
}

int64_t stow_layout_now(void)
{
    const char *v = getenv("STOWAGE_NOW");
    if (v != NULL && v[0] != '\0') {
        char *end = NULL;
        long long t = strtoll(v, &end, 10);
        if (end != v && *end == '\0' && t > 0)
            return (int64_t)t;
    }
    return stow_unix_time();
}
