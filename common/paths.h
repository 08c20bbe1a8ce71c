/* Path helpers: expansion of configured roots, and the safety rules for stored paths. */
#ifndef STOW_PATHS_H
#define STOW_PATHS_H

#include <stddef.h>

#include "error.h"

/* Expands a leading "~" / "~/" to $HOME and $VAR / ${VAR} anywhere; an unset variable is
 * an error naming it. A relative path is made absolute against the cwd; a path that starts
 * with a variable must expand to an absolute path (an empty or relative value is an error,
 * never the cwd). Trailing slashes are removed. *out is malloc'd. */
int stow_path_expand(char **out, const char *configured, stow_error *err);

/* 1 when rel is a safe relative path inside a root: non-empty, no leading '/', no empty,
 * "." or ".." segments, no NUL, at most 4095 bytes. */
int stow_path_rel_ok(const char *rel);

/* 1 when a symlink at rel (relative to a root) with this target stays inside the root
 * lexically: the target is relative and resolving it from rel's directory, treating every
 * component as a directory, never climbs above the root. Necessary, not sufficient: links
 * it passes through can still lead out ("u -> d/s/.." with "d/s -> .."); restore also
 * judges every link with stow_safedir_link_inside (safedir.h), which follows them. */
int stow_path_link_ok(const char *rel, const char *target);

/* mkdir -p of an absolute directory. */
int stow_path_mkdirs(const char *dir, int mode, stow_error *err);

#endif
