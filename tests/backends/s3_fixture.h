/* Test fixture for the S3 backend tests: a real S3 server (s3rver or moto_server) started
 * by tests/integration/with_s3.sh.
 *
 * s3fx_require_server(argc, argv, "s3rver") returns at once when that server already runs
 * (S3_SERVER is set by with_s3.sh); otherwise it re-runs this executable under with_s3.sh
 * and exits with that run's status (77 when the server is not installed), so CTest can run
 * the test binary directly and the script owns the server's lifetime. Also: deterministic
 * data with random access, and a sink that compares against it. */
#ifndef STOW_TEST_S3_FIXTURE_H
#define STOW_TEST_S3_FIXTURE_H

#include "server_fixture.h"
#include <limits.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend.h"

static void s3fx_require_server(int argc, char **argv, const char *server)
{
    const char *running = getenv("S3_SERVER");
    if (running != NULL && strcmp(running, server) == 0)
        return;
    fx_reexec_through("with_s3.sh", server, argc, argv);
}

/* Byte i of the deterministic stream with the given seed. */
static unsigned char s3fx_byte(uint64_t seed, uint64_t i)
{
    uint64_t z = (i / 8 + 1) * 0x9E3779B97F4A7C15ull ^ seed;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (unsigned char)(z >> ((i % 8) * 8));
}

static void s3fx_fill(unsigned char *buf, size_t len, uint64_t seed, uint64_t offset)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = s3fx_byte(seed, offset + i);
}

/* A sink checking that it receives the stream of seed from offset on. */
typedef struct s3fx_check {
    uint64_t seed, offset, got;
    int bad;
} s3fx_check;

static int s3fx_check_sink(void *ud, const void *buf, size_t len)
{
    s3fx_check *c = ud;
    const unsigned char *p = buf;
    for (size_t i = 0; i < len; i++)
        if (p[i] != s3fx_byte(c->seed, c->offset + c->got + i)) {
            c->bad = 1;
            break;
        }
    c->got += len;
    return 0;
}

#endif
