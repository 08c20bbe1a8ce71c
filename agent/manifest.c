#include "manifest.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layout.h"
#include "manifest_int.h"
#include "paths.h"

/* The string arena: paths and link targets in chunks, so a million entries cost their bytes
 * and not a million allocations (each with its own header and rounding). */
#define ARENA_CHUNK (256u << 10)
typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
    char data[];
} arena_chunk;
struct stow_manifest_arena {
    arena_chunk *head;
};

static char *arena_dup(stow_manifest *m, const char *s, size_t n)
{
    if (m->arena == NULL && (m->arena = calloc(1, sizeof(*m->arena))) == NULL)
        return NULL;
    arena_chunk *c = m->arena->head;
    if (n >= SIZE_MAX / 2)
        return NULL;
    if (c == NULL || c->cap - c->used < n + 1) {
        size_t cap = n + 1 > ARENA_CHUNK ? n + 1 : ARENA_CHUNK;
        if ((c = malloc(sizeof(*c) + cap)) == NULL)
            return NULL;
        c->used = 0;
        c->cap = cap;
        c->next = m->arena->head;
        m->arena->head = c;
    }
    char *p = c->data + c->used;
    memcpy(p, s, n);
    p[n] = '\0';
    c->used += n + 1;
    return p;
}

stow_manifest *stow_manifest_new(void) { return calloc(1, sizeof(stow_manifest)); }

void stow_manifest_free(stow_manifest *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->nfiles; i++)
        free(m->files[i].sha256);
    free(m->files);
    if (m->arena != NULL) {
        for (arena_chunk *c = m->arena->head, *next; c != NULL; c = next) {
            next = c->next;
            free(c);
        }
        free(m->arena);
    }
    for (size_t i = 0; i < m->nroots; i++)
        free(m->roots[i]);
    free(m->roots);
    free(m->layers);
    free(m->key);
    free(m->scope);
    free(m);
}

int stow_manifest_set_key(stow_manifest *m, const char *key, const char *scope, stow_error *err)
{
    char *k = strdup(key), *s = strdup(scope);
    if (k == NULL || s == NULL) {
        free(k);
        free(s);
        return stow_error_set(err, STOW_ERR, "out of memory");
    }
    free(m->key);
    free(m->scope);
    m->key = k;
    m->scope = s;
    return STOW_OK;
}

