/* stowage delete [KEY] [--scope SCOPE] [--dry-run]: removes one entry (lifecycle.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "keys.h"
#include "lifecycle.h"
#include "log.h"

static void print_deletion(void *ud, const char *kind, const char *name, uint64_t bytes)
{
    const int *dry = ud;
    (void)bytes;
    printf("%s %s %s\n", *dry ? "would delete" : "deleted", kind, name);
}

int stow_cli_delete(stow_cli_ctx *r, char **args, int nargs)
{
    stow_config *c = &r->cfg;
    stow_error err = {0};
    stow_backend *b = NULL;
    char *key = NULL, *scope = NULL;
    int code = EXIT_FAILED, rc;
    if (nargs > 1) {
        stow_error_log("delete takes one key, not %d arguments (see stowage help)", nargs);
        return EXIT_USAGE;
    }
    if (!c->dry_run && stow_cli_read_only(r, "deleting")) {
        stow_error_log("delete refused in read-only mode (--dry-run only reports)");
        return EXIT_FAILED;
    }
    /* The key as given (it names a stored entry), else the configured key template. */
    const char *k = nargs == 1 ? args[0] : c->key;
    if (k == NULL || k[0] == '\0') {
        stow_error_log("delete: which entry? stowage delete KEY [--scope SCOPE]");
        return EXIT_USAGE;
    }
    rc = nargs == 1 ? ((key = strdup(k)) ? STOW_OK : STOW_ERR)
                    : stow_key_expand(&key, k, NULL, &err);
    if (rc == STOW_OK)
        rc = stow_key_validate(key, "key", &err);
    if (rc == STOW_OK)
        rc = stow_key_expand(&scope, c->scope ? c->scope : "default", NULL, &err);
    if (rc == STOW_OK)
        rc = stow_key_validate(scope, "scope", &err);
    if (rc != STOW_OK) {
        stow_error_log("delete: %s", err.msg);
        code = rc == STOW_EUSAGE ? EXIT_USAGE : EXIT_FAILED;
        goto done;
    }
    rc = stow_cli_open_store(r, &b, &err);
    stow_prune_result res = {0};
    stow_prune_opts o = {.dry_run = c->dry_run, .report = print_deletion, .ud = &c->dry_run};
    if (rc == STOW_OK)
        rc = stow_lifecycle_delete_entry(&res, b, scope, key, &o, &err);
    fflush(stdout);
    if (rc == STOW_ENOTFOUND) {
        stow_error_log("delete: %s", err.msg);
        code = EXIT_MISS;
        goto done;
    }
    if (rc != STOW_OK) {
        stow_error_log("delete: %s", err.msg);
        code = rc == STOW_EUSAGE ? EXIT_USAGE : EXIT_FAILED;
        goto done;
    }
    stow_info("delete%s: entry %s in scope %s and %zu refs %s; its layers stay until a prune "
              "finds them unreferenced",
              c->dry_run ? " (dry run)" : "", key, scope, res.refs,
              c->dry_run ? "would be deleted" : "deleted");
    code = EXIT_OK;
done:
    stow_backend_free(b);
    free(scope);
    free(key);
    return code;
}
