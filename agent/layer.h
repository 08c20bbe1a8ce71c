/* Layers: the zstd-compressed pax tarballs a cache entry is made of.
 *
 * pack:   files -> libarchive (pax) -> ZSTD_compressStream2 -> sha256 -> backend put
 * unpack: backend get -> (pipe, other thread) -> sha256 -> zstd -> libarchive -> safe extraction
 *
 * Neither keeps a temporary archive on disk or a whole archive in memory. Archive entry names
 * are "<root index>/<path below the root>". */
#ifndef STOW_LAYER_H
#define STOW_LAYER_H

#include "backend.h"
#include "error.h"
#include "manifest.h"
#include "progress.h"

typedef struct stow_pack_opts {
    int level;   /* zstd level, 1..19 */
    int threads; /* zstd worker threads, 0 = single-threaded */
    int checksum; /* record each file's sha256 in the index */
} stow_pack_opts;

/* Writes every file and symlink of m assigned to layer li to the layer's object
 * (m->layers[li].id must be set) and fills its sha256, size, raw_size and files. roots[i] is
 * the absolute path of root i. On failure the upload is aborted: nothing is left behind. */
int stow_layer_pack(stow_manifest *m, size_t li, char *const *roots, stow_backend *b,
                    const stow_pack_opts *opts, stow_progress *prog, stow_error *err);

/* Downloads layer li and extracts the entries the index assigns to it under roots[root]
 * (a NULL root is not restored: its entries are read and skipped). Files are written under
 * temporary names and renamed into place only once the whole layer has been read and its
 * sha256 matches; on any failure the temporary files are removed and nothing is replaced.
 * Refuses (STOW_ECORRUPT) absolute paths, "..", links leaving a root, hard links, devices and
 * fifos; entries the index assigns to another layer (or not at all) are read past, unwritten. */
int stow_layer_unpack(const stow_manifest *m, size_t li, char *const *roots, stow_backend *b,
                      stow_progress *prog, stow_error *err);

/* Creates the directories of the index under their roots (safely: no symlink is followed
 * below a root). */
int stow_layer_make_dirs(const stow_manifest *m, char *const *roots, stow_error *err);
/* Applies mode and mtime of the index's directories, deepest first (after all layers). */
void stow_layer_finish_dirs(const stow_manifest *m, char *const *roots);

#endif
