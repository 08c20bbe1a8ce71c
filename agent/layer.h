/* Layers: the zstd-compressed pax tarballs a cache entry is made of.
 *
 * pack:   files -> libarchive (pax) -> ZSTD_compressStream2 -> sha256 -> backend put
 * unpack: backend get -> (pipe, other thread) -> sha256 -> zstd -> libarchive -> safe extraction
 *         into a stage (unpack.h, stage.h), committed once every layer is verified
 *
 * Neither keeps a temporary archive on disk or a whole archive in memory. Archive entry names
 * are "<root index>/<path below the root>". */
#ifndef STOW_LAYER_H
#define STOW_LAYER_H

#include "backend.h"
#include "error.h"
#include "manifest.h"
#include "progress.h"

typedef struct stow_adapt stow_adapt;

typedef struct stow_pack_opts {
    int level;                /* zstd level 1..19 pins it; 0 = auto (adapt.h) */
    int level_min, level_max; /* auto: bounds */
    int threads;              /* zstd worker threads, 0 = single-threaded (auto stays at min) */
    int checksum;             /* record each file's sha256 in the index */
    stow_adapt *adapt;        /* optional: one controller shared by the layers of a save, so
                               * the level carries over; NULL = one per layer from the above */
} stow_pack_opts;

/* Writes every file and symlink of m assigned to layer li to the layer's object
 * (m->layers[li].id must be set) and fills its sha256, size, raw_size and files. roots[i] is
 * the absolute path of root i. On failure the upload is aborted: nothing is left behind. */
int stow_layer_pack(stow_manifest *m, size_t li, char *const *roots, stow_backend *b,
                    const stow_pack_opts *opts, stow_progress *prog, stow_error *err);

#endif
