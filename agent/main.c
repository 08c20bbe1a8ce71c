/* The stowage command line: the only code that owns the process (exit codes, stdout). */
#include <curl/curl.h>
#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#include "backend.h"
#include "cache.h"
#include "config.h"
#include "help.h"
#include "keys.h"
#include "layout.h"
#include "lifecycle.h"
#include "log.h"
#include "mounts.h"
#include "paths.h"
#include "progress.h"
#include "trim.h"

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
} run_ctx;

static void run_ctx_free(run_ctx *r)
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
static int resolve_url(run_ctx *r, stow_error *err)
{
    stow_config *c = &r->cfg;
    int rc;
    const char *url = c->url ? c->url : "file://~/.cache/stowage/store";
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

static int prepare_once(run_ctx *r, int need_paths, stow_error *err);

/* Everything restore and save need from the configuration, checked up front so that usage
 * errors are reported before any remote work. */
static int prepare(run_ctx *r, int need_paths, stow_error *err)
{
    if (r->prepared)
        return STOW_OK;
    int rc = prepare_once(r, need_paths, err);
    if (rc == STOW_OK)
        r->prepared = 1;
    return rc;
}

static int prepare_once(run_ctx *r, int need_paths, stow_error *err)
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
    for (size_t i = 0; i < c->fallback_scopes.n; i++) {
        rc = stow_key_validate(c->fallback_scopes.v[i], "scope", err);
        if (rc != STOW_OK)
            return rc;
    }
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

static int open_store(run_ctx *r, stow_backend **b, stow_error *err)
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
    char moved[32], total[32], rate[32];
    stow_format_bytes(moved, sizeof(moved), res->bytes_moved);
    stow_format_bytes(total, sizeof(total), res->bytes_total);
    double secs = res->seconds > 0 ? res->seconds : 1e-9;
    stow_format_bytes(rate, sizeof(rate), (uint64_t)((double)res->bytes_total / secs));
    stow_info("%s %s: %llu files, %s in %.2f s (%s/s); %s %s, %llu of %llu layers", cmd, what,
              (unsigned long long)res->files, total, res->seconds, rate, moved,
              strcmp(cmd, "save") == 0 ? "uploaded" : "downloaded",
              (unsigned long long)res->layers_moved, (unsigned long long)res->layers_total);
}

/* Fail-open: storage and data problems are warnings unless --strict. */
static int trouble(const run_ctx *r, const char *cmd, const stow_error *err)
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

