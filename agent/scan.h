/* Walks a cache root and records every directory, regular file and symlink in a manifest. */
#ifndef STOW_SCAN_H
#define STOW_SCAN_H

#include "error.h"
#include "manifest.h"

/* Appends the entries below abs_root (not the root itself) with root index root_index and
 * layer -1. A missing root adds nothing. Symlinks are recorded, never followed; sockets,
 * fifos and devices are skipped with a warning; stowage's own temp files are ignored. */
int stow_scan_root(stow_manifest *m, uint32_t root_index, const char *abs_root, stow_error *err);

/* Files being extracted are written as STOW_TEMP_PREFIX <random> STOW_TEMP_SUFFIX beside
 * their final name, and renamed once their layer is verified. */
#define STOW_TEMP_PREFIX ".stowage-"
#define STOW_TEMP_SUFFIX ".tmp"

/* 1 for those temporary names. */
int stow_scan_is_temp_name(const char *name);

#endif