int stow_manifest_add_root(stow_manifest *m, const char *configured, stow_error *err)
{
    if (m->nroots >= STOW_MAX_ROOTS)
        return stow_error_set(err, STOW_EUSAGE, "too many paths (at most %d)", STOW_MAX_ROOTS);
    char **nr = realloc(m->roots, (m->nroots + 1) * sizeof(*nr));
    if (nr == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    m->roots = nr;
    if ((m->roots[m->nroots] = strdup(configured)) == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    m->nroots++;
    return STOW_OK;
}

stow_layer *stow_manifest_add_layer(stow_manifest *m, stow_error *err)
{
    if (m->nlayers >= STOW_MAX_LAYERS) {
        stow_error_set(err, STOW_ERR, "too many layers (at most %d)", STOW_MAX_LAYERS);
        return NULL;
    }
    stow_layer *nl = realloc(m->layers, (m->nlayers + 1) * sizeof(*nl));
    if (nl == NULL) {
        stow_error_set(err, STOW_ERR, "out of memory");
        return NULL;
    }
    m->layers = nl;
    stow_layer *l = &m->layers[m->nlayers++];
    memset(l, 0, sizeof(*l));
    return l;
}

int stow_manifest_add_file(stow_manifest *m, const stow_file_entry *e, stow_error *err)
{
    if (m->nfiles >= STOW_MAX_FILES)
        return stow_error_set(err, STOW_ERR, "too many files (at most %u)", STOW_MAX_FILES);
    if (m->nfiles == m->capfiles) {
        size_t ncap = m->capfiles ? m->capfiles * 2 : 256;
        stow_file_entry *nf = realloc(m->files, ncap * sizeof(*nf));
        if (nf == NULL)
            return stow_error_set(err, STOW_ERR, "out of memory");
        m->files = nf;
        m->capfiles = ncap;
    }
    stow_file_entry c = *e;
    c.path = arena_dup(m, e->path, strlen(e->path));
    c.target = e->target ? arena_dup(m, e->target, strlen(e->target)) : NULL;
    c.sha256 = e->sha256 ? strdup(e->sha256) : NULL;
    if (c.path == NULL || (e->target && c.target == NULL) || (e->sha256 && c.sha256 == NULL)) {
        free(c.sha256); /* what the arena took stays there until the manifest is freed */
        return stow_error_set(err, STOW_ERR, "out of memory");
    }
    m->files[m->nfiles++] = c;
    return STOW_OK;
}

int stow_manifest_cmp_entry(const void *a, const void *b)
{
    const stow_file_entry *x = a, *y = b;
    if (x->root != y->root)
        return x->root < y->root ? -1 : 1;
    return strcmp(x->path, y->path);
}

void stow_manifest_sort(stow_manifest *m)
{
    if (m->nfiles > 1)
        qsort(m->files, m->nfiles, sizeof(*m->files), stow_manifest_cmp_entry);
}

stow_file_entry *stow_manifest_find(const stow_manifest *m, uint32_t root, const char *path)
{
    stow_file_entry key = {.root = root, .path = (char *)path};
    if (m->nfiles == 0) /* files may be NULL, which bsearch must not get */
        return NULL;
    return bsearch(&key, m->files, m->nfiles, sizeof(*m->files), stow_manifest_cmp_entry);
}

void stow_manifest_map_roots(int32_t *proot, const stow_manifest *m, const stow_manifest *other)
{
    for (size_t r = 0; r < m->nroots; r++) {
        proot[r] = -1;
        for (size_t q = 0; other != NULL && q < other->nroots; q++)
            if (strcmp(m->roots[r], other->roots[q]) == 0)
                proot[r] = (int32_t)q;
    }
}

const stow_file_entry *stow_manifest_find_mapped(const stow_manifest *other, const int32_t *proot,
                                                 const stow_file_entry *e)
{
    return proot[e->root] < 0 ? NULL : stow_manifest_find(other, (uint32_t)proot[e->root], e->path);
}

int stow_manifest_layer_object(char *out, size_t outsz, const stow_layer *l)
{
    return stow_layout_layer_name(out, outsz, l->id) == STOW_OK ? STOW_OK : STOW_ERR;
}

json_t *stow_manifest_header_json(const stow_manifest *m, int version)
{
    json_t *root = json_object(), *roots = json_array(), *layers = json_array();
    uint64_t total = 0;
    if (!root || !roots || !layers)
        goto oom;
    for (size_t i = 0; i < m->nfiles; i++)
        if (m->files[i].type == STOW_FT_FILE)
            total += m->files[i].size;
    if (json_object_set_new(root, "version", json_integer(version)) != 0 ||
        json_object_set_new(root, "key", json_string(m->key ? m->key : "")) != 0 ||
        json_object_set_new(root, "scope", json_string(m->scope ? m->scope : "")) != 0 ||
        json_object_set_new(root, "created", json_integer(m->created)) != 0 ||
        json_object_set_new(root, "tool", json_string("stowage " STOW_VERSION)) != 0 ||
        json_object_set_new(root, "total_size", json_integer((json_int_t)total)) != 0)
        goto oom;
    for (size_t i = 0; i < m->nroots; i++)
        if (json_array_append_new(roots, json_string(m->roots[i])) != 0)
            goto oom;
    for (size_t i = 0; i < m->nlayers; i++) {
        const stow_layer *l = &m->layers[i];
        json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:I}", "id", l->id, "sha256", l->sha256, "size",
                              (json_int_t)l->size, "raw_size", (json_int_t)l->raw_size, "files",
                              (json_int_t)l->files);
        if (o == NULL || json_array_append_new(layers, o) != 0)
            goto oom;
    }
    json_object_set_new(root, "roots", roots);
    json_object_set_new(root, "layers", layers);
    return root;
oom:
    json_decref(layers);
    json_decref(roots);
    json_decref(root);
    return NULL;
}

int stow_manifest_to_json(char **out, size_t *outlen, const stow_manifest *m, stow_error *err)
{
    int rc = STOW_ERR;
    json_t *root = stow_manifest_header_json(m, STOW_MANIFEST_VERSION_JSON), *files = json_array();
    *out = NULL;
    if (!root || !files)
        goto oom;
    for (size_t i = 0; i < m->nfiles; i++) {
        const stow_file_entry *e = &m->files[i];
        char type[2] = {e->type, '\0'};
        json_t *o = json_pack("{s:i, s:s, s:s, s:i, s:I, s:i}", "r", (int)e->root, "p", e->path,
                              "t", type, "m", (int)e->mode, "mt", (json_int_t)e->mtime, "ns",
                              (int)e->mtime_ns);
        if (o == NULL)
            goto oom;
        if (e->type == STOW_FT_FILE)
            json_object_set_new(o, "s", json_integer((json_int_t)e->size));
        if (e->layer >= 0)
            json_object_set_new(o, "l", json_integer(e->layer));
        if (e->type == STOW_FT_LINK)
            json_object_set_new(o, "lt", json_string(e->target ? e->target : ""));
        if (e->sha256 != NULL)
            json_object_set_new(o, "h", json_string(e->sha256));
        if (e->type == STOW_FT_FILE && e->unread > 0)
            json_object_set_new(o, "u", json_integer((json_int_t)e->unread));
        if (json_array_append_new(files, o) != 0)
            goto oom;
    }
    json_object_set_new(root, "files", files);
    files = NULL;
    *out = json_dumps(root, JSON_COMPACT);
    if (*out == NULL)
        goto oom;
    *outlen = strlen(*out);
    rc = STOW_OK;
    goto done;
oom:
    rc = stow_error_set(err, STOW_ERR, "out of memory while writing the manifest");
done:
    json_decref(files);
    json_decref(root);
    return rc;
}

