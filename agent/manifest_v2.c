/* Manifest version 2: a small JSON header and a compressed binary file index.
 *
 *   "STOWMF\0\2"           8 bytes of magic (a version 1 manifest starts with '{')
 *   header length           4 bytes, little endian, at most V2_HEADER_MAX
 *   header                  JSON: version, key, scope, created, tool, total_size, roots,
 *                           layers (as in version 1) and "files", the number of index entries
 *   index                   one zstd frame, to the end of the object
 *
 * The index holds the entries in (root, path) order, each as
 *
 *   root                    varint, never decreasing
 *   shared, suffix length   varints: the path is the first `shared` bytes of the previous
 *   suffix                  entry's path (0 when the root changes) and then the suffix
 *   type                    one byte: 'f', 'd' or 'l'
 *   mode, mtime, ns         varints (mtime zigzag-coded)
 *   file:                   size, layer, unread (varints), flags (bit 0: a 32-byte sha256
 *                           follows)
 *   symlink:                layer, target length (varints), target
 *
 * Both directions stream: entries go through a 64 KiB buffer into the compressor, and come
 * out of the decompressor 128 KiB at a time; the store object is the only whole copy. The
 * decoder treats every byte as hostile: varints are at most 64 bits, every length is capped
 * before it is used, paths must be strictly increasing (so sorted and unique by construction),
 * the entry count must match the header, nothing may follow the last entry, and the
 * decompressor's window is capped. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "buf.h"
#include "manifest.h"
#include "manifest_int.h"
#include "paths.h"

#define V2_MAGIC "STOWMF\0\2"
#define V2_MAGIC_LEN 8
#define V2_HEADER_MAX (4u << 20)
#define V2_PATH_MAX 4095
#define V2_WINDOW_LOG_MAX 24 /* 16 MiB: the decoder's memory limit */
#define V2_LEVEL 6
#define V2_INBUF (64u << 10)
#define V2_OUTBUF (128u << 10)
#define V2_HAS_SHA 1u

/* ------------------------------------------------------------------------------------------
 * Writing
 * ------------------------------------------------------------------------------------------ */

typedef struct {
    ZSTD_CCtx *cctx;
    stow_buf *out;
    unsigned char *in, *obuf;
    size_t inlen;
    int rc;
    stow_error *err;
} v2_writer;

static void w_flush(v2_writer *w, ZSTD_EndDirective mode)
{
    ZSTD_inBuffer in = {w->in, w->inlen, 0};
    while (w->rc == STOW_OK) {
        ZSTD_outBuffer o = {w->obuf, V2_OUTBUF, 0};
        size_t r = ZSTD_compressStream2(w->cctx, &o, &in, mode);
        if (ZSTD_isError(r)) {
            w->rc = stow_error_set(w->err, STOW_ERR, "compressing the manifest: %s",
                                   ZSTD_getErrorName(r));
            break;
        }
        if (o.pos > 0 && (w->rc = stow_buf_add(w->out, w->obuf, o.pos, w->err)) != STOW_OK)
            break;
        if (mode == ZSTD_e_continue ? in.pos == in.size : r == 0)
            break;
    }
    w->inlen = 0;
}

static void w_put(v2_writer *w, const void *p, size_t n)
{
    const unsigned char *s = p;
    while (n > 0 && w->rc == STOW_OK) {
        size_t k = V2_INBUF - w->inlen < n ? V2_INBUF - w->inlen : n;
        memcpy(w->in + w->inlen, s, k);
        w->inlen += k;
        s += k;
        n -= k;
        if (w->inlen == V2_INBUF)
            w_flush(w, ZSTD_e_continue);
    }
}

