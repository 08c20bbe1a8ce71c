/* Cache key templates: expansion of {hash:GLOBS}, {os}, {arch}, {env:NAME} and {branch}, and
 * key validation. The file hashing behind {hash:} is in glob.h, branch detection in branch.h. */
#ifndef STOW_KEYS_H
#define STOW_KEYS_H

#include <stddef.h>

#include "error.h"

#define STOW_KEY_MAX 200           /* longest valid key, restore-key prefix or scope */
#define STOW_KEY_TEMPLATE_MAX 4096 /* longest accepted template */
#define STOW_KEY_EXPANDED_MAX 4096 /* longest expansion (validation then caps at STOW_KEY_MAX) */

/* Expands a key template. base_dir is the directory globs are relative to (NULL = cwd); it is
 * also where {branch} starts looking for .git. On success *out is a malloc'd string the caller
 * frees. Errors (STOW_EUSAGE) name the template and the offending placeholder: unknown
 * placeholder, unterminated '{', stray '}', a glob with no match, an unset/empty {env:NAME}, a
 * branch that cannot be determined. I/O failures while hashing keep their own code (STOW_ERR).
 * The result is not validated: call stow_key_validate() with the right `what`. */
int stow_key_expand(char **out, const char *tmpl, const char *base_dir, stow_error *err);

/* Validates an expanded key, restore-key prefix or scope. what is "key", "restore key" or
 * "scope" and appears in the message. Allowed: 1..200 bytes of [A-Za-z0-9._-], not starting
 * with '.'; the error (STOW_EUSAGE) names the first bad character (printable, or as \xNN) and
 * its offset. */
int stow_key_validate(const char *key, const char *what, stow_error *err);

/* Replaces every character not allowed in keys with '-' in place (used for {branch}, {env:}).
 * Works bytewise: a multi-byte UTF-8 character becomes several '-'. */
void stow_key_sanitize(char *s);

/* Escapes a ref or branch name into a scope, reversibly (docs/TRUST.md): bytes of
 * [A-Za-z0-9.-] stay (a leading '.' does not), every other byte, '_' included, becomes "_xx"
 * (two lowercase hex digits), so "feature/x" -> "feature_2fx" and "feature-x" stays itself:
 * different refs never share a scope. A result longer than STOW_KEY_MAX keeps its first 166
 * bytes (whole escapes) and ends in "__" + 32 hex of the name's sha256 ("__" never occurs
 * otherwise). out needs STOW_KEY_MAX + 1 bytes; "" for an empty name. */
void stow_key_escape_ref(char out[STOW_KEY_MAX + 1], const char *name);

/* Copies len bytes of s into out for a message: non-printable bytes become \xNN, and a string
 * that does not fit ends in "...". Returns out. */
const char *stow_key_quote(char *out, size_t outsz, const char *s, size_t len);

#endif
