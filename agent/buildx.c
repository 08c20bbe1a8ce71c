#include "buildx.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

#define MAX_JSON_BLOB (16u << 20) /* manifests and indexes are small; bigger is not one */
#define MAX_DEPTH 8
#define MAX_REACHABLE 1000000

typedef struct {
    char **digests; /* "sha256:<hex>", sorted after collection */
    size_t n, cap;
    const char *dir;
    uint64_t missing;
} reach_set;

int stow_buildx_detect(const char *dir)
{
    char p1[PATH_MAX], p2[PATH_MAX];
    struct stat st;
    if (snprintf(p1, sizeof(p1), "%s/oci-layout", dir) >= (int)sizeof(p1) ||
        snprintf(p2, sizeof(p2), "%s/index.json", dir) >= (int)sizeof(p2))
        return 0;
    return stat(p1, &st) == 0 && S_ISREG(st.st_mode) && stat(p2, &st) == 0 && S_ISREG(st.st_mode);
}

/* "sha256:<64 hex>" or "sha512:<128 hex>" only: the digest becomes a path. */
static int digest_ok(const char *d)
{
    size_t want;
    const char *hex;
    if (strncmp(d, "sha256:", 7) == 0) {
        want = 64;
        hex = d + 7;
    } else if (strncmp(d, "sha512:", 7) == 0) {
        want = 128;
        hex = d + 7;
    } else {
        return 0;
    }
    if (strlen(hex) != want)
        return 0;
    for (size_t i = 0; i < want; i++)
        if (!((hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f')))
            return 0;
    return 1;
}

static int blob_path(char *out, size_t outsz, const char *dir, const char *digest)
{
    const char *colon = strchr(digest, ':');
    int n = snprintf(out, outsz, "%s/blobs/%.*s/%s", dir, (int)(colon - digest), digest, colon + 1);
    return (n < 0 || (size_t)n >= outsz) ? -1 : 0;
}

static int seen(const reach_set *r, const char *digest)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->digests[i], digest) == 0)
            return 1;
    return 0;
}

static int add(reach_set *r, const char *digest, stow_error *err)
{
    if (r->n >= MAX_REACHABLE)
        return stow_error_set(err, STOW_ECORRUPT, "%s: more than %d referenced blobs", r->dir,
                              MAX_REACHABLE);
    if (r->n == r->cap) {
        size_t ncap = r->cap ? r->cap * 2 : 64;
        char **nd = realloc(r->digests, ncap * sizeof(*nd));
        if (nd == NULL)
            return stow_error_set(err, STOW_ERR, "out of memory");
        r->digests = nd;
        r->cap = ncap;
    }
    if ((r->digests[r->n] = strdup(digest)) == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    r->n++;
    return STOW_OK;
}

static int walk_json(reach_set *r, json_t *doc, const char *what, int depth, stow_error *err);

/* Marks a descriptor reachable and, when it is an index or manifest, follows it. */
static int walk_descriptor(reach_set *r, json_t *desc, const char *what, int depth, stow_error *err)
{
    const char *digest = json_string_value(json_object_get(desc, "digest"));
    const char *media = json_string_value(json_object_get(desc, "mediaType"));
    if (digest == NULL || !digest_ok(digest))
        return stow_error_set(err, STOW_ECORRUPT, "%s: %s has a descriptor without a valid digest",
                              r->dir, what);
    if (seen(r, digest))
        return STOW_OK;
    int rc = add(r, digest, err);
    if (rc != STOW_OK)
        return rc;
    char path[PATH_MAX];
    if (blob_path(path, sizeof(path), r->dir, digest) != 0)
        return stow_error_set(err, STOW_ECORRUPT, "%s: path too long", r->dir);
    struct stat st;
    if (stat(path, &st) != 0) {
        stow_warn("buildx cache %s: %s references blob %s, which is missing", r->dir, what, digest);
        r->missing++;
        return STOW_OK;
    }
    /* Follow what may hold descriptors: indexes and manifests by media type, and small JSON
     * blobs of unknown type that turn out to have "manifests" or "layers". Layers (tar/gzip)
     * and BuildKit's cacheconfig are leaves. */
    int container = media && (strstr(media, "index") || strstr(media, "manifest"));
    int leaf = media &&
               (strstr(media, "layer") || strstr(media, "cacheconfig") || strstr(media, "config"));
    if ((!container && leaf) || st.st_size > (off_t)MAX_JSON_BLOB)
        return STOW_OK;
    if (depth >= MAX_DEPTH)
        return stow_error_set(err, STOW_ECORRUPT, "%s: manifests nested deeper than %d", r->dir,
                              MAX_DEPTH);
    json_error_t je;
    json_t *doc = json_load_file(path, 0, &je);
    if (doc == NULL) {
        if (container)
            return stow_error_set(err, STOW_ECORRUPT, "%s: %s is not valid JSON (%s)", r->dir,
                                  digest, je.text);
        return STOW_OK; /* an opaque blob of unknown type */
    }
    rc = walk_json(r, doc, digest, depth + 1, err);
    json_decref(doc);
    return rc;
}

static int walk_array(reach_set *r, json_t *arr, const char *what, int depth, stow_error *err)
{
    if (arr == NULL)
        return STOW_OK;
    if (!json_is_array(arr))
        return stow_error_set(err, STOW_ECORRUPT, "%s: %s: expected a list of descriptors", r->dir,
                              what);
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        if (!json_is_object(v))
            return stow_error_set(err, STOW_ECORRUPT, "%s: %s: descriptor %zu is not an object",
                                  r->dir, what, i);
        int rc = walk_descriptor(r, v, what, depth, err);
        if (rc != STOW_OK)
            return rc;
    }
    return STOW_OK;
}

