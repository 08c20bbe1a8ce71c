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

#include <limits.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend.h"

extern char **environ;

static void s3fx_require_server(int argc, char **argv, const char *server)
{
    const char *running = getenv("S3_SERVER");
    if (running != NULL && strcmp(running, server) == 0)
        return;
    char src[PATH_MAX];
    const char *env_src = getenv("STOW_TEST_SRC");
    if (env_src && *env_src) {
        snprintf(src, sizeof(src), "%s", env_src);
    } else {
        snprintf(src, sizeof(src), "%s", __FILE__);
        char *cut = strstr(src, "/tests/backends/");
        if (cut == NULL) {
            fprintf(stderr, "fixture: set STOW_TEST_SRC to the source directory\n");
            exit(1);
        }
        *cut = '\0';
    }
    char script[PATH_MAX + 64];
    snprintf(script, sizeof(script), "%s/tests/integration/with_s3.sh", src);
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) {
        fprintf(stderr, "fixture: cannot find my own executable\n");
        exit(1);
    }
    self[n] = '\0';
    char **args = calloc((size_t)argc + 5, sizeof(*args));
    if (args == NULL)
        exit(1);
    args[0] = "bash";
    args[1] = script;
    args[2] = (char *)server;
    args[3] = self;
    for (int i = 1; i < argc; i++)
        args[i + 3] = argv[i];
    pid_t pid;
    if (posix_spawnp(&pid, "bash", NULL, NULL, args, environ) != 0) {
        fprintf(stderr, "fixture: cannot run %s\n", script);
        exit(1);
    }
    free(args);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
    }
    exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
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
