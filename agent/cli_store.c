/* stowage list, stats, prune and key: the commands that inspect or tidy the store. */
#include <ftw.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "layout.h"
#include "lifecycle.h"
#include "log.h"
#include "paths.h"
#include "progress.h"
#include "trim.h"

static void format_time(char *out, size_t outsz, int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (t <= 0 || gmtime_r(&tt, &tm) == NULL ||
        strftime(out, outsz, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, outsz, "-");
}

int stow_cli_list(stow_cli_ctx *r)
{
    stow_error err = {0};
    stow_backend *b = NULL;
    stow_store_index *ix = NULL;
    int rc = stow_cli_open_store(r, &b, &err);
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
static void stats_dead_weight(json_t *out, stow_cli_ctx *r, stow_backend *b,
                              const stow_store_index *ix)
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

int stow_cli_stats(stow_cli_ctx *r)
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
    int rc = stow_cli_open_store(r, &b, &err);
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

int stow_cli_prune(stow_cli_ctx *r)
{
    stow_error err = {0};
    stow_config *c = &r->cfg;
    if (!c->dry_run && stow_cli_read_only(r, "pruning")) {
        stow_error_log("prune refused in read-only mode (--dry-run only reports)");
        return EXIT_FAILED;
    }
    if (c->max_age < 0 && c->max_size == 0)
        stow_info(
            "no --max-age or --max-size: only unreferenced layers and dangling refs are removed");
    stow_backend *b = NULL;
    int rc = stow_cli_open_store(r, &b, &err);
    stow_prune_result res = {0};
    stow_prune_opts o = {.max_age = c->max_age > 0 ? c->max_age : 0,
                         .expire_all = c->max_age == 0,
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
    if (res.layers_kept > 0) {
        char kept[32], grace[32];
        stow_format_bytes(kept, sizeof(kept), res.bytes_kept);
        snprintf(grace, sizeof(grace), "%llds", (long long)c->grace);
        stow_info("prune kept %zu unreferenced layers (%s) younger than the grace period (%s, "
                  "--grace): a save may still be writing them; they go on a later prune",
                  res.layers_kept, kept, grace);
    }
    return EXIT_OK;
}

int stow_cli_key(stow_cli_ctx *r)
{
    stow_error err = {0};
    int rc = stow_cli_prepare(r, 0, &err);
    if (rc != STOW_OK) {
        stow_error_log("%s", err.msg);
        return rc == STOW_EUSAGE ? EXIT_USAGE : EXIT_FAILED;
    }
    printf("%s\n", r->key);
    return EXIT_OK;
}
