/* {branch} for key templates: the branch name from the CI environment or from git. */
#ifndef STOW_BRANCH_H
#define STOW_BRANCH_H

#include "error.h"

/* Branch name: GITHUB_HEAD_REF (pull requests) if set and non-empty, else GITHUB_REF_NAME,
 * else CI_COMMIT_REF_NAME, else read `.git/HEAD` walking up from start_dir (NULL = cwd; a
 * `.git` file "gitdir: PATH" is followed, for worktrees and submodules). "ref: refs/heads/x"
 * gives "x"; a detached HEAD is an error. The result is sanitized (stow_key_sanitize) and
 * malloc'd. Errors are STOW_EUSAGE (STOW_ERR for out of memory). */
int stow_key_branch(char **out, const char *start_dir, stow_error *err);

#endif
