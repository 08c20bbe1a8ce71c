/* Private to agent/cache.c and agent/save.c (and their unit tests): the shared helpers of
 * restore and save. Not part of the cache module's interface. */
#ifndef STOW_CACHE_INT_H
#define STOW_CACHE_INT_H

#include <stddef.h>

#include "cache.h"
#include "manifest.h"

/* Runs fn(ctx, i) for i in [0, n) on up to nthreads threads; the first failure stops new work
 * and is returned. */
typedef int (*stow_cache_work_fn)(void *ctx, size_t i, stow_error *err);
int stow_cache_run_parallel(size_t n, int nthreads, stow_cache_work_fn fn, void *ctx, stow_error *err);

/* The local state restore leaves for save: the outcome, and the restored manifest (m may be
 * NULL: no parent). */
void stow_cache_state_save(const stow_cache_params *p, const stow_cache_result *res, const stow_manifest *m);
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
/* Assigns every file and link whose layer is -1 to new layers (fresh random ids) of about
 * layer_size raw bytes each, in index order. */
int stow_save_assign_new_layers(stow_manifest *m, uint64_t layer_size, stow_error *err);

#endif
