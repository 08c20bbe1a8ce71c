/* The CLI context (configuration checked up front, the store opened) and restore/save. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache.h"
#include "cancel.h"
#include "cli.h"
#include "keys.h"
#include "log.h"
#include "paths.h"
#include "progress.h"
#include "sign.h"
#include "trim.h"
#include "util.h"

void stow_cli_ctx_free(stow_cli_ctx *r)
{
    free(r->key);
    free(r->scope);
    stow_strlist_free(&r->restore_keys);
    for (size_t i = 0; r->abs_paths && i < r->cfg.paths.n; i++)
        free(r->abs_paths[i]);
    free(r->abs_paths);
    for (size_t i = 0; r->buildx_dirs && i < r->cfg.buildx_dirs.n; i++)
        free(r->buildx_dirs[i]);
    free(r->buildx_dirs);
    free(r->url);
    free(r->state_dir);
    stow_signer_free(r->signer);
    stow_strlist_free(&r->fallback_scopes);
    stow_config_free(&r->cfg);
}

static int expand_validated(char **out, const char *tmpl, const char *what, stow_error *err)
{
    int rc = stow_key_expand(out, tmpl, NULL, err);
    if (rc != STOW_OK)
        return rc;
    rc = stow_key_validate(*out, what, err);
    if (rc != STOW_OK) {
        free(*out);
        *out = NULL;
    }
    return rc;
}

/* The store URL, with a file:// path expanded like the cache paths (~, $VARS). */
static int resolve_url(stow_cli_ctx *r, stow_error *err)
{
    stow_config *c = &r->cfg;
    int rc;
    const char *url = c->url ? c->url : "file://~/.cache/stowage/store";
    const char *ci = getenv("CI");
    if (c->url == NULL && ci != NULL && ci[0] != '\0' && strcmp(ci, "false") != 0) {
        /* An ephemeral runner's disk is gone after the job: every run would miss. */
        static const char msg[] =
            "no store configured (CI is set, but no [storage] url, STOWAGE_URL or --url): the "
            "default store file://~/.cache/stowage/store is on this runner's disk, so on an "
            "ephemeral runner every run misses and every save is lost";
        if (c->strict)
            return stow_error_set(err, STOW_EUSAGE, "%s (--strict)", msg);
        stow_warn("%s", msg);
    }
    if (strncmp(url, "file://", 7) == 0 && url[7] != '/' && url[7] != '~' && url[7] != '$') {
        /* file://relative/path: relative to what? Show the absolute spelling instead. */
        char cwd[4096];
        if (getcwd(cwd, sizeof(cwd)) == NULL)
            stow_strlcpy(cwd, "/current/directory", sizeof(cwd));
        return stow_error_set(err, STOW_EUSAGE,
                              "store URL %s is relative; file:// URLs take an absolute path: "
                              "file://%s/%s (or file://~/...)",
                              url, cwd, url + 7);
    }
    if (strncmp(url, "file://", 7) == 0 && url[7] != '/') {
        char *dir = NULL;
        rc = stow_path_expand(&dir, url + 7, err);
        if (rc != STOW_OK)
            return rc;
        size_t n = strlen(dir) + 8;
        r->url = malloc(n);
        if (r->url)
            snprintf(r->url, n, "file://%s", dir);
        free(dir);
    } else {
        r->url = strdup(url);
    }
    return r->url ? STOW_OK : stow_error_set(err, STOW_ERR, "out of memory");
}

static int prepare_once(stow_cli_ctx *r, int need_paths, stow_error *err);

/* Everything restore and save need from the configuration, checked up front so that usage
 * errors are reported before any remote work. */
int stow_cli_prepare(stow_cli_ctx *r, int need_paths, stow_error *err)
{
    if (r->prepared)
        return STOW_OK;
    int rc = prepare_once(r, need_paths, err);
    if (rc == STOW_OK)
        r->prepared = 1;
    return rc;
}

