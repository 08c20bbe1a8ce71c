/* Unit tests for common/pipe.c: bytes arrive intact and in order across threads, and either
 * side can close the pipe without leaving the other blocked. A watchdog alarm turns a
 * deadlock into a failed test instead of a hung one. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hash.h"
#include "pipe.h"
#include "test.h"

#define MiB (1024u * 1024u)

/* xorshift so the stream is not periodic in any chunk size used below */
static uint8_t next_byte(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (uint8_t)(*s >> 24);
}

typedef struct {
    stow_pipe *p;
    uint64_t total;
    const size_t *chunks;
    size_t nchunks;
    int fail_at_end; /* close with failure instead of cleanly */
    int rc;          /* first non-zero write result */
    uint64_t written;
    uint8_t digest[STOW_SHA256_LEN];
} producer;

static void *produce(void *arg)
{
    producer *pr = arg;
    stow_sha256 *h = stow_sha256_new();
    uint8_t *buf = malloc(2 * MiB);
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    size_t ci = 0;
    if (h == NULL || buf == NULL) {
        pr->rc = -2;
        goto done;
    }
    while (pr->written < pr->total) {
        size_t n = pr->chunks[ci++ % pr->nchunks];
        if (n > pr->total - pr->written)
            n = (size_t)(pr->total - pr->written);
        for (size_t i = 0; i < n; i++)
            buf[i] = next_byte(&seed);
        int rc = stow_pipe_write(pr->p, buf, n);
        if (rc != 0) {
            pr->rc = rc;
            break;
        }
        stow_sha256_update(h, buf, n);
        pr->written += n;
    }
    stow_sha256_final(h, pr->digest);
done:
    stow_pipe_close_write(pr->p, pr->fail_at_end || pr->rc != 0);
    stow_sha256_free(h);
    free(buf);
    return NULL;
}

typedef struct {
    stow_pipe *p;
    const size_t *sizes;
    size_t nsizes;
    uint64_t stop_after; /* close the read side after this many bytes; 0 = read to the end */
    ssize_t last;        /* the result that ended the loop */
    uint64_t got;
    uint8_t digest[STOW_SHA256_LEN];
} consumer;

static void *consume(void *arg)
{
    consumer *c = arg;
    stow_sha256 *h = stow_sha256_new();
    uint8_t *buf = malloc(2 * MiB);
    size_t si = 0;
    c->last = -2;
    if (h == NULL || buf == NULL)
        goto done;
    for (;;) {
        if (c->stop_after && c->got >= c->stop_after) {
            stow_pipe_close_read(c->p);
            c->last = 1;
            break;
        }
        size_t want = c->sizes[si++ % c->nsizes];
        ssize_t n = stow_pipe_read(c->p, buf, want);
        if (n <= 0) {
            c->last = n;
            break;
        }
        if ((size_t)n > want) {
            c->last = -3;
            break;
        }
        stow_sha256_update(h, buf, (size_t)n);
        c->got += (uint64_t)n;
    }
    stow_sha256_final(h, c->digest);
done:
    stow_sha256_free(h);
    free(buf);
    return NULL;
}

static const size_t odd_writes[] = {1, 4093, 65537, 3, 1048583, 777, 2 * MiB - 1, 13, 524287};
static const size_t odd_reads[] = {7, 65521, 1, 1048573, 3001, 2 * MiB - 3, 100003, 2};

static void run(stow_pipe *p, producer *pr, consumer *c)
{
    pthread_t tp, tc;
    CHECK_INT(pthread_create(&tc, NULL, consume, c), 0);
    CHECK_INT(pthread_create(&tp, NULL, produce, pr), 0);
    pthread_join(tp, NULL);
    pthread_join(tc, NULL);
    (void)p;
}

