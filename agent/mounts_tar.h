/* The host side of a cache-mount transfer (mounts_build.c drives it): tars with numeric
 * owners, the owners file STOW_MOUNTS_META, safe unpacking and the swap into place. */
#ifndef STOW_MOUNTS_TAR_H
#define STOW_MOUNTS_TAR_H

#include <stdint.h>

#include "buf.h"
#include "error.h"
#include "mounts.h"

/* Packs m->host into a tar at tarpath: numeric owners from STOW_MOUNTS_META (else 0:0, the
 * root as the mount declares), no user names, xattrs or ACLs, only files, directories and
 * links; the owners file itself is left out. Adds the entries packed to *files. */
int stow_mounts_pack(uint64_t *files, const stow_mount *m, const char *tarpath, stow_error *err);

/* Unpacks tarpath (safely: no absolute paths, no "..", no writing through links, no device
 * nodes) into a new directory beside m->host, records the owners in STOW_MOUNTS_META and
 * swaps it in place of m->host. Files the old tree has with the same size, mtime and mode are
 * linked, not rewritten. An empty tar never replaces a directory with content. Adds the
 * entries unpacked to *files. */
int stow_mounts_unpack(uint64_t *files, const stow_mount *m, const char *tarpath, stow_error *err);

/* rm -rf of dir (a missing dir is fine; failures are warnings). */
void stow_mounts_remove_tree(const char *dir);

/* Reads a whole file of at most max bytes into b (initialised here). */
int stow_mounts_read_file(stow_buf *b, const char *path, size_t max, stow_error *err);

#endif