int stow_manifest_is_hex(const char *s, size_t n)
{
    if (strlen(s) != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

#define BAD(...)                                                                                   \
    do {                                                                                           \
        rc = stow_error_set(err, STOW_ECORRUPT, __VA_ARGS__);                                      \
        goto done;                                                                                 \
    } while (0)

/* Step 1: the top-level object: version, key, scope, created and the three arrays. */
static int parse_header(stow_manifest *m, json_t **roots, json_t **layers, json_t **files,
                        json_t *root, const char *what, stow_error *err)
{
    int rc = STOW_OK;
    json_error_t jerr;
    json_int_t version = 0, created = 0;
    const char *key = NULL, *scope = NULL;
    if (json_unpack_ex(root, &jerr, 0, "{s:I, s:s, s:s, s:I, s:o, s:o, s:o}", "version", &version,
                       "key", &key, "scope", &scope, "created", &created, "roots", roots, "layers",
                       layers, "files", files) != 0)
        BAD("%s: not a stowage manifest (%s)", what, jerr.text);
    if (version != STOW_MANIFEST_VERSION_JSON)
        BAD("%s: manifest version %lld is not supported (this stowage reads versions %d and %d)",
            what, (long long)version, STOW_MANIFEST_VERSION_JSON, STOW_MANIFEST_VERSION);
    if (!json_is_array(*roots) || !json_is_array(*layers) || !json_is_array(*files))
        BAD("%s: roots, layers and files must be arrays", what);
    if (json_array_size(*roots) > STOW_MAX_ROOTS || json_array_size(*layers) > STOW_MAX_LAYERS ||
        json_array_size(*files) > STOW_MAX_FILES)
        BAD("%s: too many roots, layers or files", what);
    rc = stow_manifest_set_key(m, key, scope, err);
    m->created = created;
done:
    return rc;
}

/* Step 2: roots, as configured. */
int stow_manifest_parse_roots(stow_manifest *m, json_t *roots, const char *what, stow_error *err)
{
    int rc = STOW_OK;
    size_t i;
    json_t *v;
    json_array_foreach(roots, i, v)
    {
        if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 4095)
            BAD("%s: roots[%zu] is not a path", what, i);
        if ((rc = stow_manifest_add_root(m, json_string_value(v), err)) != STOW_OK)
            goto done;
    }
done:
    return rc;
}

/* Step 3: layers: hex id and sha256, non-negative sizes. */
int stow_manifest_parse_layers(stow_manifest *m, json_t *layers, const char *what, stow_error *err)
{
    int rc = STOW_OK;
    json_error_t jerr;
    size_t i;
    json_t *v;
    json_array_foreach(layers, i, v)
    {
        const char *id = NULL, *sha = NULL;
        json_int_t size = -1, raw = -1, nf = -1;
        if (json_unpack_ex(v, &jerr, 0, "{s:s, s:s, s:I, s:I, s:I}", "id", &id, "sha256", &sha,
                           "size", &size, "raw_size", &raw, "files", &nf) != 0)
            BAD("%s: layers[%zu]: %s", what, i, jerr.text);
        if (!stow_manifest_is_hex(id, STOW_LAYER_ID_LEN) ||
            !stow_manifest_is_hex(sha, STOW_SHA256_HEX_LEN) || size < 0 || raw < 0 || nf < 0)
            BAD("%s: layers[%zu] has a bad id, sha256 or size", what, i);
        stow_layer *l = stow_manifest_add_layer(m, err);
        if (l == NULL) {
            rc = err->code;
            goto done;
        }
        memcpy(l->id, id, STOW_LAYER_ID_LEN + 1);
        memcpy(l->sha256, sha, STOW_SHA256_HEX_LEN + 1);
        l->size = (uint64_t)size;
        l->raw_size = (uint64_t)raw;
        l->files = (uint64_t)nf;
    }
done:
    return rc;
}

/* One entry of the file index, validated against the roots and layers already read. */
static int parse_file(stow_manifest *m, json_t *v, size_t i, const char *what, stow_error *err)
{
    int rc = STOW_OK;
    json_error_t jerr;
    json_int_t r = -1, mode = -1, mt = 0, ns = 0, size = 0, layer = -1, unread = 0;
    const char *p = NULL, *t = NULL, *lt = NULL, *h = NULL;
    if (json_unpack_ex(v, &jerr, 0, "{s:I, s:s, s:s, s:I, s:I, s:I, s?I, s?I, s?s, s?s, s?I}", "r",
                       &r, "p", &p, "t", &t, "m", &mode, "mt", &mt, "ns", &ns, "s", &size, "l",
                       &layer, "lt", &lt, "h", &h, "u", &unread) != 0)
        BAD("%s: files[%zu]: %s", what, i, jerr.text);
    if (r < 0 || (size_t)r >= m->nroots)
        BAD("%s: files[%zu] names root %lld, which does not exist", what, i, (long long)r);
    if (!stow_path_rel_ok(p))
        BAD("%s: files[%zu] has an unsafe path \"%s\"", what, i, p);
    if (strlen(t) != 1 || (t[0] != STOW_FT_FILE && t[0] != STOW_FT_DIR && t[0] != STOW_FT_LINK))
        BAD("%s: files[%zu] (%s) has unknown type \"%s\"", what, i, p, t);
    if (mode < 0 || mode > 07777 || ns < 0 || ns > 999999999 || size < 0)
        BAD("%s: files[%zu] (%s) has a bad mode, time or size", what, i, p);
    if (t[0] == STOW_FT_DIR ? layer != -1 : (layer < 0 || (size_t)layer >= m->nlayers))
        BAD("%s: files[%zu] (%s) names layer %lld, which does not exist", what, i, p,
            (long long)layer);
    if (t[0] == STOW_FT_LINK && (lt == NULL || !stow_path_link_ok(p, lt)))
        BAD("%s: files[%zu]: symlink %s points outside its root", what, i, p);
    if (h != NULL && !stow_manifest_is_hex(h, STOW_SHA256_HEX_LEN))
        BAD("%s: files[%zu] (%s) has a bad content hash", what, i, p);
    if (unread < 0 || unread > STOW_MAX_UNREAD)
        BAD("%s: files[%zu] (%s) has a bad unread count", what, i, p);
    stow_file_entry e = {(uint32_t)r,
                         (char *)p,
                         t[0],
                         (uint32_t)mode,
                         (uint64_t)size,
                         (int64_t)mt,
                         (int32_t)ns,
                         (int32_t)layer,
                         t[0] == STOW_FT_LINK ? (char *)lt : NULL,
                         t[0] == STOW_FT_FILE ? (char *)h : NULL,
                         t[0] == STOW_FT_FILE ? (uint32_t)unread : 0};
    rc = stow_manifest_add_file(m, &e, err);
done:
    return rc;
}

/* Step 4: the file index, then sorted and checked for duplicate paths. */
static int parse_files(stow_manifest *m, json_t *files, const char *what, stow_error *err)
{
    int rc = STOW_OK;
    size_t i;
    json_t *v;
    if (m->nfiles == 0 && json_array_size(files) > 0) {
        m->files = calloc(json_array_size(files), sizeof(*m->files));
        if (m->files == NULL)
            return stow_error_set(err, STOW_ERR, "out of memory");
        m->capfiles = json_array_size(files);
    }
    json_array_foreach(files, i, v)
    {
        if ((rc = parse_file(m, v, i, what, err)) != STOW_OK)
            goto done;
    }
    stow_manifest_sort(m);
    for (i = 1; i < m->nfiles; i++)
        if (m->files[i].root == m->files[i - 1].root &&
            strcmp(m->files[i].path, m->files[i - 1].path) == 0)
            BAD("%s: path %s appears twice", what, m->files[i].path);
done:
    return rc;
}

int stow_manifest_from_json(stow_manifest **out, const char *buf, size_t len, const char *what,
                            stow_error *err)
{
    int rc;
    json_error_t jerr;
    json_t *root = NULL, *roots = NULL, *layers = NULL, *files = NULL;
    stow_manifest *m = NULL;
    *out = NULL;
    if (len > STOW_MANIFEST_MAX_BYTES)
        return stow_error_set(err, STOW_ECORRUPT, "%s: manifest too large", what);
    root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return stow_error_set(err, STOW_ECORRUPT, "%s: not valid JSON (line %d: %s)", what,
                              jerr.line, jerr.text);
    m = stow_manifest_new();
    if (m == NULL) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    if ((rc = parse_header(m, &roots, &layers, &files, root, what, err)) != STOW_OK ||
        (rc = stow_manifest_parse_roots(m, roots, what, err)) != STOW_OK ||
        (rc = stow_manifest_parse_layers(m, layers, what, err)) != STOW_OK ||
        (rc = parse_files(m, files, what, err)) != STOW_OK)
        goto done;
    *out = m;
    m = NULL;
done:
    stow_manifest_free(m);
    json_decref(root);
    return rc;
}
