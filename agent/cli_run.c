/* stowage run, mounts, setup and clean: the commands that act on the build and its directories. */
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "log.h"
#include "mounts.h"
#include "paths.h"

extern char **environ;

/* stowage mounts inject|extract, and the same steps inside stowage run: fail-open like
 * restore and save (docker missing or the daemon unreachable is a warning unless --strict). */
static int mounts_step(stow_cli_ctx *r, int extract, int *done)
{
    stow_error err = {0};
    *done = 0;
    if (stow_mounts_run(&r->cfg, extract, &err) != STOW_OK)
        return stow_cli_trouble(r, extract ? "mounts extract" : "mounts inject", &err);
    *done = 1;
    return EXIT_OK;
}

int stow_cli_mounts(stow_cli_ctx *r, char **args, int nargs)
{
    if (nargs != 1 || (strcmp(args[0], "inject") != 0 && strcmp(args[0], "extract") != 0)) {
        stow_error_log("usage: stowage mounts inject|extract [options]");
        return EXIT_USAGE;
    }
    if (!stow_mounts_configured(&r->cfg)) {
        stow_error_log("no BuildKit cache mounts configured: set [buildkit] mounts or dockerfile, "
                       "STOWAGE_BUILDKIT_MOUNTS, --buildkit-mount or --dockerfile");
        return EXIT_USAGE;
    }
    int done;
    int code = mounts_step(r, strcmp(args[0], "extract") == 0, &done);
    /* For the CI templates: whether the transfer happened (an extract after a failed or
     * partial inject could replace a host directory with part of it). */
    printf("mounts-result=%s\n", done ? "done" : "failed");
    fflush(stdout);
    return code;
}

static volatile pid_t child_pid = -1;

static void forward_signal(int sig)
{
    if (child_pid > 0)
        kill(child_pid, sig);
}

/* restore, run the command, save; the command's status is the exit status. */
int stow_cli_run(stow_cli_ctx *r, char **cmdv, int cmdc)
{
    if (cmdc == 0) {
        stow_error_log("run needs a command: stowage run [options] -- CMD [ARGS...]");
        return EXIT_USAGE;
    }
    int code = stow_cli_restore_save(r, 0);
    if (code != EXIT_OK)
        return code;
    int mounts = stow_mounts_configured(&r->cfg), mounts_code = EXIT_OK, injected = 0;
    if (mounts && (code = mounts_step(r, 0, &injected)) != EXIT_OK)
        return code;
    char **argv = calloc((size_t)cmdc + 1, sizeof(char *));
    if (argv == NULL)
        return EXIT_FAILED;
    memcpy(argv, cmdv, (size_t)cmdc * sizeof(char *));
    fflush(stdout);
    /* Signals are blocked from before the spawn until child_pid is set, so a SIGTERM that
     * arrives as soon as the command runs is forwarded, never lost or fatal to stowage. The
     * command itself starts with the caller's mask and default dispositions. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigprocmask(SIG_BLOCK, &block, &old);
    struct sigaction sa = {0};
    sa.sa_handler = forward_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    posix_spawnattr_t attr;
    int rc = posix_spawnattr_init(&attr);
    if (rc == 0) {
        posix_spawnattr_setsigmask(&attr, &old);
        posix_spawnattr_setsigdefault(&attr, &block);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    }
    pid_t pid;
    if (rc == 0) {
        rc = posix_spawnp(&pid, argv[0], NULL, &attr, argv, environ);
        posix_spawnattr_destroy(&attr);
    }
    free(argv);
    int status = 0, cmd_code;
    if (rc == 0)
        child_pid = pid;
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        stow_error_log("cannot run %s: %s", cmdv[0], strerror(rc));
        cmd_code = 127;
    } else {
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        child_pid = -1;
        cmd_code = WIFEXITED(status)     ? WEXITSTATUS(status)
                   : WIFSIGNALED(status) ? 128 + WTERMSIG(status)
                                         : 1;
    }
    /* Without the inject, the mounts may hold only part of what the host directories hold. */
    if (mounts && !injected)
        stow_warn("cache mounts not extracted: they were not injected");
    else if (mounts && (cmd_code == 0 || r->cfg.extract_on_failure))
        mounts_code = mounts_step(r, 1, &injected);
    else if (mounts)
        stow_info("%s exited with %d; cache mounts not extracted (extract_on_failure is off)",
                  cmdv[0], cmd_code);
    if (cmd_code != 0 && !r->cfg.save_on_failure) {
        stow_info("%s exited with %d; not saving (save_on_failure is off)", cmdv[0], cmd_code);
        return cmd_code;
    }
    if (cmd_code != 0)
        stow_info("%s exited with %d; saving anyway (save_on_failure), without trimming", cmdv[0],
                  cmd_code);
    r->build_failed = cmd_code != 0;
    r->run_status = 1;
    int save_code = stow_cli_restore_save(r, 1);
    return cmd_code != 0 ? cmd_code : mounts_code != EXIT_OK ? mounts_code : save_code;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    if (ftw->level == 0)
        return 0; /* keep the directory itself */
    if ((flag == FTW_DP ? rmdir(path) : unlink(path)) != 0 && errno != ENOENT) {
        stow_warn("cannot remove %s: %s", path, strerror(errno));
        return 0;
    }
    return 0;
}

/* setup creates the configured directories; clean empties them. */
int stow_cli_setup_clean(stow_cli_ctx *r, int clean)
{
    stow_error err = {0};
    stow_config *c = &r->cfg;
    if (c->paths.n == 0) {
        stow_error_log("no paths configured: set [cache] paths, STOWAGE_PATHS or --path");
        return EXIT_USAGE;
    }
    const char *home = getenv("HOME");
    for (size_t i = 0; i < c->paths.n; i++) {
        char *abs = NULL;
        if (stow_path_expand(&abs, c->paths.v[i], &err) != STOW_OK) {
            stow_error_log("%s", err.msg);
            return EXIT_USAGE;
        }
        int code = EXIT_OK;
        if (!clean) {
            if (stow_path_mkdirs(abs, 0755, &err) != STOW_OK) {
                stow_error_log("%s", err.msg);
                code = EXIT_FAILED;
            } else {
                stow_info("ready: %s", abs);
            }
        } else if (strcmp(abs, "/") == 0 || (home && strcmp(abs, home) == 0)) {
            stow_error_log("refusing to clean %s (it is / or your home directory)", abs);
            code = EXIT_USAGE;
        } else if (access(abs, F_OK) == 0) {
            nftw(abs, remove_entry, 32, FTW_DEPTH | FTW_PHYS);
            stow_info("emptied: %s", abs);
        }
        free(abs);
        if (code != EXIT_OK)
            return code;
    }
    return EXIT_OK;
}