static int cmd_restore_save(run_ctx *r, int save)
{
    const char *cmd = save ? "save" : "restore";
    stow_error err = {0};
    stow_backend *b = NULL;
    stow_cache_result res;
    int rc = prepare(r, 1, &err);
    if (rc != STOW_OK)
        return trouble(r, cmd, &err);
    stow_config *c = &r->cfg;
    if (save && !r->run_status) {
        int bf = stow_trim_parse_build_status(c->build_status);
        if (bf < 0) {
            stow_error_set(
                &err, STOW_EUSAGE,
                "build_status (--build-status, STOWAGE_BUILD_STATUS) must be success, failed, canceled "
                "or an exit code, not \"%s\"",
                c->build_status);
            return trouble(r, cmd, &err);
        }
        r->build_failed = bf;
    }
    rc = open_store(r, &b, &err);
    if (rc != STOW_OK) {
        if (!save && !c->lookup_only) {
            memset(&res, 0, sizeof(res));
            write_outputs(&res, r->key, 1);
        }
        return trouble(r, cmd, &err);
    }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    stow_cache_params p = {
        .backend = b,
        .store_url = r->url,
        .key = r->key,
        .restore_keys = &r->restore_keys,
        .scope = r->scope,
        .fallback_scopes = &c->fallback_scopes,
        .paths = &c->paths,
        .abs_paths = r->abs_paths,
        .state_dir = r->state_dir,
        .pack = {.level = (int)c->level,
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
    };
    int exit_code = EXIT_OK;
    if (save) {
        rc = stow_cache_save(&res, &p, &err);
        if (rc != STOW_OK)
            exit_code = trouble(r, cmd, &err);
        else if (res.saved) {
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
            exit_code = trouble(r, cmd, &err);
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

/* stowage mounts inject|extract, and the same steps inside stowage run: fail-open like
 * restore and save (docker missing or the daemon unreachable is a warning unless --strict). */
static int mounts_step(run_ctx *r, int extract, int *done)
{
    stow_error err = {0};
    *done = 0;
    if (stow_mounts_run(&r->cfg, extract, &err) != STOW_OK)
        return trouble(r, extract ? "mounts extract" : "mounts inject", &err);
    *done = 1;
    return EXIT_OK;
}

static int cmd_mounts(run_ctx *r, char **args, int nargs)
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
    return mounts_step(r, strcmp(args[0], "extract") == 0, &done);
}

static volatile pid_t child_pid = -1;

static void forward_signal(int sig)
{
    if (child_pid > 0)
        kill(child_pid, sig);
}

/* restore, run the command, save; the command's status is the exit status. */
static int cmd_run(run_ctx *r, char **cmdv, int cmdc)
{
    if (cmdc == 0) {
        stow_error_log("run needs a command: stowage run [options] -- CMD [ARGS...]");
        return EXIT_USAGE;
    }
    int code = cmd_restore_save(r, 0);
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
    int save_code = cmd_restore_save(r, 1);
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
static int cmd_setup_clean(run_ctx *r, int clean)
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

static void format_time(char *out, size_t outsz, int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (t <= 0 || gmtime_r(&tt, &tm) == NULL ||
        strftime(out, outsz, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, outsz, "-");
}

static int cmd_list(run_ctx *r)
{
    stow_error err = {0};
    stow_backend *b = NULL;
    stow_store_index *ix = NULL;
    int rc = open_store(r, &b, &err);
    if (rc == STOW_OK)
        rc = stow_lifecycle_load(&ix, b, &err);
    if (rc != STOW_OK) {
        stow_backend_free(b);
        stow_error_log("list: %s", err.msg);
        return rc == STOW_EUSAGE ? EXIT_USAGE : EXIT_FAILED;
    }
    if (r->cfg.json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < ix->n; i++) {
            const stow_entry_info *e = &ix->entries[i];
            json_array_append_new(
                arr, json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I}", "scope", e->scope, "key",
                               e->key, "created", (json_int_t)e->created, "last_used",
                               (json_int_t)e->last_used, "size", (json_int_t)e->logical, "stored",
                               (json_int_t)e->stored, "layers", (json_int_t)e->nlayers));
        }
        json_dumpf(arr, stdout, JSON_INDENT(2));
        printf("\n");
        json_decref(arr);
    } else {
        printf("%-12s %-40s %-20s %-20s %10s %10s %6s\n", "SCOPE", "KEY", "CREATED", "LAST USED",
               "SIZE", "STORED", "LAYERS");
        for (size_t i = ix->n; i-- > 0;) {
            const stow_entry_info *e = &ix->entries[i];
            char c[32], u[32], sz[32], st[32];
            format_time(c, sizeof(c), e->created);
            format_time(u, sizeof(u), e->last_used);
            stow_format_bytes(sz, sizeof(sz), e->logical);
            stow_format_bytes(st, sizeof(st), e->stored);
            printf("%-12s %-40s %-20s %-20s %10s %10s %6zu\n", e->scope, e->key, c, u, sz, st,
                   e->nlayers);
        }
    }
    stow_lifecycle_free(ix);
    stow_backend_free(b);
    return EXIT_OK;
}

static uint64_t local_bytes;
static uint64_t local_files;
static int add_size(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)path;
    (void)ftw;
    if (flag == FTW_F && S_ISREG(st->st_mode)) {
        local_bytes += (uint64_t)st->st_size;
        local_files++;
    }
    return 0;
}

/* Per entry: bytes of files no build read in the last N saves (trim.h), N being
 * trim_unused_after or STOW_TRIM_STATS_DEFAULT. One manifest GET per entry. */
static void stats_dead_weight(json_t *out, run_ctx *r, stow_backend *b, const stow_store_index *ix)
{
    stow_config *c = &r->cfg;
    uint32_t after = c->trim_unused_after > 0 ? (uint32_t)c->trim_unused_after
                                              : STOW_TRIM_STATS_DEFAULT;
    json_t *arr = json_array();
    if (!c->json && ix->n > 0)
        printf("entries (dead weight: files not read in the last %u builds):\n", after);
    for (size_t i = ix->n; i-- > 0;) {
        const stow_entry_info *e = &ix->entries[i];
        stow_manifest *m = NULL;
        stow_error err = {0};
        uint64_t files = 0, bytes = 0;
        if (stow_layout_fetch_manifest(&m, b, e->scope, e->key, &err) != STOW_OK) {
            stow_warn("%s/%s: %s", e->scope, e->key, err.msg);
            continue;
        }
        stow_trim_dead_weight(&files, &bytes, m, after);
        stow_manifest_free(m);
        if (!c->json) {
            char sz[32], dw[32];
            stow_format_bytes(sz, sizeof(sz), e->logical);
            stow_format_bytes(dw, sizeof(dw), bytes);
            printf("  %-12s %-40s %10s  dead weight %s in %llu files\n", e->scope, e->key, sz, dw,
                   (unsigned long long)files);
        }
        json_array_append_new(arr, json_pack("{s:s, s:s, s:I, s:I, s:I, s:i}", "scope", e->scope,
                                             "key", e->key, "bytes", (json_int_t)e->logical,
                                             "dead_bytes", (json_int_t)bytes, "dead_files",
                                             (json_int_t)files, "dead_after", (int)after));
    }
    json_object_set_new(out, "entries", arr);
}

static int cmd_stats(run_ctx *r)
{
    stow_error err = {0};
    stow_config *c = &r->cfg;
    json_t *out = json_object(), *local = json_array();
    char b1[32], b2[32], b3[32];
    if (!c->json)
        printf("local cache directories:\n");
    for (size_t i = 0; i < c->paths.n; i++) {
        char *abs = NULL;
        if (stow_path_expand(&abs, c->paths.v[i], &err) != STOW_OK) {
            stow_error_log("%s", err.msg);
            json_decref(out);
            json_decref(local);
            return EXIT_USAGE;
        }
        local_bytes = local_files = 0;
        int exists = access(abs, F_OK) == 0;
        if (exists)
            nftw(abs, add_size, 32, FTW_PHYS);
        stow_format_bytes(b1, sizeof(b1), local_bytes);
        if (!c->json)
            printf("  %-40s %10s in %llu files%s\n", abs, b1, (unsigned long long)local_files,
                   exists ? "" : " (missing)");
        json_array_append_new(local, json_pack("{s:s, s:s, s:I, s:I, s:b}", "path", c->paths.v[i],
                                               "expanded", abs, "bytes", (json_int_t)local_bytes,
                                               "files", (json_int_t)local_files, "exists", exists));
        free(abs);
    }
    json_object_set_new(out, "local", local);
    stow_backend *b = NULL;
    stow_store_index *ix = NULL;
    int rc = open_store(r, &b, &err);
    if (rc == STOW_OK)
        rc = stow_lifecycle_load(&ix, b, &err);
    if (rc == STOW_OK) {
        stow_store_totals t;
        stow_lifecycle_totals(&t, ix);
        json_object_set_new(out, "store",
                            json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "entries",
                                      (json_int_t)t.entries, "layers", (json_int_t)t.layers,
                                      "logical_bytes", (json_int_t)t.logical, "stored_bytes",
                                      (json_int_t)t.stored, "shared_bytes", (json_int_t)t.shared,
                                      "referenced_bytes", (json_int_t)t.referenced));
        if (!c->json) {
            char b4[32];
            stow_format_bytes(b1, sizeof(b1), t.logical);
            stow_format_bytes(b2, sizeof(b2), t.stored);
            stow_format_bytes(b3, sizeof(b3), t.shared);
            stow_format_bytes(b4, sizeof(b4),
                              t.referenced > t.stored ? t.referenced - t.stored : 0);
            printf(
                "store %s:\n  %zu entries, %zu layers\n  %s of files, %s stored\n"
                "  %s in layers shared between entries (deltas saved %s of uploads and storage)\n",
                r->url, t.entries, t.layers, b1, b2, b3, b4);
        }
        stats_dead_weight(out, r, b, ix);
    } else {
        stow_warn("store: %s", err.msg);
    }
    if (c->json) {
        json_dumpf(out, stdout, JSON_INDENT(2));
        printf("\n");
    }
    json_decref(out);
    stow_lifecycle_free(ix);
    stow_backend_free(b);
    return rc == STOW_OK       ? EXIT_OK
           : rc == STOW_EUSAGE ? EXIT_USAGE
                               : (c->strict ? EXIT_FAILED : EXIT_OK);
}

