/* Shared by the two manifest serialisations (manifest.c: version 1 and the common parts,
 * manifest_v2.c: version 2). Not for other modules. */
#ifndef STOW_MANIFEST_INT_H
#define STOW_MANIFEST_INT_H

#include <jansson.h>

#include "manifest.h"

/* 1 when s is exactly n lowercase hex digits. */
int stow_manifest_is_hex(const char *s, size_t n);
/* qsort order of entries: root, then path by strcmp. */
int stow_manifest_cmp_entry(const void *a, const void *b);
/* The header fields both versions share: version, key, scope, created, tool, total_size,
 * roots, layers. NULL when out of memory. */
json_t *stow_manifest_header_json(const stow_manifest *m, int version);
/* Validated roots and layers from their JSON arrays into m (STOW_ECORRUPT naming what). */
int stow_manifest_parse_roots(stow_manifest *m, json_t *roots, const char *what, stow_error *err);
int stow_manifest_parse_layers(stow_manifest *m, json_t *layers, const char *what, stow_error *err);

#endif
