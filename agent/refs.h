/* Which refs a save writes and how restore finds an entry by prefix (DESIGN.md "Remote
 * layout", issue 13 point 7).
 *
 * Save writes refs/<scope>/<p> for every prefix p of the key that ends at a separator
 * ('-', '_', '.', '/', ':'), shortest first and at most STOW_REFS_MAX_AUTO of them, plus the
 * restore keys passed to save that the key starts with. So a restore key given only to
 * restore (the actions/cache split) finds the newest entry with one GET, and a key change
 * uploads a delta. A restore key that does not end at a separator has no ref unless save was
 * given it: on a store that can list, restore then lists manifests/<scope>/<p> and takes the
 * newest entry. */
#ifndef STOW_REFS_H
#define STOW_REFS_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "error.h"
#include "strlist.h"

/* Refs a save writes for the prefixes of its key, at most (bounded PUTs per save). */
#define STOW_REFS_MAX_AUTO 16

/* 1 when c separates the parts of a key. */
int stow_refs_is_sep(char c);

/* Adds to out the prefixes of key that end at a separator (the key itself excluded),
 * shortest first, at most max; returns how many prefixes were skipped by the cap (0 when
 * none), or -1 with err set. */
int stow_refs_key_prefixes(stow_strlist *out, const char *key, size_t max, stow_error *err);

/* Every ref name (prefix) save writes for key: the separator prefixes (capped) and the
 * restore keys that key starts with, without duplicates. */
int stow_refs_for_save(stow_strlist *out, const char *key, const stow_strlist *restore_keys,
                       stow_error *err);

/* The newest entry of scope whose key starts with prefix, by listing manifests/<scope>/<prefix>
 * (newest by the store's modification time; ties by the larger key). STOW_ENOTFOUND when
 * there is none or the store cannot list. */
int stow_refs_list_newest(char *key, size_t keysz, stow_backend *b, const char *scope,
                          const char *prefix, stow_error *err);

#endif
