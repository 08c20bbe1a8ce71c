/* Cache key templates: expansion of {hash:GLOBS}, {os}, {arch}, {env:NAME} and {branch},
 * hashFiles-style file hashing, branch detection and key validation. */
#ifndef STOW_KEYS_H
#define STOW_KEYS_H

#include "error.h"

#define STOW_KEY_MAX 200             /* longest valid key, restore-key prefix or scope */
#define STOW_KEY_TEMPLATE_MAX 4096   /* longest accepted template */
#define STOW_KEY_EXPANDED_MAX 4096   /* longest expansion (validation then caps at STOW_KEY_MAX) */
#define STOW_KEY_GLOB_MAX_DEPTH 64   /* directory levels a {hash:} walk may descend */
#define STOW_KEY_GLOB_MAX_VISITS 1000000 /* directory entries a {hash:} call may look at */

/* Expands a key template. base_dir is the directory globs are relative to (NULL = cwd); it is
 * also where {branch} starts looking for .git. On success *out is a malloc'd string the caller
 * frees. Errors (STOW_EUSAGE) name the template and the offending placeholder: unknown
 * placeholder, unterminated '{', stray '}', a glob with no match, an unset/empty {env:NAME}, a
 * branch that cannot be determined. I/O failures while hashing keep their own code (STOW_ERR).
 * The result is not validated: call stow_key_validate() with the right `what`. */
int stow_key_expand(char **out, const char *tmpl, const char *base_dir, stow_error *err);

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

/* Branch name: GITHUB_HEAD_REF (pull requests) if set and non-empty, else GITHUB_REF_NAME,
 * else CI_COMMIT_REF_NAME, else read `.git/HEAD` walking up from start_dir (NULL = cwd; a
 * `.git` file "gitdir: PATH" is followed, for worktrees and submodules). "ref: refs/heads/x"
 * gives "x"; a detached HEAD is an error. The result is sanitized (stow_key_sanitize) and
 * malloc'd. Errors are STOW_EUSAGE (STOW_ERR for out of memory). */
int stow_key_branch(char **out, const char *start_dir, stow_error *err);

/* Validates an expanded key, restore-key prefix or scope. what is "key", "restore key" or
 * "scope" and appears in the message. Allowed: 1..200 bytes of [A-Za-z0-9._-], not starting
 * with '.'; the error (STOW_EUSAGE) names the first bad character (printable, or as \xNN) and
 * its offset. */
int stow_key_validate(const char *key, const char *what, stow_error *err);

/* Replaces every character not allowed in keys with '-' in place (used for {branch}, {env:}).
 * Works bytewise: a multi-byte UTF-8 character becomes several '-'. */
void stow_key_sanitize(char *s);

#endif
