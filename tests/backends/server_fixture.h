/* Tests that need a server re-run themselves through a wrapper script that starts it
 * (tests/integration/with_*.sh), so the script owns the server and stops it even when the
 * test binary crashes. Shared by nginx_fixture.h and s3_fixture.h. */
#ifndef STOW_SERVER_FIXTURE_H
#define STOW_SERVER_FIXTURE_H

#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* Runs `bash <src>/tests/integration/<script> [extra] <this executable> argv[1..]` and exits
 * with its status. extra may be NULL. */
static inline void fx_reexec_through(const char *script_name, const char *extra, int argc,
                                     char **argv)
{
    char src[PATH_MAX];
    const char *env_src = getenv("STOW_TEST_SRC");
    if (env_src && *env_src) {
        snprintf(src, sizeof(src), "%s", env_src);
    } else {
        /* __FILE__ is <src>/tests/backends/server_fixture.h in CMake builds */
        snprintf(src, sizeof(src), "%s", __FILE__);
        char *cut = strstr(src, "/tests/backends/");
        if (cut == NULL) {
            fprintf(stderr, "fixture: set STOW_TEST_SRC to the source directory\n");
            exit(1);
        }
        *cut = '\0';
    }
    char script[PATH_MAX + 64];
    snprintf(script, sizeof(script), "%s/tests/integration/%s", src, script_name);
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
    int k = 0;
    args[k++] = "bash";
    args[k++] = script;
    if (extra != NULL)
        args[k++] = (char *)extra;
    args[k++] = self;
    for (int i = 1; i < argc; i++)
        args[k++] = argv[i];
    pid_t pid;
    if (posix_spawnp(&pid, "bash", NULL, NULL, args, environ) != 0) {
        fprintf(stderr, "fixture: cannot run bash %s\n", script);
        exit(1);
    }
    free(args);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
    }
    exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}

#endif
