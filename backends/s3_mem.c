/* The part buffers of S3 uploads: one memory budget per backend, shared by every upload
 * running on it (a save may pack several layers at once), and a pool that keeps released
 * buffers for the next part instead of handing them back to malloc.
 *
 * Buffers are mapped with mmap, not malloc'd: glibc raises its mmap threshold to the size of
 * a freed mapped chunk, after which part-sized blocks come from the arenas and stay resident
 * when freed (the peak RSS of an S3 save was twice the part buffers it held). A mapping is
 * returned to the system the moment it is unmapped. */
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "log.h"
#include "s3_int.h"

void stow_s3_upload_plan(uint64_t *part_size, int *threads, uint64_t budget, int parallel)
{
    const uint64_t mib = 1024 * 1024;
    if (parallel < 1)
        parallel = 1;
    if (budget < STOW_S3_PART_MIN)
        budget = STOW_S3_PART_MIN;
    /* parallel parts uploading and one being filled, in whole MiB */
    uint64_t part = budget / (uint64_t)(parallel + 1) / mib * mib;
    if (part < STOW_S3_PART_MIN)
        part = STOW_S3_PART_MIN;
    if (part > STOW_S3_PART_DEFAULT)
        part = STOW_S3_PART_DEFAULT;
    uint64_t bufs = budget / part;
    int t = bufs > 1 ? (int)(bufs - 1 > (uint64_t)parallel ? (uint64_t)parallel : bufs - 1) : 1;
    *part_size = part;
    *threads = t;
}

void s3_mem_init(s3_mem *m, uint64_t budget)
{
    memset(m, 0, sizeof(*m));
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->cond, NULL);
    m->budget = budget < STOW_S3_PART_MIN ? STOW_S3_PART_MIN : budget;
}

void s3_mem_destroy(s3_mem *m)
{
    for (int i = 0; i < m->npool; i++)
        munmap(m->pool[i].ptr, m->pool[i].cap);
    m->npool = 0;
    pthread_mutex_destroy(&m->lock);
    pthread_cond_destroy(&m->cond);
}

/* Takes a buffer of at least size bytes: a pooled one, or a new mapping once the budget has
 * room for it. Waits while it has none: the buffers held are either uploading (their parts
 * finish or fail) or being filled by an upload that will hand them on, so the wait ends.
 * One buffer larger than the whole budget (parts grow past 2000 parts) is let through when
 * nothing else is held. */
int s3_mem_get(s3_part_buf *out, s3_mem *m, size_t size)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&m->lock);
    for (;;) {
        for (int i = 0; i < m->npool; i++) {
            if (m->pool[i].cap >= size) {
                *out = m->pool[i];
                m->pool[i] = m->pool[--m->npool];
                out->len = 0;
                pthread_mutex_unlock(&m->lock);
                return 0;
            }
        }
        if (m->held + size <= m->budget || m->held == 0)
            break;
        if (m->npool > 0) { /* pooled buffers too small for this part: drop one */
            s3_part_buf *d = &m->pool[--m->npool];
            munmap(d->ptr, d->cap);
            m->held -= d->cap;
            continue;
        }
        pthread_cond_wait(&m->cond, &m->lock);
    }
    m->held += size;
    if (m->held > m->peak)
        m->peak = m->held;
    pthread_mutex_unlock(&m->lock);
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        pthread_mutex_lock(&m->lock);
        m->held -= size;
        pthread_cond_broadcast(&m->cond);
        pthread_mutex_unlock(&m->lock);
        return -1;
    }
    out->ptr = p;
    out->cap = size;
    return 0;
}

/* Gives a buffer back to the pool (accepts an empty one). */
void s3_mem_put(s3_mem *m, s3_part_buf *b)
{
    if (b->ptr == NULL)
        return;
    pthread_mutex_lock(&m->lock);
    if (m->npool < S3_MEM_POOL_MAX) {
        m->pool[m->npool] = *b;
        m->pool[m->npool++].len = 0;
    } else {
        munmap(b->ptr, b->cap);
        m->held -= b->cap;
    }
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
    memset(b, 0, sizeof(*b));
}

uint64_t stow_s3_upload_mem_peak(const stow_backend *sb)
{
    if (sb == NULL || sb->ops != &stow_backend_s3_ops)
        return 0;
    s3_backend *b = (s3_backend *)(uintptr_t)sb;
    pthread_mutex_lock(&b->mem.lock);
    uint64_t peak = b->mem.peak;
    pthread_mutex_unlock(&b->mem.lock);
    return peak;
}