static void w_varint(v2_writer *w, uint64_t v)
{
    unsigned char b[10];
    size_t n = 0;
    while (v >= 0x80) {
        b[n++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    b[n++] = (unsigned char)v;
    w_put(w, b, n);
}

static int hex_nibble(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* One entry after prev (NULL for the first). */
static int w_entry(v2_writer *w, const stow_manifest *m, const stow_file_entry *e,
                   const stow_file_entry *prev)
{
    size_t shared = 0, len = strlen(e->path);
    if (prev != NULL && prev->root == e->root) {
        while (prev->path[shared] != '\0' && prev->path[shared] == e->path[shared])
            shared++;
        if (strcmp(prev->path, e->path) >= 0)
            return stow_error_set(w->err, STOW_ERR, "manifest: path %s appears twice", e->path);
    }
    if (e->root >= m->nroots || len == 0 || len > V2_PATH_MAX)
        return stow_error_set(w->err, STOW_ERR, "manifest: bad entry %s", e->path);
    if (e->type == STOW_FT_DIR ? e->layer != -1 : (e->layer < 0 || (size_t)e->layer >= m->nlayers))
        return stow_error_set(w->err, STOW_ERR, "manifest: %s names no valid layer", e->path);
    w_varint(w, e->root);
    w_varint(w, shared);
    w_varint(w, len - shared);
    w_put(w, e->path + shared, len - shared);
    unsigned char t = (unsigned char)e->type;
    w_put(w, &t, 1);
    w_varint(w, e->mode);
    w_varint(w, ((uint64_t)e->mtime << 1) ^ (e->mtime < 0 ? UINT64_MAX : 0)); /* zigzag */
    w_varint(w, (uint64_t)(uint32_t)e->mtime_ns);
    if (e->type == STOW_FT_FILE) {
        unsigned char flags = e->sha256 != NULL ? V2_HAS_SHA : 0, d[STOW_SHA256_LEN];
        w_varint(w, e->size);
        w_varint(w, (uint64_t)e->layer);
        w_varint(w, e->unread);
        w_put(w, &flags, 1);
        if (e->sha256 != NULL) {
            if (!stow_manifest_is_hex(e->sha256, STOW_SHA256_HEX_LEN))
                return stow_error_set(w->err, STOW_ERR, "manifest: bad content hash for %s",
                                      e->path);
            for (size_t i = 0; i < STOW_SHA256_LEN; i++)
                d[i] = (unsigned char)(hex_nibble(e->sha256[2 * i]) << 4 |
                                       hex_nibble(e->sha256[2 * i + 1]));
            w_put(w, d, sizeof(d));
        }
    } else if (e->type == STOW_FT_LINK) {
        const char *t2 = e->target ? e->target : "";
        size_t tl = strlen(t2);
        if (tl > V2_PATH_MAX)
            return stow_error_set(w->err, STOW_ERR, "manifest: symlink %s: target too long",
                                  e->path);
        w_varint(w, (uint64_t)e->layer);
        w_varint(w, tl);
        w_put(w, t2, tl);
    }
    return w->rc;
}

static int is_sorted(const stow_manifest *m)
{
    for (size_t i = 1; i < m->nfiles; i++)
        if (stow_manifest_cmp_entry(&m->files[i - 1], &m->files[i]) > 0)
            return 0;
    return 1;
}

int stow_manifest_encode(char **out, size_t *outlen, const stow_manifest *m, stow_error *err)
{
    int rc = STOW_ERR;
    stow_buf buf;
    v2_writer w = {.rc = STOW_OK, .err = err, .out = &buf};
    stow_file_entry *sorted = NULL;
    const stow_file_entry *files = m->files;
    char *hs = NULL;
    json_t *h = stow_manifest_header_json(m, STOW_MANIFEST_VERSION);
    stow_buf_init(&buf, STOW_MANIFEST_MAX_BYTES);
    *out = NULL;
    if (h == NULL || json_object_set_new(h, "files", json_integer((json_int_t)m->nfiles)) != 0 ||
        (hs = json_dumps(h, JSON_COMPACT)) == NULL)
        goto oom;
    size_t hl = strlen(hs);
    unsigned char hlen[4] = {(unsigned char)hl, (unsigned char)(hl >> 8), (unsigned char)(hl >> 16),
                             (unsigned char)(hl >> 24)};
    if (hl > V2_HEADER_MAX) {
        rc = stow_error_set(err, STOW_ERR, "manifest header too large (%zu bytes)", hl);
        goto done;
    }
    if ((rc = stow_buf_add(&buf, V2_MAGIC, V2_MAGIC_LEN, err)) != STOW_OK ||
        (rc = stow_buf_add(&buf, hlen, 4, err)) != STOW_OK ||
        (rc = stow_buf_add(&buf, hs, hl, err)) != STOW_OK)
        goto done;
    if (!is_sorted(m)) { /* a shallow copy: the strings stay where they are */
        if ((sorted = malloc((m->nfiles ? m->nfiles : 1) * sizeof(*sorted))) == NULL)
            goto oom;
        memcpy(sorted, m->files, m->nfiles * sizeof(*sorted));
        qsort(sorted, m->nfiles, sizeof(*sorted), stow_manifest_cmp_entry);
        files = sorted;
    }
    w.cctx = ZSTD_createCCtx();
    w.in = malloc(V2_INBUF);
    w.obuf = malloc(V2_OUTBUF);
    if (w.cctx == NULL || w.in == NULL || w.obuf == NULL)
        goto oom;
    ZSTD_CCtx_setParameter(w.cctx, ZSTD_c_compressionLevel, V2_LEVEL);
    ZSTD_CCtx_setParameter(w.cctx, ZSTD_c_windowLog, 22);
    ZSTD_CCtx_setParameter(w.cctx, ZSTD_c_checksumFlag, 1);
    for (size_t i = 0; i < m->nfiles; i++)
        if ((rc = w_entry(&w, m, &files[i], i ? &files[i - 1] : NULL)) != STOW_OK)
            goto done;
    w_flush(&w, ZSTD_e_end);
    if ((rc = w.rc) != STOW_OK)
        goto done;
    if ((*out = stow_buf_take(&buf, outlen)) == NULL)
        goto oom;
    rc = STOW_OK;
    goto done;
oom:
    rc = stow_error_set(err, STOW_ERR, "out of memory while writing the manifest");
done:
    free(w.obuf);
    free(w.in);
    ZSTD_freeCCtx(w.cctx);
    free(sorted);
    stow_buf_free(&buf);
    free(hs);
    json_decref(h);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Reading
 * ------------------------------------------------------------------------------------------ */

typedef struct {
    ZSTD_DCtx *dctx;
    ZSTD_inBuffer in;
    unsigned char *buf;
    size_t pos, len;
    int frame_done;
    const char *what;
    stow_error *err;
} v2_reader;

#define BAD(...)                                                                                   \
    do {                                                                                           \
        rc = stow_error_set(err, STOW_ECORRUPT, __VA_ARGS__);                                      \
        goto done;                                                                                 \
    } while (0)

/* More decompressed bytes: 1 got some, 0 the input ended where a frame ended, else an error. */
static int r_fill(v2_reader *r)
{
    r->pos = r->len = 0;
    for (;;) {
        if (r->in.pos == r->in.size && r->frame_done)
            return 0;
        ZSTD_outBuffer o = {r->buf, V2_OUTBUF, 0};
        size_t ret = ZSTD_decompressStream(r->dctx, &o, &r->in);
        if (ZSTD_isError(ret))
            return stow_error_set(r->err, STOW_ECORRUPT, "%s: file index: %s", r->what,
                                  ZSTD_getErrorName(ret));
        r->frame_done = ret == 0;
        r->len = o.pos;
        if (o.pos > 0)
            return 1;
        if (r->in.pos == r->in.size && !r->frame_done)
            return stow_error_set(r->err, STOW_ECORRUPT, "%s: file index is truncated", r->what);
    }
}

static int r_bytes(v2_reader *r, void *dst, size_t n)
{
    unsigned char *d = dst;
    while (n > 0) {
        if (r->pos == r->len) {
            int f = r_fill(r);
            if (f == 0)
                return stow_error_set(r->err, STOW_ECORRUPT, "%s: file index ends mid-entry",
                                      r->what);
            if (f < 0)
                return f;
        }
        size_t k = r->len - r->pos < n ? r->len - r->pos : n;
        memcpy(d, r->buf + r->pos, k);
        r->pos += k;
        d += k;
        n -= k;
    }
    return STOW_OK;
}

static int r_varint(v2_reader *r, uint64_t *v)
{
    *v = 0;
    for (unsigned shift = 0; shift < 70; shift += 7) {
        unsigned char b;
        int rc = r_bytes(r, &b, 1);
        if (rc != STOW_OK)
            return rc;
        if (shift == 63 && b > 1)
            break;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return STOW_OK;
    }
    return stow_error_set(r->err, STOW_ECORRUPT, "%s: file index has a number out of range",
                          r->what);
}

/* Reads varints into each pointer in turn, failing with the reader's error. */
#define RV(x)                                                                                      \
    do {                                                                                           \
        if ((rc = r_varint(r, &(x))) != STOW_OK)                                                   \
            goto done;                                                                             \
    } while (0)

static void sha_hex(char *hex, const unsigned char *d)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < STOW_SHA256_LEN; i++) {
        hex[2 * i] = digits[d[i] >> 4];
        hex[2 * i + 1] = digits[d[i] & 15];
    }
    hex[STOW_SHA256_HEX_LEN] = '\0';
}

/* Entry i; cur/prev are the path buffers (prev holds the previous entry's path). */
static int r_entry(stow_manifest *m, v2_reader *r, size_t i, char *cur, const char *prev,
                   uint64_t *prev_root, stow_error *err)
{
    int rc = STOW_OK;
    const char *what = r->what;
    char target[V2_PATH_MAX + 1], hex[STOW_SHA256_HEX_LEN + 1];
    unsigned char type = 0, flags = 0, d[STOW_SHA256_LEN];
    uint64_t root, shared, slen, mode, mt, ns, size = 0, layer = 0, unread = 0, tl;
    RV(root);
    RV(shared);
    RV(slen);
    if (root >= m->nroots)
        BAD("%s: file index entry %zu names root %llu, which does not exist", what, i,
            (unsigned long long)root);
    if (i > 0 && root < *prev_root)
        BAD("%s: file index entry %zu is out of order", what, i);
    size_t plen = i > 0 && root == *prev_root ? strlen(prev) : 0;
    if (shared > plen || slen > V2_PATH_MAX - shared)
        BAD("%s: file index entry %zu has a bad path length", what, i);
    memcpy(cur, prev, shared);
    if ((rc = r_bytes(r, cur + shared, slen)) != STOW_OK)
        goto done;
    cur[shared + slen] = '\0';
    if (memchr(cur, '\0', shared + slen) != NULL || !stow_path_rel_ok(cur))
        BAD("%s: file index entry %zu has an unsafe path \"%s\"", what, i, cur);
    if (i > 0 && root == *prev_root && strcmp(prev, cur) >= 0)
        BAD("%s: path %s is out of order or appears twice", what, cur);
    if ((rc = r_bytes(r, &type, 1)) != STOW_OK)
        goto done;
    if (type != STOW_FT_FILE && type != STOW_FT_DIR && type != STOW_FT_LINK)
        BAD("%s: file index entry %zu (%s) has an unknown type", what, i, cur);
    RV(mode);
    RV(mt);
    RV(ns);
    if (mode > 07777 || ns > 999999999)
        BAD("%s: file index entry %zu (%s) has a bad mode or time", what, i, cur);
    if (type == STOW_FT_FILE) {
        RV(size);
        RV(layer);
        RV(unread);
        if ((rc = r_bytes(r, &flags, 1)) != STOW_OK)
            goto done;
        if ((flags & ~V2_HAS_SHA) != 0 || size > INT64_MAX || unread > STOW_MAX_UNREAD)
            BAD("%s: file index entry %zu (%s) has a bad size, flags or unread count", what, i,
                cur);
        if ((flags & V2_HAS_SHA) && (rc = r_bytes(r, d, sizeof(d))) != STOW_OK)
            goto done;
        if (flags & V2_HAS_SHA)
            sha_hex(hex, d);
    } else if (type == STOW_FT_LINK) {
        RV(layer);
        RV(tl);
        if (tl > V2_PATH_MAX)
            BAD("%s: file index entry %zu (%s) has a bad link target length", what, i, cur);
        if ((rc = r_bytes(r, target, tl)) != STOW_OK)
            goto done;
        target[tl] = '\0';
        if (memchr(target, '\0', tl) != NULL || !stow_path_link_ok(cur, target))
            BAD("%s: file index entry %zu: symlink %s points outside its root", what, i, cur);
    }
    if (type != STOW_FT_DIR && layer >= m->nlayers)
        BAD("%s: file index entry %zu (%s) names layer %llu, which does not exist", what, i, cur,
            (unsigned long long)layer);
    stow_file_entry e = {(uint32_t)root,
                         cur,
                         (char)type,
                         (uint32_t)mode,
                         size,
                         (int64_t)((mt >> 1) ^ (~(mt & 1) + 1)),
                         (int32_t)ns,
                         type == STOW_FT_DIR ? -1 : (int32_t)layer,
                         type == STOW_FT_LINK ? target : NULL,
                         (flags & V2_HAS_SHA) ? hex : NULL,
                         (uint32_t)unread};
    rc = stow_manifest_add_file(m, &e, err);
    *prev_root = root;
done:
    return rc;
}

/* The header: validated fields into m, the entry count into *nfiles. */
static int v2_header(stow_manifest *m, uint64_t *nfiles, const char *buf, size_t len,
                     const char *what, stow_error *err)
{
    int rc = STOW_OK;
    json_error_t jerr;
    json_int_t version = 0, created = 0, nf = -1;
    const char *key = NULL, *scope = NULL;
    json_t *roots = NULL, *layers = NULL;
    json_t *h = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (h == NULL)
        BAD("%s: manifest header is not valid JSON (%s)", what, jerr.text);
    if (json_unpack_ex(h, &jerr, 0, "{s:I, s:s, s:s, s:I, s:o, s:o, s:I}", "version", &version,
                       "key", &key, "scope", &scope, "created", &created, "roots", &roots, "layers",
                       &layers, "files", &nf) != 0)
        BAD("%s: not a stowage manifest header (%s)", what, jerr.text);
    if (version != STOW_MANIFEST_VERSION)
        BAD("%s: manifest version %lld is not supported (this stowage reads versions %d and %d)",
            what, (long long)version, STOW_MANIFEST_VERSION_JSON, STOW_MANIFEST_VERSION);
    if (!json_is_array(roots) || !json_is_array(layers))
        BAD("%s: roots and layers must be arrays", what);
    if (json_array_size(roots) > STOW_MAX_ROOTS || json_array_size(layers) > STOW_MAX_LAYERS ||
        nf < 0 || (uint64_t)nf > STOW_MAX_FILES)
        BAD("%s: too many roots, layers or files", what);
    *nfiles = (uint64_t)nf;
    m->created = created;
    if ((rc = stow_manifest_set_key(m, key, scope, err)) != STOW_OK ||
        (rc = stow_manifest_parse_roots(m, roots, what, err)) != STOW_OK ||
        (rc = stow_manifest_parse_layers(m, layers, what, err)) != STOW_OK)
        goto done;
done:
    json_decref(h);
    return rc;
}

static int v2_decode(stow_manifest **out, const char *buf, size_t len, const char *what,
                     stow_error *err)
{
    int rc = STOW_OK;
    uint64_t nfiles = 0, prev_root = 0;
    char *paths = NULL;
    v2_reader r = {.what = what, .err = err};
    stow_manifest *m = stow_manifest_new();
    if (m == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    if (len < V2_MAGIC_LEN + 4)
        BAD("%s: manifest is truncated", what);
    const unsigned char *u = (const unsigned char *)buf + V2_MAGIC_LEN;
    size_t hl = (size_t)u[0] | (size_t)u[1] << 8 | (size_t)u[2] << 16 | (size_t)u[3] << 24;
    if (hl > V2_HEADER_MAX || hl > len - V2_MAGIC_LEN - 4)
        BAD("%s: manifest header length %zu is out of range", what, hl);
    if ((rc = v2_header(m, &nfiles, buf + V2_MAGIC_LEN + 4, hl, what, err)) != STOW_OK)
        goto done;
    /* Room for the entries the header announces, but never more than the compressed index
     * could plausibly hold: a lying header costs no memory, the array grows as entries come. */
    size_t rest = len - V2_MAGIC_LEN - 4 - hl;
    size_t reserve = nfiles < (uint64_t)rest * 64 + 256 ? (size_t)nfiles : rest * 64 + 256;
    if (reserve > 0) {
        if ((m->files = malloc(reserve * sizeof(*m->files))) == NULL) {
            rc = stow_error_set(err, STOW_ERR, "out of memory");
            goto done;
        }
        m->capfiles = reserve;
    }
    r.in = (ZSTD_inBuffer){buf + V2_MAGIC_LEN + 4 + hl, rest, 0};
    r.dctx = ZSTD_createDCtx();
    r.buf = malloc(V2_OUTBUF);
    paths = malloc(2 * (V2_PATH_MAX + 1));
    if (r.dctx == NULL || r.buf == NULL || paths == NULL) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    ZSTD_DCtx_setParameter(r.dctx, ZSTD_d_windowLogMax, V2_WINDOW_LOG_MAX);
    paths[0] = paths[V2_PATH_MAX + 1] = '\0';
    for (uint64_t i = 0; i < nfiles; i++) {
        char *cur = paths + (i & 1) * (V2_PATH_MAX + 1),
             *prev = paths + ((i + 1) & 1) * (V2_PATH_MAX + 1);
        if ((rc = r_entry(m, &r, (size_t)i, cur, prev, &prev_root, err)) != STOW_OK)
            goto done;
    }
    if (r.pos != r.len || (rc = r_fill(&r)) != 0) {
        if (rc >= 0 || r.pos != r.len)
            BAD("%s: file index has more entries than its header's %llu", what,
                (unsigned long long)nfiles);
        goto done;
    }
    *out = m;
    m = NULL;
done:
    free(paths);
    free(r.buf);
    ZSTD_freeDCtx(r.dctx);
    stow_manifest_free(m);
    return rc;
}

int stow_manifest_decode(stow_manifest **out, const char *buf, size_t len, const char *what,
                         stow_error *err)
{
    *out = NULL;
    if (len > STOW_MANIFEST_MAX_BYTES)
        return stow_error_set(err, STOW_ECORRUPT, "%s: manifest too large", what);
    if (len >= V2_MAGIC_LEN && memcmp(buf, V2_MAGIC, V2_MAGIC_LEN) == 0)
        return v2_decode(out, buf, len, what, err);
    return stow_manifest_from_json(out, buf, len, what, err);
}
