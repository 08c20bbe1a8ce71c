/* Cache entries on a store: lookup and restore (cache.c), save (save.c); DESIGN.md "Restore"
 * and "Save". The remote layout (object names and formats) belongs to layout.h. */
#ifndef STOW_CACHE_H
#define STOW_CACHE_H

#include <stdint.h>

#include "backend.h"
#include "config.h"
#include "error.h"
#include "layer.h"
#include "sign.h"

typedef enum { STOW_MISS = 0, STOW_HIT = 1, STOW_PARTIAL = 2 } stow_outcome;

typedef struct stow_cache_params {
    stow_backend *backend;
    const char *store_url; /* for the state file's identity */
    const char *key;       /* expanded and validated */
    const stow_strlist *restore_keys;
    const char *scope;
    const stow_strlist *fallback_scopes;
    const stow_strlist *paths; /* as configured */
    char *const *abs_paths;    /* expanded, same order */
    const char *state_dir;     /* expanded */
    stow_pack_opts pack;
    uint64_t layer_size;
    int parallel;
    int lookup_only;
    int preserve_setid;       /* restore: keep setuid/setgid bits as stored */
    int checksum;             /* save: compare contents too (needs hashes in the parent entry) */
    int update;               /* save: an existing key gets a delta; 0 = entries are immutable */
    int max_layers;           /* save: repack the smallest layers beyond this many */
    int prune_buildx;         /* save: prune buildx caches among (or named besides) the paths */
    char *const *buildx_dirs; /* expanded extra buildx cache directories */
    size_t nbuildx_dirs;
    /* save: trimming (trim.h) */
    long trim_unused_after; /* 0 = off */
    int trim;               /* 0 = --no-trim */
    int trim_local;
    int build_failed;
    /* trust (docs/TRUST.md) */
    const stow_signer *signer; /* NULL: entries are neither signed nor checked */
    int strict;                /* restore: a refused (unsigned, mis-signed) entry is an error */
    int read_only;             /* no remote writes: save refuses, restore leaves no marker */
} stow_cache_params;

typedef struct stow_cache_result {
    stow_outcome outcome;
    char matched_key[256];
    char matched_scope[256];
    int saved;            /* save: 1 when an entry was written */
    uint64_t files;       /* files restored or saved */
    uint64_t bytes_total; /* logical (uncompressed) bytes of the entry */
    uint64_t bytes_moved; /* bytes downloaded or uploaded */
    uint64_t layers_total, layers_moved;
    uint64_t files_changed; /* save: new or changed files that went into the delta */
    uint64_t files_removed; /* save: files of the parent entry that are gone */
    uint64_t layers_repacked;
    char parent_key[256];   /* save: the entry the delta was computed against, "" if none */
    uint64_t files_trimmed; /* save: files left out because no build read them (trim.h) */
    uint64_t bytes_trimmed;
    uint64_t bytes_unread; /* save: bytes of kept files this build did not read */
    int trim_tracked;      /* save: 1 when this save could tell read files from unread ones */
    int empty;             /* save: refused, the paths hold no files; restore: the entry had
                              none for the configured paths (reported as a miss) */
    double seconds;
    int level_auto; /* save: 1 when the zstd level adapted (compression_level auto) */
    int level_lo, level_hi, level_final; /* save: zstd levels used by the new layers */
    double level_mean;                   /* save: mean level, weighted by raw bytes */
} stow_cache_result;

int stow_cache_restore(stow_cache_result *res, const stow_cache_params *p, stow_error *err);
int stow_cache_save(stow_cache_result *res, const stow_cache_params *p, stow_error *err);

#endif
