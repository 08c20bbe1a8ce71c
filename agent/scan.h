/* Walks a cache root and records every directory, regular file and symlink in a manifest. */
#ifndef STOW_SCAN_H
#define STOW_SCAN_H

#include "error.h"
#include "manifest.h"

/* Appends the entries below abs_root (not the root itself) with root index root_index and
 * layer -1. A missing root adds nothing. Symlinks are recorded, never followed; sockets,
 * fifos and devices are skipped with a warning; stowage's own temp files are ignored. */
int stow_scan_root(stow_manifest *m, uint32_t root_index, const char *abs_root, stow_error *err);

/* 1 for names stowage uses for files being extracted (".stowage-*.tmp"). */
int stow_scan_is_temp_name(const char *name);

#endif
