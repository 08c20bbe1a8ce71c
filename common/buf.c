#include "buf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void stow_buf_init(stow_buf *b, size_t max)
{
    b->ptr = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
    b->failed = 0;
    b->fixed = 0;
}

void stow_buf_init_fixed(stow_buf *b, char *mem, size_t size)
{
    stow_buf_init(b, size > 0 ? size - 1 : 0);
    b->fixed = 1;
    if (size > 0) {
        b->ptr = mem;
        b->cap = size;
        mem[0] = '\0';
    }
}

/* Room for len more bytes plus the NUL. */
static int reserve(stow_buf *b, size_t len, stow_error *err)
{
    if (len > b->max - b->len || b->len > b->max) {
        b->failed = 1;
        return stow_error_set(err, STOW_ERR, "more than %zu bytes", b->max);
    }
    size_t need = b->len + len + 1;
    if (need <= b->cap)
        return STOW_OK;
    if (b->fixed) { /* only reached by an empty add to a size-0 buffer */
        b->failed = 1;
        return stow_error_set(err, STOW_ERR, "more than %zu bytes", b->max);
    }
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > b->max + 1)
        cap = b->max + 1;
    char *p = realloc(b->ptr, cap);
    if (p == NULL) {
        b->failed = 1;
        return stow_error_set(err, STOW_ERR, "out of memory growing a buffer to %zu bytes", cap);
    }
    b->ptr = p;
    b->cap = cap;
    return STOW_OK;
}

int stow_buf_reserve(stow_buf *b, size_t len, stow_error *err)
{
    int rc = reserve(b, len, err);
    if (rc == STOW_OK && b->ptr != NULL && b->len == 0)
        b->ptr[0] = '\0';
    return rc;
}

int stow_buf_add(stow_buf *b, const void *data, size_t len, stow_error *err)
{
    int rc = reserve(b, len, err);
    if (rc < 0)
        return rc;
    if (len)
        memcpy(b->ptr + b->len, data, len);
    b->len += len;
    b->ptr[b->len] = '\0';
    return STOW_OK;
}

int stow_buf_adds(stow_buf *b, const char *s, stow_error *err)
{
    return stow_buf_add(b, s, strlen(s), err);
}

int stow_buf_addf(stow_buf *b, stow_error *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = 1;
        return stow_error_set(err, STOW_ERR, "cannot format \"%s\"", fmt);
    }
    int rc = reserve(b, (size_t)n, err);
    if (rc < 0)
        return rc;
    va_start(ap, fmt);
    vsnprintf(b->ptr + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return STOW_OK;
}

const char *stow_buf_str(const stow_buf *b) { return b->ptr ? b->ptr : ""; }

char *stow_buf_take(stow_buf *b, size_t *len)
{
    if (b->fixed) {
        char *copy = malloc(b->len + 1);
        if (copy) {
            if (b->len)
                memcpy(copy, b->ptr, b->len);
            copy[b->len] = '\0';
        }
        if (len)
            *len = copy ? b->len : 0;
        stow_buf_reset(b);
        return copy;
    }
    char *p = b->ptr ? b->ptr : calloc(1, 1);
    if (len)
        *len = b->ptr ? b->len : 0;
    stow_buf_init(b, b->max);
    return p;
}

void stow_buf_reset(stow_buf *b)
{
    b->len = 0;
    b->failed = 0;
    if (b->ptr)
        b->ptr[0] = '\0';
}

void stow_buf_free(stow_buf *b)
{
    if (b == NULL)
        return;
    if (b->fixed) {
        stow_buf_reset(b);
        return;
    }
    free(b->ptr);
    stow_buf_init(b, b->max);
}
