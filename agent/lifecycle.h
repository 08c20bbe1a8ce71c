/* Remote lifecycle: what a store holds (list, stats) and cleaning it up (prune).
 * Needs a store that can list (file, S3); the HTTP store cannot. */
#ifndef STOW_LIFECYCLE_H
#define STOW_LIFECYCLE_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "error.h"
#include "manifest.h"

typedef struct stow_entry_info {
    char scope[256];
    char key[256];
    int64_t created;
    int64_t last_used; /* last restore, or created when never restored */
    uint64_t logical;  /* bytes of the files */
    uint64_t stored;   /* bytes of its layers */
    size_t nlayers;
    char (*layers)[STOW_LAYER_ID_LEN + 1];
    uint64_t *layer_sizes;
} stow_entry_info;

typedef struct stow_store_index {
    size_t n;
    stow_entry_info *entries; /* sorted by last_used, oldest first */
} stow_store_index;

/* Lists manifests/ and reads every manifest and access marker. Unreadable manifests are
 * skipped with a warning (they are reported, never deleted by prune). */
int stow_lifecycle_load(stow_store_index **out, stow_backend *b, stow_error *err);
void stow_lifecycle_free(stow_store_index *ix);

typedef struct stow_store_totals {
    size_t entries, layers;
    uint64_t logical;    /* sum over entries */
    uint64_t stored;     /* sum over distinct layers */
    uint64_t shared;     /* bytes of layers referenced by more than one entry */
    uint64_t referenced; /* sum over entries of their stored bytes (what copies would cost) */
} stow_store_totals;

void stow_lifecycle_totals(stow_store_totals *t, const stow_store_index *ix);

/* Called for every deletion (or would-be deletion on a dry run). kind is "entry", "layer",
 * "ref", "lease" (stale: its save died) or "temp" (a stale temporary object of an upload). */
typedef void (*stow_prune_report_fn)(void *ud, const char *kind, const char *name, uint64_t bytes);

typedef struct stow_prune_opts {
    int64_t max_age;   /* seconds; 0 = no age limit */
    int expire_all;    /* --max-age 0: every entry counts as unused for too long */
    uint64_t max_size; /* stored bytes; 0 = no size limit */
    /* Unreferenced layers (and temporary objects) younger than this are kept. Layers named by
     * a live lease (a save in progress) are kept whatever their age; 0 means "delete every
     * unreferenced layer now" and is refused while any lease is live. */
    int64_t grace;
    int dry_run;
    stow_prune_report_fn report;
    void *ud;
} stow_prune_opts;

typedef struct stow_prune_result {
    size_t entries, layers, refs;
    size_t leases, temps; /* stale leases and temporary objects removed */
    uint64_t bytes_freed;
    /* Unreferenced layers kept back because they are younger than the grace period. */
    size_t layers_kept;
    uint64_t bytes_kept;
} stow_prune_result;

/* Steps: load the entries and the leases (refusing grace 0 while one is live, removing stale
 * ones); mark entries past max_age, then least recently used ones until max_size fits; delete
 * them; delete unreferenced, unleased layers past the grace period, stale temporary objects,
 * refs that point nowhere and stray access markers. */
int stow_lifecycle_prune(stow_prune_result *res, stow_backend *b, const stow_prune_opts *opts,
                         stow_error *err);

/* stowage delete: removes manifests/<scope>/<key>.json, its access marker and the refs of
 * scope that point at it (report kinds "entry" and "ref"). Its layers stay: other entries may
 * share them; the next prune deletes the ones nothing references (after the grace period).
 * STOW_ENOTFOUND when there is no such entry. */
int stow_lifecycle_delete_entry(stow_prune_result *res, stow_backend *b, const char *scope,
                                const char *key, const stow_prune_opts *o, stow_error *err);

#endif
