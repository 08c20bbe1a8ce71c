/* Reading a local input file with a cap: the config file, state files, token files, .netrc,
 * the shared AWS credentials file. The file must be a regular file no larger than max bytes;
 * the check comes before any allocation, and a FIFO, a device such as /dev/zero or a
 * directory is refused at once (opened non-blocking, so a FIFO without a writer cannot hang). */
#ifndef STOW_READFILE_H
#define STOW_READFILE_H

#include <stddef.h>

#include "buf.h"
#include "error.h"

/* Replaces the contents of out with the file's bytes (NUL-terminated, see buf.h); out's own
 * cap also applies. Errors name the file: STOW_ENOTFOUND when it does not exist, STOW_ERR
 * otherwise (not a regular file, larger than max, unreadable). out keeps nothing on error. */
int stow_read_file(stow_buf *out, const char *path, size_t max, stow_error *err);

/* The same checks for a file read as a stream: *fd is an open descriptor of a regular file
 * of at most max bytes (the caller closes it), or -1 with the same errors as above. */
int stow_open_file(int *fd, const char *path, size_t max, stow_error *err);

#endif