static int walk_json(reach_set *r, json_t *doc, const char *what, int depth, stow_error *err)
{
    if (!json_is_object(doc))
        return STOW_OK;
    int rc = walk_array(r, json_object_get(doc, "manifests"), what, depth, err);
    if (rc == STOW_OK)
        rc = walk_array(r, json_object_get(doc, "layers"), what, depth, err);
    json_t *config = json_object_get(doc, "config");
    if (rc == STOW_OK && json_is_object(config))
        rc = walk_descriptor(r, config, what, depth, err);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int stow_buildx_prune(stow_buildx_stats *stats, const char *dir, stow_error *err)
{
    reach_set r = {.dir = dir};
    json_t *index = NULL;
    DIR *algs = NULL;
    int rc = STOW_ERR;
    char path[PATH_MAX];

    memset(stats, 0, sizeof(*stats));
    if (snprintf(path, sizeof(path), "%s/index.json", dir) >= (int)sizeof(path))
        return stow_error_set(err, STOW_ERR, "%s: path too long", dir);
    json_error_t je;
    index = json_load_file(path, 0, &je);
    if (index == NULL)
        return stow_error_set(err, STOW_ECORRUPT, "%s: not valid JSON (line %d: %s); not pruning",
                              path, je.line, je.text);
    rc = walk_json(&r, index, "index.json", 0, err);
    if (rc != STOW_OK) {
        stow_error_wrap(err, "not pruning");
        goto done;
    }
    if (r.n > 1)
        qsort(r.digests, r.n, sizeof(*r.digests), cmp_str);
    stats->missing = r.missing;

    if (snprintf(path, sizeof(path), "%s/blobs", dir) >= (int)sizeof(path))
        goto done;
    algs = opendir(path);
    if (algs == NULL) {
        rc = STOW_OK; /* no blobs at all */
        goto done;
    }
    struct dirent *a;
    while ((a = readdir(algs)) != NULL) {
        if (a->d_name[0] == '.')
            continue;
        char algdir[PATH_MAX];
        if (snprintf(algdir, sizeof(algdir), "%s/%s", path, a->d_name) >= (int)sizeof(algdir))
            continue;
        DIR *d = opendir(algdir);
        if (d == NULL)
            continue;
        struct dirent *b;
        while ((b = readdir(d)) != NULL) {
            if (b->d_name[0] == '.')
                continue;
            char digest[300];
            snprintf(digest, sizeof(digest), "%s:%s", a->d_name, b->d_name);
            const char *key = digest;
            char blob[PATH_MAX];
            struct stat st;
            if (snprintf(blob, sizeof(blob), "%s/%s", algdir, b->d_name) >= (int)sizeof(blob) ||
                lstat(blob, &st) != 0 || !S_ISREG(st.st_mode))
                continue;
            if (r.n > 0 && bsearch(&key, r.digests, r.n, sizeof(*r.digests), cmp_str) != NULL) {
                stats->blobs_kept++;
                continue;
            }
            if (unlink(blob) == 0) {
                stats->blobs_deleted++;
                stats->bytes_deleted += (uint64_t)st.st_size;
                stow_debug("buildx cache %s: deleted unreferenced blob %s", dir, digest);
            } else {
                stow_warn("buildx cache %s: cannot delete %s: %s", dir, blob, strerror(errno));
            }
        }
        closedir(d);
    }
    rc = STOW_OK;
done:
    if (algs)
        closedir(algs);
    for (size_t i = 0; i < r.n; i++)
        free(r.digests[i]);
    free(r.digests);
    json_decref(index);
    return rc;
}
