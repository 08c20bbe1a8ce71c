#include "refs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layout.h"

int stow_refs_is_sep(char c) { return c == '-' || c == '_' || c == '.' || c == '/' || c == ':'; }

static int has(const stow_strlist *l, const char *s)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i], s) == 0)
            return 1;
    return 0;
}

int stow_refs_key_prefixes(stow_strlist *out, const char *key, size_t max, stow_error *err)
{
    char buf[STOW_LAYOUT_PART_MAX];
    size_t len = strlen(key), added = 0;
    int skipped = 0;
    if (len >= sizeof(buf))
        return stow_error_set(err, STOW_EUSAGE, "key is too long for refs");
    for (size_t i = 0; i + 1 < len; i++) {
        if (!stow_refs_is_sep(key[i]))
            continue;
        if (added >= max) {
            skipped++;
            continue;
        }
        memcpy(buf, key, i + 1);
        buf[i + 1] = '\0';
        if (has(out, buf))
            continue;
        if (stow_strlist_add(out, buf, err) != STOW_OK)
            return -1;
        added++;
    }
    return skipped;
}

int stow_refs_for_save(stow_strlist *out, const char *key, const stow_strlist *restore_keys,
                       stow_error *err)
{
    if (stow_refs_key_prefixes(out, key, STOW_REFS_MAX_AUTO, err) < 0)
        return err->code ? err->code : STOW_ERR;
    for (size_t r = 0; restore_keys != NULL && r < restore_keys->n; r++) {
        const char *prefix = restore_keys->v[r];
        if (strncmp(key, prefix, strlen(prefix)) != 0 || has(out, prefix))
            continue;
        int rc = stow_strlist_add(out, prefix, err);
        if (rc != STOW_OK)
            return rc;
    }
    return STOW_OK;
}

typedef struct {
    const char *scope;
    const char *prefix;
    char best[STOW_LAYOUT_PART_MAX];
    int64_t best_time;
    int found;
} newest_ctx;

static int on_manifest(void *ud, const char *name, const stow_object_info *info)
{
    newest_ctx *c = ud;
    char scope[STOW_LAYOUT_PART_MAX], key[STOW_LAYOUT_PART_MAX];
    if (stow_layout_parse_manifest(scope, key, name) != 0 || strcmp(scope, c->scope) != 0 ||
        strncmp(key, c->prefix, strlen(c->prefix)) != 0)
        return 0;
    int64_t t = info ? info->mtime : 0;
    if (!c->found || t > c->best_time || (t == c->best_time && strcmp(key, c->best) > 0)) {
        memcpy(c->best, key, sizeof(c->best));
        c->best_time = t;
        c->found = 1;
    }
    return 0;
}

int stow_refs_list_newest(char *key, size_t keysz, stow_backend *b, const char *scope,
                          const char *prefix, stow_error *err)
{
    char name[STOW_LAYOUT_NAME_MAX];
    newest_ctx c = {.scope = scope, .prefix = prefix};
    if (!stow_backend_can_list(b))
        return STOW_ENOTFOUND;
    /* The listing prefix: manifests/<scope>/<prefix> (the manifest name without ".json"). */
    if (stow_layout_manifest_name(name, sizeof(name), scope, prefix) != STOW_OK)
        return stow_error_set(err, STOW_EUSAGE, "bad scope or restore key: %s / %s", scope, prefix);
    name[strlen(name) - strlen(".json")] = '\0';
    int rc = stow_backend_list(b, name, on_manifest, &c, err);
    if (rc != STOW_OK)
        return rc;
    if (!c.found)
        return STOW_ENOTFOUND;
    if (strlen(c.best) >= keysz)
        return stow_error_set(err, STOW_ERR, "key too long");
    memcpy(key, c.best, strlen(c.best) + 1);
    return STOW_OK;
}
