/* The staging area of one restore: every file and symlink of every layer is first written
 * under a temporary name (STOW_TEMP_PREFIX <16 hex> STOW_TEMP_SUFFIX) beside its final name,
 * or, inside a directory that did not exist before, under its final name in that directory,
 * itself made under a temporary name; only when all layers have been fetched and verified
 * does commit rename them into place (a new directory with one rename for its whole tree).
 * discard removes the temporary files and directories and the directories the restore
 * created, so a failed restore leaves the previous tree as it was.
 *
 * A stage holds the roots open (directory fds, a shared flock each, so that a concurrent
 * restore does not sweep this one's temporary files). stow_stage_add and the created-dir
 * callback may be called from several threads at once; commit and discard may not. */
#ifndef STOW_STAGE_H
#define STOW_STAGE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "safedir.h"

typedef struct stow_stage stow_stage;

/* Opens (creating them) the non-NULL roots[0..nroots); roots is borrowed and must outlive
 * the stage. */
int stow_stage_new(stow_stage **out, char *const *roots, size_t nroots, stow_error *err);
/* Closes the roots. Does not discard: call stow_stage_discard first on failure. */
void stow_stage_free(stow_stage *s);

/* The root's directory fd, or -1 for a root not restored. */
int stow_stage_rootfd(const stow_stage *s, uint32_t root);
/* The root's path, for messages ("" for a root not restored). */
const char *stow_stage_root(const stow_stage *s, uint32_t root);

/* Opens dir below root through c (creating missing directories, which discard removes
 * again). The fd belongs to c. */
int stow_stage_dir(stow_stage *s, stow_safedir_cache *c, uint32_t root, const char *dir,
                   stow_error *err);

/* Makes the entry's directory dir (below root) for the restore; called for the entry's
 * directories in index order (parents first), from one thread, before any file is staged.
 * One that does not exist but whose parent does is made under a temporary name beside its
 * final one; whatever lies below it is written under final names, and commit renames the
 * whole tree into place. Returns STOW_OK or an error code with err set. */
int stow_stage_make_dir(stow_stage *s, stow_safedir_cache *c, uint32_t root, const char *dir,
                        stow_error *err);

/* Where one extracting thread writes: the last directory it looked up, and whether files go
 * there under their final names (inside a new directory, direct) or under temporary names
 * recorded with stow_stage_add. Initialise with STOW_STAGE_CURSOR_INIT. */
typedef struct stow_stage_cursor {
    stow_safedir_cache dc;
    uint32_t root;
    int direct;
    int valid;
    char dir[PATH_MAX];
} stow_stage_cursor;
#define STOW_STAGE_CURSOR_INIT                                                                     \
    {                                                                                              \
        .dc = STOW_SAFEDIR_CACHE_INIT, .valid = 0                                                  \
    }

/* The fd (owned by cur) of the directory where files of dir (below root) are staged; sets
 * cur->direct. -1 with err set when it cannot be opened or made. */
int stow_stage_file_dir(stow_stage *s, stow_stage_cursor *cur, uint32_t root, const char *dir,
                        stow_error *err);
void stow_stage_cursor_close(stow_stage_cursor *cur);

/* 1 when a file created with mode & 0777 would not end up with mode (umask, setid bits). */
int stow_stage_needs_chmod(const stow_stage *s, unsigned mode);

/* A fresh temporary name for a file about to be staged (out: 48 bytes). */
void stow_stage_temp_name(char *out, size_t outsz);

/* Records that dir/tmp (below root) is to be renamed to dir/name at commit. */
int stow_stage_add(stow_stage *s, uint32_t root, const char *dir, const char *name, const char *tmp,
                   stow_error *err);
size_t stow_stage_count(const stow_stage *s);

/* Renames every staged file into place. First checks that no final name is a directory
 * (which a rename cannot replace), so that the usual reasons for a failed rename stop the
 * commit before the first file is replaced. *committed says how many were renamed; on
 * failure the rest stay staged for discard. */
int stow_stage_commit(stow_stage *s, size_t *committed, stow_error *err);

/* Removes every staged temporary file not yet committed, then the (empty) directories this
 * restore created, deepest first. */
void stow_stage_discard(stow_stage *s);

/* 1 for stowage's own temporary names: STOW_TEMP_PREFIX, 16 lowercase hex digits,
 * STOW_TEMP_SUFFIX. */
int stow_stage_is_temp_name(const char *name);

/* Removes the temporary files an interrupted restore left under abs_root: entries with
 * stowage's own temporary names that are regular files or symlinks (a restore stages both),
 * or directories (new directories staged whole, removed with everything in them),
 * never following a symlink, never descending into one. Skipped (0 removed) while another
 * restore holds the root, or when the root cannot be locked at all. *removed counts what
 * was removed. */
int stow_stage_sweep(const char *abs_root, uint64_t *removed, stow_error *err);

#endif
