/* Private to agent/cache.c, agent/save.c and agent/trim.c (and their unit tests): the shared helpers of
 * restore and save. Not part of the cache module's interface. */
#ifndef STOW_CACHE_INT_H
#define STOW_CACHE_INT_H

#include <stddef.h>
#include <stdint.h>

#include "cache.h"
#include "manifest.h"

/* Runs fn(ctx, i) for i in [0, n) on up to nthreads threads; the first failure stops new work
 * and is returned. */
typedef int (*stow_cache_work_fn)(void *ctx, size_t i, stow_error *err);
int stow_cache_run_parallel(size_t n, int nthreads, stow_cache_work_fn fn, void *ctx,
                            stow_error *err);

/* STOWAGE_STATE_DIR/<id><suffix>: the state file of this store and these paths (id: a hash
 * of both), for restore's outcome and manifest and for trim's marks. */
int stow_cache_state_path(char *out, size_t outsz, const stow_cache_params *p, const char *suffix);

/* The local state restore leaves for save: the outcome, and the restored manifest (m may be
 * NULL: no parent). */
void stow_cache_state_save(const stow_cache_params *p, const stow_cache_result *res,
                           const stow_manifest *m);
/* The manifest restore (or the last save) left in the state directory; NULL if none. */
stow_manifest *stow_cache_state_manifest(const stow_cache_params *p);

/* save.c, exported for tests/agent/test_save.c. */

/* Computes the delta of m (a fresh scan, every layer -1) against parent: unchanged files point
 * at the parent's layers (renumbered into m); mostly-dead (live bytes under half) or surplus
 * (beyond max_layers - 1) parent layers, and parent layers gone from the store, are dropped so
 * their live files are repacked; everything else stays -1 for new layers. Fills the counters
 * in res. Returns 1 when m differs from parent in any way, 0 when not, -1 on error. */
int stow_save_plan_delta(stow_manifest *m, const stow_manifest *parent, char *const *roots,
                         const stow_cache_params *p, stow_cache_result *res, stow_error *err);
/* How stow_save_split_new_layers cuts the new files into layers. */
#define STOW_SPLIT_FILE_CAP 50000               /* files per layer, unless max_layers forbids */
#define STOW_SPLIT_MIN_LAYER_BYTES (8ull << 20) /* no smaller layers just to reach min_layers */
typedef struct {
    uint64_t layer_size;      /* upper bound on a layer's raw bytes (0: none); always holds */
    size_t min_layers;        /* at least this many layers (the cores) when there is the work */
    size_t max_layers;        /* the entry's limit, parent layers included (0: none) */
    size_t file_cap;          /* files per layer (0: none) */
    uint64_t min_layer_bytes; /* no layer under this size merely to reach min_layers */
} stow_split_opts;
/* layer_size as given, min_layers max(2, online CPUs), the caps above. */
void stow_save_split_defaults(stow_split_opts *o, uint64_t layer_size, int max_layers);
/* Assigns every file and link whose layer is -1 to new layers (fresh random ids) of
 * near-equal raw bytes, so a cold restore extracts on every core: at least min_layers (fewer
 * when under min_layer_bytes each, or when max_layers leaves no room beside the existing
 * layers and one for the next delta), at most file_cap files each, never over layer_size
 * unless one file alone is bigger. Deterministic: same manifest, same options, same split. */
int stow_save_split_new_layers(stow_manifest *m, const stow_split_opts *o, stow_error *err);
/* stow_save_split_new_layers with stow_save_split_defaults(layer_size, no max_layers). */
int stow_save_assign_new_layers(stow_manifest *m, uint64_t layer_size, stow_error *err);

#endif