static int prepare_once(stow_cli_ctx *r, int need_paths, stow_error *err)
{
    stow_config *c = &r->cfg;
    if (c->key == NULL || c->key[0] == '\0')
        return stow_error_set(err, STOW_EUSAGE,
                              "no key configured: set [cache] key, STOWAGE_KEY or --key");
    int rc = expand_validated(&r->key, c->key, "key", err);
    if (rc != STOW_OK)
        return rc;
    for (size_t i = 0; i < c->restore_keys.n; i++) {
        char *k = NULL;
        rc = expand_validated(&k, c->restore_keys.v[i], "restore key", err);
        if (rc == STOW_OK)
            rc = stow_strlist_add(&r->restore_keys, k, err);
        free(k);
        if (rc != STOW_OK)
            return rc;
    }
    rc = expand_validated(&r->scope, c->scope ? c->scope : "default", "scope", err);
    if (rc != STOW_OK)
        return rc;
    /* Fallback scopes are templates too ({ref:NAME}); one that expands to nothing, such as a
     * base branch outside a merge request, is skipped. */
    for (size_t i = 0; i < c->fallback_scopes.n; i++) {
        char *fs = NULL;
        rc = stow_key_expand(&fs, c->fallback_scopes.v[i], NULL, err);
        if (rc == STOW_OK && fs[0] == '\0') {
            free(fs);
            continue;
        }
        if (rc == STOW_OK)
            rc = stow_key_validate(fs, "scope", err);
        if (rc == STOW_OK)
            rc = stow_strlist_add(&r->fallback_scopes, fs, err);
        free(fs);
        if (rc != STOW_OK)
            return rc;
    }
    rc = stow_signer_load(&r->signer, getenv("STOWAGE_SIGNING_KEY"), c->signing_key_file,
                          c->verify_key_file, err);
    if (rc != STOW_OK)
        return rc;
    if (!need_paths)
        return STOW_OK;
    if (c->paths.n == 0)
        return stow_error_set(err, STOW_EUSAGE,
                              "no paths configured: set [cache] paths, STOWAGE_PATHS or --path");
    r->abs_paths = calloc(c->paths.n, sizeof(char *));
    if (r->abs_paths == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    for (size_t i = 0; i < c->paths.n; i++) {
        rc = stow_path_expand(&r->abs_paths[i], c->paths.v[i], err);
        if (rc != STOW_OK)
            return rc;
        for (size_t j = 0; j < i; j++) {
            size_t lj = strlen(r->abs_paths[j]), li = strlen(r->abs_paths[i]);
            size_t n = lj < li ? lj : li;
            if (strncmp(r->abs_paths[i], r->abs_paths[j], n) == 0 &&
                (r->abs_paths[i][n] == '\0' || r->abs_paths[i][n] == '/') &&
                (r->abs_paths[j][n] == '\0' || r->abs_paths[j][n] == '/'))
                return stow_error_set(err, STOW_EUSAGE, "paths %s and %s overlap", c->paths.v[j],
                                      c->paths.v[i]);
        }
    }
    r->buildx_dirs = calloc(c->buildx_dirs.n + 1, sizeof(char *));
    if (r->buildx_dirs == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    for (size_t i = 0; i < c->buildx_dirs.n; i++) {
        rc = stow_path_expand(&r->buildx_dirs[i], c->buildx_dirs.v[i], err);
        if (rc != STOW_OK)
            return rc;
    }
    rc = resolve_url(r, err);
    if (rc != STOW_OK)
        return rc;
    return stow_path_expand(&r->state_dir, c->state_dir ? c->state_dir : "~/.cache/stowage/state",
                            err);
}

int stow_cli_open_store(stow_cli_ctx *r, stow_backend **b, stow_error *err)
{
    stow_config *c = &r->cfg;
    if (r->url == NULL) {
        int rc = resolve_url(r, err);
        if (rc != STOW_OK)
            return rc;
    }
    const char **hdrs = calloc(c->headers.n + 1, sizeof(char *));
    if (hdrs == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    for (size_t i = 0; i < c->headers.n; i++)
        hdrs[i] = c->headers.v[i];
    stow_backend_opts bo = {
        .url = r->url,
        .endpoint = c->endpoint,
        .region = c->region,
        .path_style = c->path_style,
        .verify_tls = c->verify_tls,
        .ca_bundle = c->ca_bundle,
        .sts_endpoint = c->sts_endpoint,
        .connect_timeout_ms = c->connect_timeout_ms,
        .low_speed_timeout_s = c->low_speed_timeout_s,
        .low_speed_limit = c->low_speed_limit,
        .deadline_s = c->deadline_s,
        .max_retries = (int)c->retries,
        .parallel = (int)c->parallel,
        .token_env = c->token_env,
        .headers = hdrs,
    };
    /* Backends copy what they keep from the options. */
    int rc = stow_backend_open(b, &bo, err);
    free(hdrs);
    return rc;
}

/* cache-hit is true only for an exact key restored in full; a restore that failed after the
 * lookup (or could not reach the store) reports cache-result=error and cache-hit=false, so
 * CI never skips its install step on a cache it does not have. */
static void write_outputs(const stow_cache_result *res, const char *primary, int failed)
{
    static const char *const names[] = {"miss", "hit", "partial"};
    const char *result = failed ? "error" : names[res->outcome];
    const char *hit = !failed && res->outcome == STOW_HIT ? "true" : "false";
    const char *matched = failed ? "" : res->matched_key;
    printf("cache-hit=%s\ncache-result=%s\ncache-primary-key=%s\ncache-matched-key=%s\n", hit,
           result, primary, matched);
    fflush(stdout);
    const char *gh = getenv("GITHUB_OUTPUT");
    if (gh != NULL && gh[0] != '\0') {
        FILE *f = fopen(gh, "a");
        if (f == NULL) {
            stow_warn("cannot append to GITHUB_OUTPUT (%s): %s", gh, strerror(errno));
            return;
        }
        fprintf(f, "cache-hit=%s\ncache-result=%s\ncache-primary-key=%s\ncache-matched-key=%s\n",
                hit, result, primary, matched);
        fclose(f);
    }
}

static void summary(const char *cmd, const char *what, const stow_cache_result *res)
{
    char moved[32], total[32], rate[32], level[96] = "";
    stow_format_bytes(moved, sizeof(moved), res->bytes_moved);
    stow_format_bytes(total, sizeof(total), res->bytes_total);
    double secs = res->seconds > 0 ? res->seconds : 1e-9;
    stow_format_bytes(rate, sizeof(rate), (uint64_t)((double)res->bytes_total / secs));
    int save = strcmp(cmd, "save") == 0;
    /* One line (the CI templates show the last info line as the step's details). */
    if (save && res->layers_moved > 0 && res->level_auto)
        snprintf(level, sizeof(level), "; zstd level auto: mean %.1f, final %d (%d..%d used)",
                 res->level_mean, res->level_final, res->level_lo, res->level_hi);
    else if (save && res->layers_moved > 0)
        snprintf(level, sizeof(level), "; zstd level %d", res->level_final);
    stow_info("%s %s: %llu files, %s in %.2f s (%s/s); %s %s, %llu of %llu layers%s", cmd, what,
              (unsigned long long)res->files, total, res->seconds, rate, moved,
              save ? "uploaded" : "downloaded", (unsigned long long)res->layers_moved,
              (unsigned long long)res->layers_total, level);
}

int stow_cli_read_only(const stow_cli_ctx *r, const char *cmd)
{
    const stow_config *c = &r->cfg;
    if (!c->read_only)
        return 0;
    const char *from = c->read_only_from ? c->read_only_from : "configuration";
    const char *how = strcmp(from, "flag") == 0          ? "--read-only or --no-save"
                      : strcmp(from, "environment") == 0 ? "STOWAGE_READ_ONLY or STOWAGE_SAVE"
                                                         : "read_only or save in the config file";
    /* The CI templates say why (e.g. "pull_request_target event"); only a short printable
     * reason reaches the log. */
    const char *why = getenv("STOWAGE_READ_ONLY_REASON");
    int why_ok = why != NULL && why[0] != '\0' && strlen(why) < 200;
    for (const char *q = why; why_ok && *q; q++)
        why_ok = *q >= 0x20 && *q < 0x7f;
    stow_info("read-only: not %s (%s; set by %s)", strcmp(cmd, "save") == 0 ? "saving" : cmd,
              why_ok ? why : "read-only mode", how);
    return 1;
}

/* Fail-open: storage and data problems are warnings unless --strict. */
int stow_cli_trouble(const stow_cli_ctx *r, const char *cmd, const stow_error *err)
{
    if (err->code == STOW_EUSAGE) {
        stow_error_log("%s", err->msg);
        return EXIT_USAGE;
    }
    if (r->cfg.strict) {
        stow_error_log("%s failed: %s", cmd, err->msg);
        return EXIT_FAILED;
    }
    stow_warn("%s failed, continuing without the cache (--strict makes this an error): %s", cmd,
              err->msg);
    return EXIT_OK;
}

/* SIGINT/SIGTERM during save: the handler only records the signal (cancel.h); the upload
 * loops notice it, abort the multipart upload and remove what this save wrote, and the save
 * exits with 128 + the signal. */
static void on_cancel_signal(int sig) { stow_cancel_request(sig); }

/* A signal the parent set to be ignored (nohup, a background job of a script) stays ignored. */
static void catch_cancel_signals(void)
{
    static const int sigs[] = {SIGINT, SIGTERM};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
        struct sigaction old, sa;
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN)
            continue;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_cancel_signal;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESTART;
        sigaction(sigs[i], &sa, NULL);
    }
}

int stow_cli_restore_save(stow_cli_ctx *r, int save)
{
    const char *cmd = save ? "save" : "restore";
    stow_error err = {0};
    stow_backend *b = NULL;
    stow_cache_result res;
    int rc = stow_cli_prepare(r, 1, &err);
    if (rc != STOW_OK)
        return stow_cli_trouble(r, cmd, &err);
    stow_config *c = &r->cfg;
    if (save && stow_cli_read_only(r, "save"))
        return EXIT_OK;
    if (save && r->signer != NULL && !stow_signer_can_sign(r->signer)) {
        stow_info("verify-only key (verify_key_file): not saving, this job cannot sign entries");
        return EXIT_OK;
    }
    if (save && !r->run_status) {
        int bf = stow_trim_parse_build_status(c->build_status);
        if (bf < 0) {
            stow_error_set(
                &err, STOW_EUSAGE,
                "build_status (--build-status, STOWAGE_BUILD_STATUS) must be success, failed, canceled "
                "or an exit code, not \"%s\"",
                c->build_status);
            return stow_cli_trouble(r, cmd, &err);
        }
        r->build_failed = bf;
    }
    rc = stow_cli_open_store(r, &b, &err);
    if (rc != STOW_OK) {
        /* A bad URL is a usage error: no cache-* lines (nothing was looked up). */
        if (!save && err.code != STOW_EUSAGE) {
            memset(&res, 0, sizeof(res));
            write_outputs(&res, r->key, 1);
        }
        int ex = stow_cli_trouble(r, cmd, &err);
        if (ex == EXIT_OK && !save && c->fail_on_miss) {
            stow_error_log("the store could not be opened (cache-result=error) and --fail-on-miss "
                           "is set");
            ex = EXIT_FAILED;
        }
        return ex;
    }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    stow_cache_params p = {
        .backend = b,
        .store_url = r->url,
        .key = r->key,
        .restore_keys = &r->restore_keys,
        .scope = r->scope,
        .fallback_scopes = &r->fallback_scopes,
        .paths = &c->paths,
        .abs_paths = r->abs_paths,
        .state_dir = r->state_dir,
        .pack = {.level = (int)c->level,
                 .level_min = (int)c->level_min,
                 .level_max = (int)c->level_max,
                 .threads = c->threads ? (int)c->threads : (int)(ncpu > 0 ? ncpu : 1),
                 .checksum = c->checksum},
        .layer_size = c->layer_size,
        .parallel = (int)c->parallel,
        .lookup_only = c->lookup_only,
        .preserve_setid = c->preserve_setid,
        .checksum = c->checksum,
        .update = c->update,
        .max_layers = (int)c->max_layers,
        .prune_buildx = c->prune_buildx,
        .buildx_dirs = r->buildx_dirs,
        .nbuildx_dirs = c->buildx_dirs.n,
        .trim_unused_after = c->trim_unused_after,
        .trim = c->trim,
        .trim_local = c->trim_local,
        .build_failed = r->build_failed,
        .signer = r->signer,
        .strict = c->strict,
        .read_only = c->read_only,
    };
    int exit_code = EXIT_OK;
    if (save) {
        catch_cancel_signals();
        rc = stow_cache_save(&res, &p, &err);
        int sig = stow_cancel_requested();
        if (rc != STOW_OK && sig != 0) {
            stow_error_log("save interrupted by %s: %s; nothing was committed, the upload was "
                           "aborted and its objects removed",
                           sig == SIGINT    ? "SIGINT"
                           : sig == SIGTERM ? "SIGTERM"
                                            : "a signal",
                           err.msg);
            exit_code = 128 + sig;
        } else if (rc != STOW_OK)
            exit_code = stow_cli_trouble(r, cmd, &err);
        else if (res.empty && c->strict) {
            stow_error_log("save failed: no files to save (--strict)");
            exit_code = EXIT_FAILED;
        } else if (res.saved) {
            summary("save", r->key, &res);
            if (res.parent_key[0]) {
                char trimmed[96] = "", tb[32];
                stow_format_bytes(tb, sizeof(tb), res.bytes_trimmed);
                if (c->trim_unused_after > 0 && res.trim_tracked)
                    snprintf(trimmed, sizeof(trimmed), ", trimmed %llu unused files (%s)",
                             (unsigned long long)res.files_trimmed, tb);
                stow_info(
                    "delta against %s: %llu new or changed files, %llu removed, %llu layers repacked%s",
                    res.parent_key, (unsigned long long)res.files_changed,
                    (unsigned long long)res.files_removed, (unsigned long long)res.layers_repacked,
                    trimmed);
            }
        }
    } else {
        rc = stow_cache_restore(&res, &p, &err);
        write_outputs(&res, r->key, rc != STOW_OK);
        if (rc != STOW_OK) {
            if (res.matched_key[0])
                stow_info(
                    "restore error: entry %s was not restored (cache-hit=false, cache-result=error)",
                    res.matched_key);
            exit_code = stow_cli_trouble(r, cmd, &err);
            if (exit_code == EXIT_OK && c->fail_on_miss) {
                stow_error_log("the lookup failed (cache-result=error) and --fail-on-miss is set");
                exit_code = EXIT_FAILED;
            }
        } else if (res.outcome == STOW_MISS) {
            stow_info("restore miss: no entry for %s%s", r->key,
                      r->restore_keys.n ? " or its restore keys" : "");
            if (c->fail_on_miss) {
                stow_error_log("no cache entry matched and --fail-on-miss is set");
                exit_code = EXIT_MISS;
            }
        } else if (c->lookup_only) {
            stow_info("lookup %s: %s exists", res.outcome == STOW_HIT ? "hit" : "partial",
                      res.matched_key);
        } else {
            summary("restore", res.outcome == STOW_HIT ? "hit" : "partial", &res);
        }
    }
    stow_backend_free(b);
    return exit_code;
}
