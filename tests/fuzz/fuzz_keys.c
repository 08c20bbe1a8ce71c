/* libFuzzer harness: key templates (agent/keys.h). The input is a template expanded against a
 * small fixed tree ({hash:GLOBS} walks it, {branch} reads its .git/HEAD), and is also used
 * as a glob list for stow_key_hash_files. Expansion must be deterministic and bounded, and
 * stow_key_sanitize must leave only key characters. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_util.h"
#include "glob.h"
#include "keys.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *base;

static void setup(void)
{
    static char path[1024];
    base = fuzz_tmp_dir("keys");
    static const char *dirs[] = {"src",          "src/lib",        ".git",
                                 "node_modules", "node_modules/x", "empty"};
    static const char *files[][2] = {
        {"package-lock.json", "{\"lockfileVersion\": 3}\n"},
        {"Cargo.lock", "# lock\n"},
        {"src/main.c", "int main(void) { return 0; }\n"},
        {"src/lib/util.c", "\n"},
        {"src/.hidden", "h"},
        {"node_modules/x/index.js", "module.exports = 1;\n"},
        {".git/HEAD", "ref: refs/heads/feature/fuzz\n"},
        {"weird name [1].txt", "brackets and spaces\n"},
    };
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", base, dirs[i]);
        if (mkdir(path, 0755) != 0)
            abort();
    }
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", base, files[i][0]);
        fuzz_write_file(path, files[i][1], strlen(files[i][1]));
    }
    snprintf(path, sizeof(path), "%s/src/link.c", base);
    if (symlink("main.c", path) != 0)
        abort();
    snprintf(path, sizeof(path), "%s/loop", base);
    if (symlink(".", path) != 0) /* a directory symlink loop the walks must not follow */
        abort();
    /* {branch} must come from .git/HEAD, not from the CI running the fuzzer. */
    unsetenv("GITHUB_HEAD_REF");
    unsetenv("GITHUB_REF_NAME");
    unsetenv("CI_COMMIT_REF_NAME");
    setenv("FUZZ_A", "abc", 1);
    setenv("FUZZ_B", "with space/and\nnewline", 1);
    setenv("FUZZ_EMPTY", "", 1);
    stow_log_set_level(STOW_LOG_ERROR);
}

static void check_key_chars(const char *s)
{
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '_' || *s == '-'))
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (base == NULL)
        setup();
    if (size > STOW_KEY_TEMPLATE_MAX + 64)
        return 0;
    char *tmpl = malloc(size + 1);
    if (tmpl == NULL)
        return 0;
    memcpy(tmpl, data, size);
    tmpl[size] = '\0';

    stow_error err = {0};
    char *out = NULL, *again = NULL;
    int rc = stow_key_expand(&out, tmpl, base, &err);
    if (rc == STOW_OK) {
        if (out == NULL || strlen(out) > STOW_KEY_EXPANDED_MAX)
            abort();
        stow_error err2 = {0};
        if (stow_key_expand(&again, tmpl, base, &err2) != STOW_OK || strcmp(out, again) != 0)
            abort(); /* the same template over the same tree gives the same key */
        if (stow_key_validate(out, "key", &err2) == STOW_OK)
            check_key_chars(out);
        stow_key_sanitize(out);
        check_key_chars(out);
    } else if (out != NULL || err.msg[0] == '\0') {
        abort();
    }
    char hex[65];
    memset(hex, 'x', sizeof(hex));
    stow_error err3 = {0};
    if (stow_key_hash_files(hex, tmpl, base, &err3) == STOW_OK) {
        if (strlen(hex) != 64)
            abort();
    } else if (err3.msg[0] == '\0') {
        abort();
    }
    free(again);
    free(out);
    free(tmpl);
    return 0;
}
