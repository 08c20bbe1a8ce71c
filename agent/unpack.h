/* Unpacking layers into a stage:
 *   backend get -> (pipe, other thread) -> sha256 -> zstd -> libarchive -> safe extraction
 * with no temporary archive on disk. Files go into a stow_stage under temporary names;
 * the caller commits the stage once every layer of the entry has been verified. */
#ifndef STOW_UNPACK_H
#define STOW_UNPACK_H

#include "backend.h"
#include "error.h"
#include "manifest.h"
#include "progress.h"
#include "stage.h"

typedef struct stow_unpack_opts {
    int preserve_setid; /* keep setuid/setgid bits as stored (default: strip them) */
} stow_unpack_opts;

/* The mode a stored mode is restored with. */
unsigned stow_unpack_mode(unsigned stored, const stow_unpack_opts *opts);

/* Refuses (STOW_ECORRUPT) an entry any of whose symlinks (in a root the stage restores)
 * resolves outside its root once the links it passes through are followed: the entry's own
 * links as the index lists them, and for paths the index does not list, what is on disk.
 * Run before anything is downloaded. */
int stow_layer_check_links(const stow_manifest *m, stow_stage *st, stow_error *err);

/* Downloads layer li and stages the entries the index assigns to it (roots the stage does
 * not restore are read and skipped). Verifies the layer's sha256 and that every file the
 * index assigns to it was present. Nothing is renamed into place here. Refuses
 * (STOW_ECORRUPT) absolute paths, "..", links leaving a root, hard links, devices and fifos;
 * entries the index assigns to another layer (or not at all) are read past, unwritten. Safe
 * to call for several layers of one stage at once. */
int stow_layer_unpack(const stow_manifest *m, size_t li, stow_stage *st, stow_backend *b,
                      const stow_unpack_opts *opts, stow_progress *prog, stow_error *err);

/* Creates the directories of the index under the stage's roots (no symlink is followed below
 * a root; what is created is removed again by stow_stage_discard). */
int stow_layer_make_dirs(const stow_manifest *m, stow_stage *st, stow_error *err);
/* Applies mode and mtime of the index's directories, deepest first (after the commit). */
void stow_layer_finish_dirs(const stow_manifest *m, stow_stage *st, const stow_unpack_opts *opts);

#endif
