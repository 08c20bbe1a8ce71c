/* The stowage command line: the only code that owns the process (exit codes, stdout). */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "help.h"
#include "log.h"

/* A password in --url is visible to every user of the machine in ps and /proc; one in the
 * config file is likely to be committed. STOWAGE_URL is readable only by the same user (and
 * the CI templates pass it that way), so it gets no warning. */
static void warn_url_password(const stow_config *c)
{
    if (c->url_from == NULL || !stow_url_has_password(c->url))
        return;
    if (strcmp(c->url_from, "flag") == 0)
        stow_warn(
            "--url carries a password, visible to other users in ps; use STOWAGE_URL or .netrc");
    else if (strcmp(c->url_from, "file") == 0)
        stow_warn(
            "the url in %s carries a password; config files are often committed: use STOWAGE_URL or "
            ".netrc",
            c->config_file ? c->config_file : "the config file");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        stow_help_print(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        if (argc > 2 && strcmp(argv[2], "--man") == 0)
            stow_help_print_man(stdout);
        else
            stow_help_print(stdout);
        return EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
#ifndef STOW_GIT_REV
#define STOW_GIT_REV "unknown"
#endif
        printf("stowage %s (git %s)\n", STOW_VERSION, STOW_GIT_REV);
        return EXIT_OK;
    }
    int is_restore = strcmp(cmd, "restore") == 0, is_save = strcmp(cmd, "save") == 0;
    int is_key = strcmp(cmd, "key") == 0, is_run = strcmp(cmd, "run") == 0;
    int is_setup = strcmp(cmd, "setup") == 0, is_clean = strcmp(cmd, "clean") == 0;
    int is_list = strcmp(cmd, "list") == 0, is_stats = strcmp(cmd, "stats") == 0,
        is_prune = strcmp(cmd, "prune") == 0;
    int is_mounts = strcmp(cmd, "mounts") == 0, is_doctor = strcmp(cmd, "doctor") == 0;
    int is_delete = strcmp(cmd, "delete") == 0;
    if (!is_restore && !is_save && !is_key && !is_run && !is_setup && !is_clean && !is_list &&
        !is_stats && !is_prune && !is_mounts && !is_doctor && !is_delete) {
        stow_error_log("unknown command \"%s\" (see stowage help)", cmd);
        return EXIT_USAGE;
    }
    /* Before any thread exists, as libcurl requires. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        stow_error_log("libcurl failed to initialise");
        return EXIT_FAILED;
    }
    atexit(curl_global_cleanup);
    stow_cli_ctx r = {0};
    stow_error err = {0};
    char **rest = NULL;
    int nrest = 0;
    if (stow_config_load(&r.cfg, argc, argv, 2, &rest, &nrest, &err) != STOW_OK) {
        stow_error_log("%s", err.msg);
        stow_cli_ctx_free(&r);
        return err.code == STOW_EUSAGE ? EXIT_USAGE : EXIT_FAILED;
    }
    if (nrest > 0 && !is_run && !is_mounts && !is_delete) {
        stow_error_log("unexpected argument \"%s\" (see stowage help)", rest[0]);
        free(rest);
        stow_cli_ctx_free(&r);
        return EXIT_USAGE;
    }
    stow_log_set_level(r.cfg.verbosity > 0   ? STOW_LOG_DEBUG
                       : r.cfg.verbosity < 0 ? STOW_LOG_WARN
                                             : STOW_LOG_INFO);
    warn_url_password(&r.cfg);
    int code;
    if (is_key)
        code = stow_cli_key(&r);
    else if (is_run)
        code = stow_cli_run(&r, rest, nrest);
    else if (is_mounts)
        code = stow_cli_mounts(&r, rest, nrest);
    else if (is_setup || is_clean)
        code = stow_cli_setup_clean(&r, is_clean);
    else if (is_list)
        code = stow_cli_list(&r);
    else if (is_stats)
        code = stow_cli_stats(&r);
    else if (is_prune)
        code = stow_cli_prune(&r);
    else if (is_doctor)
        code = stow_cli_doctor(&r);
    else if (is_delete)
        code = stow_cli_delete(&r, rest, nrest);
    else
        code = stow_cli_restore_save(&r, is_save);
    free(rest);
    stow_cli_ctx_free(&r);
    return code;
}
