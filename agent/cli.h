/* The command line's shared context and its commands (agent/main.c dispatches to them). Only
 * the CLI owns the process: exit codes, stdout. */
#ifndef STOW_CLI_H
#define STOW_CLI_H

#include "config.h"
#include "backend.h"
#include "error.h"

#define EXIT_OK 0
#define EXIT_FAILED 1 /* storage or data error with --strict, or an internal error */
#define EXIT_USAGE 2  /* bad flag, config or key template */
#define EXIT_MISS 3   /* no entry matched and --fail-on-miss */

typedef struct {
    stow_config cfg;
    char *key;
    char *scope;
    stow_strlist restore_keys; /* expanded */
    char **abs_paths;
    char **buildx_dirs;
    char *url;
    char *state_dir;
    int prepared;     /* stowage run: save uses what restore prepared (same key, even if the
                     command changed the files the key template hashes) */
    int build_failed; /* save: the build failed (stowage run's command, or --build-status) */
    int run_status;   /* stowage run set build_failed from its command */
    struct stow_signer *signer;   /* sign.h: NULL without a key */
    stow_strlist fallback_scopes; /* expanded */
} stow_cli_ctx;

/* Read-only mode (--read-only, save = false, STOWAGE_READ_ONLY): 1 with a log line naming cmd
 * and where the setting came from when cmd would write to the store. */
int stow_cli_read_only(const stow_cli_ctx *r, const char *cmd);

void stow_cli_ctx_free(stow_cli_ctx *r);
/* Everything restore and save need from the configuration, checked once, up front. */
int stow_cli_prepare(stow_cli_ctx *r, int need_paths, stow_error *err);
int stow_cli_open_store(stow_cli_ctx *r, stow_backend **b, stow_error *err);
/* Fail-open: storage and data problems are warnings (exit 0) unless --strict. */
int stow_cli_trouble(const stow_cli_ctx *r, const char *cmd, const stow_error *err);

/* Each returns the process exit code. */
int stow_cli_restore_save(stow_cli_ctx *r, int save);
int stow_cli_mounts(stow_cli_ctx *r, char **args, int nargs);
int stow_cli_run(stow_cli_ctx *r, char **cmdv, int cmdc);
int stow_cli_setup_clean(stow_cli_ctx *r, int clean);
int stow_cli_list(stow_cli_ctx *r);
int stow_cli_stats(stow_cli_ctx *r);
int stow_cli_prune(stow_cli_ctx *r);
int stow_cli_key(stow_cli_ctx *r);
int stow_cli_doctor(stow_cli_ctx *r);                         /* cli_doctor.c */
int stow_cli_delete(stow_cli_ctx *r, char **args, int nargs); /* cli_delete.c */

#endif