static void print_deletion(void *ud, const char *kind, const char *name, uint64_t bytes)
{
    const int *dry = ud;
    char b[32];
    stow_format_bytes(b, sizeof(b), bytes);
    printf("%s %s %s%s%s\n", *dry ? "would delete" : "deleted", kind, name, bytes ? " " : "",
           bytes ? b : "");
}

static int cmd_prune(run_ctx *r)
{
    stow_error err = {0};
    stow_config *c = &r->cfg;
    if (c->max_age <= 0 && c->max_size == 0)
        stow_info(
            "no --max-age or --max-size: only unreferenced layers and dangling refs are removed");
    stow_backend *b = NULL;
    int rc = open_store(r, &b, &err);
    stow_prune_result res = {0};
    stow_prune_opts o = {.max_age = c->max_age,
                         .max_size = c->max_size,
                         .grace = c->grace,
                         .dry_run = c->dry_run,
                         .report = print_deletion,
                         .ud = &c->dry_run};
    if (rc == STOW_OK)
        rc = stow_lifecycle_prune(&res, b, &o, &err);
    stow_backend_free(b);
    fflush(stdout);
    if (rc != STOW_OK) {
        stow_error_log("prune: %s", err.msg);
        return rc == STOW_EUSAGE ? EXIT_USAGE : EXIT_FAILED;
    }
    char freed[32];
    stow_format_bytes(freed, sizeof(freed), res.bytes_freed);
    stow_info(
        "prune%s: %zu entries, %zu layers, %zu refs, %zu stale leases, %zu temporary objects %s; %s freed",
        c->dry_run ? " (dry run)" : "", res.entries, res.layers, res.refs, res.leases, res.temps,
        c->dry_run ? "would be deleted" : "deleted", freed);
    return EXIT_OK;
}

