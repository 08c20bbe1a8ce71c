/* {hash:GLOBS} for key templates: hashFiles-style globbing over a directory tree and the
 * sha256 over the matched files. */
#ifndef STOW_GLOB_H
#define STOW_GLOB_H

#include "error.h"

#define STOW_KEY_GLOB_MAX_DEPTH 64       /* directory levels a {hash:} walk may descend */
#define STOW_KEY_GLOB_MAX_VISITS 1000000 /* directory entries a {hash:} call may look at */

/* hashFiles: sha256 over the concatenated binary sha256 digests of every regular file matched
 * by the comma-separated globs, files de-duplicated and sorted by path (bytewise), 64 hex chars.
 *
 * Globs are relative to base_dir (NULL = cwd); whitespace around commas is trimmed. A segment
 * may use '*', '?' and '[...]' (fnmatch, dot files included);
 * a whole segment "**" matches zero or more directories. A glob that matches a directory
 * matches every file below it (like hashFiles). '**' walks and directory expansion neither
 * follow symlinked directories nor enter ".git" (name ".git" literally to hash inside it);
 * symlinks to regular files are hashed. A glob starting with '!' excludes the files it matches
 * from those matched by the globs before it (the last matching glob wins). ".." segments are
 * rejected, and so are absolute globs. Paths sort relative to base_dir. Every include glob
 * must match at least one file, else STOW_EUSAGE naming it (directories that a later exclusion
 * covers entirely are not walked, so their files do not count as matches). The walk is bounded
 * by STOW_KEY_GLOB_MAX_DEPTH and STOW_KEY_GLOB_MAX_VISITS (STOW_EUSAGE); unreadable
 * directories and files are STOW_ERR. */
int stow_key_hash_files(char out[65], const char *globs, const char *base_dir, stow_error *err);

#endif
