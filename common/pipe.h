/* A bounded byte pipe between two threads: a producer writes, a consumer reads, either side
 * can close it with an error so the other stops instead of blocking forever. */
#ifndef STOW_PIPE_H
#define STOW_PIPE_H

#include <stddef.h>
#include <sys/types.h>

typedef struct stow_pipe stow_pipe;

stow_pipe *stow_pipe_new(size_t capacity); /* NULL on allocation failure */
void stow_pipe_free(stow_pipe *p);

/* Blocks until all of buf is queued. Returns 0, or -1 when the reader has closed. */
int stow_pipe_write(stow_pipe *p, const void *buf, size_t len);
/* Producer is done: failed = 0 for a clean end of stream, non-zero for an error. */
void stow_pipe_close_write(stow_pipe *p, int failed);

/* Blocks until data, end of stream or error. Returns bytes read, 0 at a clean end, -1 when
 * the writer closed with an error. */
ssize_t stow_pipe_read(stow_pipe *p, void *buf, size_t cap);
/* Consumer gives up: pending and later writes fail. */
void stow_pipe_close_read(stow_pipe *p);

#endif