static void test_stream(size_t capacity, uint64_t total)
{
    stow_pipe *p = stow_pipe_new(capacity);
    CHECK(p != NULL);
    if (p == NULL)
        return;
    producer pr = {.p = p, .total = total, .chunks = odd_writes, .nchunks = 9};
    consumer c = {.p = p, .sizes = odd_reads, .nsizes = 8};
    run(p, &pr, &c);
    CHECK_INT(pr.rc, 0);
    CHECK(pr.written == total);
    CHECK(c.got == total);
    CHECK_INT(c.last, 0); /* clean end of stream */
    CHECK(memcmp(pr.digest, c.digest, STOW_SHA256_LEN) == 0);
    /* After the end, reads keep reporting the end. */
    uint8_t b[4];
    CHECK_INT(stow_pipe_read(p, b, sizeof(b)), 0);
    stow_pipe_free(p);
}

static void test_writer_fails(void)
{
    /* Data queued before the failure is still delivered, then the reader sees -1. */
    stow_pipe *p = stow_pipe_new(1 * MiB);
    CHECK(p != NULL);
    if (p == NULL)
        return;
    producer pr = {
        .p = p, .total = 3 * MiB + 12345, .chunks = odd_writes, .nchunks = 9, .fail_at_end = 1};
    consumer c = {.p = p, .sizes = odd_reads, .nsizes = 8};
    run(p, &pr, &c);
    CHECK_INT(pr.rc, 0);
    CHECK(c.got == pr.total);
    CHECK_INT(c.last, -1);
    CHECK(memcmp(pr.digest, c.digest, STOW_SHA256_LEN) == 0);
    uint8_t b[4];
    CHECK_INT(stow_pipe_read(p, b, sizeof(b)), -1);
    stow_pipe_free(p);

    /* Single-threaded: queued bytes first, then -1. */
    p = stow_pipe_new(16);
    CHECK_INT(stow_pipe_write(p, "hello", 5), 0);
    stow_pipe_close_write(p, 1);
    char out[16];
    CHECK_INT(stow_pipe_read(p, out, sizeof(out)), 5);
    CHECK(memcmp(out, "hello", 5) == 0);
    CHECK_INT(stow_pipe_read(p, out, sizeof(out)), -1);
    stow_pipe_free(p);
}

static void *close_write_later(void *arg)
{
    usleep(100 * 1000);
    stow_pipe_close_write(arg, 1);
    return NULL;
}

static void test_reader_blocked_then_writer_fails(void)
{
    stow_pipe *p = stow_pipe_new(1024);
    pthread_t t;
    CHECK_INT(pthread_create(&t, NULL, close_write_later, p), 0);
    char buf[64];
    CHECK_INT(stow_pipe_read(p, buf, sizeof(buf)), -1); /* blocks until the close */
    pthread_join(t, NULL);
    stow_pipe_free(p);
}

static void test_reader_closes(void)
{
    /* The consumer gives up after 2 MiB while the producer still has 62 MiB to write into a
     * full 1 MiB pipe: the producer must get -1 and both threads must finish. */
    stow_pipe *p = stow_pipe_new(1 * MiB);
    CHECK(p != NULL);
    if (p == NULL)
        return;
    producer pr = {.p = p, .total = 64ull * MiB, .chunks = odd_writes, .nchunks = 9};
    consumer c = {.p = p, .sizes = odd_reads, .nsizes = 8, .stop_after = 2 * MiB};
    run(p, &pr, &c);
    CHECK_INT(pr.rc, -1);
    CHECK(pr.written < pr.total);
    /* written counts whole chunks; the reader may have part of the chunk that failed */
    CHECK(c.got >= 2 * MiB && c.got <= pr.written + 2 * MiB);
    CHECK_INT(c.last, 1);
    /* Later writes fail at once, even ones that would fit. */
    CHECK_INT(stow_pipe_write(p, "x", 1), -1);
    stow_pipe_free(p);

    /* Closed before anything is written. */
    p = stow_pipe_new(8);
    stow_pipe_close_read(p);
    CHECK_INT(stow_pipe_write(p, "abc", 3), -1);
    stow_pipe_free(p);
}

int main(void)
{
    alarm(120); /* a deadlock kills the test (SIGALRM) instead of hanging CTest */
    test_stream(1 * MiB, 64ull * MiB);
    test_stream(3, 100000); /* tiny ring: every write and read wraps */
    test_stream(1, 4099);
    test_writer_fails();
    test_reader_blocked_then_writer_fails();
    test_reader_closes();
    stow_pipe_free(NULL);
    TEST_DONE();
}