static int cmd_key(run_ctx *r)
{
    stow_error err = {0};
    int rc = prepare(r, 0, &err);
    if (rc != STOW_OK) {
        stow_error_log("%s", err.msg);
        return rc == STOW_EUSAGE ? EXIT_USAGE : EXIT_FAILED;
    }
    printf("%s\n", r->key);
    return EXIT_OK;
}

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
    int is_mounts = strcmp(cmd, "mounts") == 0;
    if (!is_restore && !is_save && !is_key && !is_run && !is_setup && !is_clean && !is_list &&
        !is_stats && !is_prune && !is_mounts) {
        stow_error_log("unknown command \"%s\" (see stowage help)", cmd);
        return EXIT_USAGE;
    }
    /* Before any thread exists, as libcurl requires. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        stow_error_log("libcurl failed to initialise");
        return EXIT_FAILED;
    }
    atexit(curl_global_cleanup);
    run_ctx r = {0};
    stow_error err = {0};
    char **rest = NULL;
    int nrest = 0;
    if (stow_config_load(&r.cfg, argc, argv, 2, &rest, &nrest, &err) != STOW_OK) {
        stow_error_log("%s", err.msg);
        run_ctx_free(&r);
        return err.code == STOW_EUSAGE ? EXIT_USAGE : EXIT_FAILED;
    }
    if (nrest > 0 && !is_run && !is_mounts) {
        stow_error_log("unexpected argument \"%s\" (see stowage help)", rest[0]);
        free(rest);
        run_ctx_free(&r);
        return EXIT_USAGE;
    }
    stow_log_set_level(r.cfg.verbosity > 0   ? STOW_LOG_DEBUG
                       : r.cfg.verbosity < 0 ? STOW_LOG_WARN
                                             : STOW_LOG_INFO);
    warn_url_password(&r.cfg);
    int code;
    if (is_key)
        code = cmd_key(&r);
    else if (is_run)
        code = cmd_run(&r, rest, nrest);
    else if (is_mounts)
        code = cmd_mounts(&r, rest, nrest);
    else if (is_setup || is_clean)
        code = cmd_setup_clean(&r, is_clean);
    else if (is_list)
        code = cmd_list(&r);
    else if (is_stats)
        code = cmd_stats(&r);
    else if (is_prune)
        code = cmd_prune(&r);
    else
        code = cmd_restore_save(&r, is_save);
    free(rest);
    run_ctx_free(&r);
    return code;
}
