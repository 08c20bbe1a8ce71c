/* One growable byte buffer with a cap, in the spirit of curl's dynbuf: exceeding the cap is
 * an error by construction, so every buffer built from outside input has a bound (STYLE.md
 * rule 7). The contents are always NUL-terminated, so a text buffer is a C string. */
#ifndef STOW_BUF_H
#define STOW_BUF_H

#include <stddef.h>

#include "error.h"

typedef struct stow_buf {
    char *ptr;  /* NULL until the first add */
    size_t len; /* bytes held, not counting the terminating NUL */
    size_t cap; /* bytes allocated */
    size_t max; /* most bytes len may reach */
    int failed; /* 1 once an add failed, until reset/free: a builder may check once at the end */
    int fixed;  /* over caller memory (stow_buf_init_fixed): never reallocated nor freed */
} stow_buf;

/* An empty buffer that may grow to max bytes. */
void stow_buf_init(stow_buf *b, size_t max);

/* An empty buffer over the caller's array mem of size bytes (so at most size - 1 bytes and
 * the NUL), for building into fixed fields without a heap allocation. mem[0] becomes NUL.
 * Never reallocated; stow_buf_free leaves mem alone and stow_buf_take returns a malloc'd
 * copy. size 0 gives a buffer on which every non-empty add fails. */
void stow_buf_init_fixed(stow_buf *b, char *mem, size_t size);

/* Appends len bytes. Past the cap or out of memory: STOW_ERR with a message naming the cap;
 * the buffer keeps what it had. */
int stow_buf_add(stow_buf *b, const void *data, size_t len, stow_error *err);
int stow_buf_adds(stow_buf *b, const char *s, stow_error *err);
int stow_buf_addf(stow_buf *b, stow_error *err, const char *fmt, ...) STOW_PRINTF(3, 4);

/* Makes room for len more bytes (and the NUL) without adding them, so that a buffer whose
 * final size is known grows once. Fails like stow_buf_add past the cap. */
int stow_buf_reserve(stow_buf *b, size_t len, stow_error *err);

/* The contents as a string: "" for an empty buffer, never NULL. */
const char *stow_buf_str(const stow_buf *b);

/* Hands the allocation to the caller (free() it) and leaves b empty with the same cap.
 * An empty buffer yields an allocated "". NULL only when that allocation fails. */
char *stow_buf_take(stow_buf *b, size_t *len);

/* Drops the contents, keeps the allocation. */
void stow_buf_reset(stow_buf *b);
/* Frees the allocation; b is empty again and may be reused. Accepts NULL. */
void stow_buf_free(stow_buf *b);

#endif
