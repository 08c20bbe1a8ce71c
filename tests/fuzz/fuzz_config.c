/* libFuzzer harness: the configuration loader (agent/config.h). The input up to its first NUL
 * byte is the INI file; what follows, split at NUL bytes, is the command line after the
 * subcommand. Loading must either succeed or fail with a message, never crash or leak. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "fuzz_util.h"
#include "log.h"

extern char **environ;
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ARGS 32

static char ini_path[600];

static void setup(void)
{
    const char *dir = fuzz_tmp_dir("config");
    snprintf(ini_path, sizeof(ini_path), "%s/stowage.ini", dir);
    /* The fuzzer's own environment must not feed the loader: drop every STOWAGE_* variable. */
    for (int again = 1; again;) {
        again = 0;
        for (char **e = environ; *e; e++) {
            if (strncmp(*e, "STOWAGE_", 8) == 0) {
                char name[256];
                size_t n = strcspn(*e, "=");
                if (n >= sizeof(name))
                    abort();
                memcpy(name, *e, n);
                name[n] = '\0';
                unsetenv(name);
                again = 1;
                break;
            }
        }
    }
    setenv("HOME", dir,
           1); /* "~" in paths; the file is always named by --config, so the cwd does not matter */
    stow_log_set_level(STOW_LOG_ERROR);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (ini_path[0] == '\0')
        setup();
    const uint8_t *nul = memchr(data, '\0', size);
    size_t ini_len = nul ? (size_t)(nul - data) : size;
    fuzz_write_file(ini_path, data, ini_len);

    /* argv strings: copies, NUL-terminated, at most MAX_ARGS of them */
    char *copy = NULL;
    char *argv[MAX_ARGS + 5]; /* 4 fixed, MAX_ARGS from the input, NULL */
    int argc = 0;
    argv[argc++] = "stowage";
    argv[argc++] = "restore";
    argv[argc++] = "--config";
    argv[argc++] = ini_path;
    if (nul != NULL) {
        size_t rest = size - ini_len - 1;
        copy = malloc(rest + 1);
        if (copy == NULL)
            return 0;
        memcpy(copy, nul + 1, rest);
        copy[rest] = '\0';
        for (char *p = copy; p < copy + rest + 1 && argc < MAX_ARGS + 4;) {
            argv[argc++] = p;
            p += strlen(p) + 1;
        }
    }
    argv[argc] = NULL;

    stow_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    stow_error err = {0};
    char **rest = NULL;
    int nrest = 0;
    int rc = stow_config_load(&cfg, argc, argv, 2, &rest, &nrest, &err);
    if (rc != STOW_OK && err.msg[0] == '\0')
        abort();
    if (rc == STOW_OK && (nrest < 0 || nrest > argc))
        abort();
    free(rest); /* the array is malloc'd (main.c frees it too); its strings point into argv */
    stow_config_free(&cfg);
    free(copy);
    return 0;
}
