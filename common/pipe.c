#include "pipe.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct stow_pipe {
    pthread_mutex_t lock;
    pthread_cond_t can_read, can_write;
    unsigned char *buf;
    size_t cap, head, len; /* ring buffer: data starts at head, len bytes */
    int write_closed, write_failed, read_closed;
};

stow_pipe *stow_pipe_new(size_t capacity)
{
    stow_pipe *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->buf = malloc(capacity);
    if (p->buf == NULL) {
        free(p);
        return NULL;
    }
    p->cap = capacity;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->can_read, NULL);
    pthread_cond_init(&p->can_write, NULL);
    return p;
}

void stow_pipe_free(stow_pipe *p)
{
    if (p == NULL)
        return;
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->can_read);
    pthread_cond_destroy(&p->can_write);
    free(p->buf);
    free(p);
}

int stow_pipe_write(stow_pipe *p, const void *buf, size_t len)
{
    const unsigned char *src = buf;
    pthread_mutex_lock(&p->lock);
    while (len > 0) {
        while (p->len == p->cap && !p->read_closed)
            pthread_cond_wait(&p->can_write, &p->lock);
        if (p->read_closed) {
            pthread_mutex_unlock(&p->lock);
            return -1;
        }
        size_t tail = (p->head + p->len) % p->cap;
        size_t room = p->cap - p->len;
        size_t contiguous = tail >= p->head ? p->cap - tail : p->head - tail;
        size_t n = len < room ? len : room;
        if (n > contiguous)
            n = contiguous;
        memcpy(p->buf + tail, src, n);
        p->len += n;
        src += n;
        len -= n;
        pthread_cond_signal(&p->can_read);
    }
    pthread_mutex_unlock(&p->lock);
    return 0;
}

void stow_pipe_close_write(stow_pipe *p, int failed)
{
    pthread_mutex_lock(&p->lock);
    p->write_closed = 1;
    p->write_failed = failed != 0;
    pthread_cond_broadcast(&p->can_read);
    pthread_mutex_unlock(&p->lock);
}

ssize_t stow_pipe_read(stow_pipe *p, void *buf, size_t cap)
{
    pthread_mutex_lock(&p->lock);
    while (p->len == 0 && !p->write_closed)
        pthread_cond_wait(&p->can_read, &p->lock);
    if (p->len == 0) {
        ssize_t r = p->write_failed ? -1 : 0;
        pthread_mutex_unlock(&p->lock);
        return r;
    }
    size_t contiguous = p->cap - p->head;
    size_t n = p->len < cap ? p->len : cap;
    if (n > contiguous)
        n = contiguous;
    memcpy(buf, p->buf + p->head, n);
    p->head = (p->head + n) % p->cap;
    p->len -= n;
    pthread_cond_signal(&p->can_write);
    pthread_mutex_unlock(&p->lock);
    return (ssize_t)n;
}

void stow_pipe_close_read(stow_pipe *p)
{
    pthread_mutex_lock(&p->lock);
    p->read_closed = 1;
    pthread_cond_broadcast(&p->can_write);
    pthread_mutex_unlock(&p->lock);
}
