/* Unit tests for common/paths.c: expansion of configured roots and the safety rules for
 * stored paths and symlink targets. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "paths.h"
#include "test.h"

static char cwd[PATH_MAX];

static void expect_expand(const char *in, const char *want)
{
    stow_error err = {0};
    char *out = NULL;
    int rc = stow_path_expand(&out, in, &err);
    if (rc != STOW_OK || out == NULL || strcmp(out, want) != 0) {
        fprintf(stderr, "expand(\"%s\"): rc=%d out=\"%s\" msg=\"%s\", expected \"%s\"\n", in, rc,
                out ? out : "(null)", err.msg, want);
        stow_test_failures++;
    }
    free(out);
}

static void expect_expand_error(const char *in, const char *msg_part)
{
    stow_error err = {0};
    char *out = (char *)"sentinel";
    int rc = stow_path_expand(&out, in, &err);
    if (rc != STOW_EUSAGE || out != NULL || strstr(err.msg, msg_part) == NULL) {
        fprintf(stderr, "expand(\"%s\"): rc=%d msg=\"%s\", expected EUSAGE with \"%s\"\n",
                in ? in : "(null)", rc, err.msg, msg_part);
        stow_test_failures++;
    }
}

static void test_expand(void)
{
    char want[PATH_MAX + 64];
    setenv("HOME", "/home/runner", 1);
    setenv("STOW_T_DIR", "/data/ci", 1);
    setenv("STOW_T_REL", "rel/dir", 1);
    setenv("STOW_T_EMPTY", "", 1);
    unsetenv("STOW_T_UNSET");

    expect_expand("~", "/home/runner");
    expect_expand("~/", "/home/runner");
    expect_expand("~/x", "/home/runner/x");
    expect_expand("~/.docker-cache/pip", "/home/runner/.docker-cache/pip");
    expect_expand("$HOME/x", "/home/runner/x");
    expect_expand("${HOME}/x", "/home/runner/x");
    expect_expand("${HOME}x", "/home/runnerx");
    expect_expand("/a/$STOW_T_DIR/b", "/a//data/ci/b");
    expect_expand("$STOW_T_DIR", "/data/ci");
    expect_expand("$STOW_T_DIR/sub-$STOW_T_EMPTY-x", "/data/ci/sub--x");
    expect_expand("/tmp/.buildx-cache", "/tmp/.buildx-cache");
    expect_expand("/tmp/x/", "/tmp/x");
    expect_expand("/tmp/x///", "/tmp/x");
    expect_expand("~/x//", "/home/runner/x");
    expect_expand("/", "/");
    expect_expand("//", "/");

    /* Relative paths are made absolute against the cwd. */
    snprintf(want, sizeof(want), "%s/build/cache", cwd);
    expect_expand("build/cache", want);
    expect_expand("build/cache/", want);
    snprintf(want, sizeof(want), "%s/.cache", cwd);
    expect_expand(".cache", want);
    /* "~user" is not expanded: it is an ordinary relative name. */
    snprintf(want, sizeof(want), "%s/~user/x", cwd);
    expect_expand("~user/x", want);
    /* A path that starts with a variable is not taken relative to the cwd: it must expand to
     * an absolute path (so an empty or relative variable cannot silently select the cwd). */
    expect_expand_error("$STOW_T_REL/x", "does not expand to an absolute path");
    expect_expand_error("$STOW_T_EMPTY", "does not expand to an absolute path");

    expect_expand_error("$STOW_T_UNSET/x", "STOW_T_UNSET");
    expect_expand_error("${STOW_T_UNSET}", "STOW_T_UNSET is not set");
    expect_expand_error("/a/${STOW_T_UNSET}/b", "STOW_T_UNSET is not set");
    expect_expand_error("", "empty path");
    expect_expand_error(NULL, "empty path");
    expect_expand_error("/a/${HOME", "unterminated");
    expect_expand_error("/a/${}/b", "bad variable reference");
    expect_expand_error("/a/$/b", "bad variable reference");

    /* Cap: an expansion beyond PATH_MAX is refused, not truncated. */
    char *longp = malloc(PATH_MAX + 16);
    if (longp) {
        longp[0] = '/';
        memset(longp + 1, 'a', PATH_MAX + 2);
        longp[PATH_MAX + 3] = '\0';
        /* (The message quotes the path first, so only the code is checked here.) */
        stow_error err = {0};
        char *out = NULL;
        CHECK_INT(stow_path_expand(&out, longp, &err), STOW_EUSAGE);
        CHECK(out == NULL);
        free(longp);
    }

    unsetenv("HOME");
    expect_expand_error("~/x", "HOME is not set");
    setenv("HOME", "", 1);
    expect_expand_error("~", "HOME is not set");
    setenv("HOME", "/home/runner", 1);
}

static void test_rel_ok(void)
{
    static const struct {
        const char *rel;
        int ok;
    } t[] = {
        {"a", 1},     {"a/b/c.txt", 1}, {".hidden", 1}, {"..a", 1}, {"a..", 1},   {"a/...", 1},
        {"a b/c", 1}, {"", 0},          {"/abs", 0},    {"/", 0},   {".", 0},     {"..", 0},
        {"../x", 0},  {"a/../b", 0},    {"a/..", 0},    {"./a", 0}, {"a/./b", 0}, {"a/.", 0},
        {"a//b", 0},  {"a/", 0},        {"//a", 0},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        if (stow_path_rel_ok(t[i].rel) != t[i].ok) {
            fprintf(stderr, "rel_ok(\"%s\") != %d\n", t[i].rel, t[i].ok);
            stow_test_failures++;
        }
    }
    CHECK_INT(stow_path_rel_ok(NULL), 0);

    /* Length cap: 4095 bytes accepted, 4096 refused. */
    char buf[4097];
    memset(buf, 'a', sizeof(buf));
    for (size_t i = 100; i < 4095; i += 100)
        buf[i] = '/';
    buf[4095] = '\0';
    CHECK_INT(stow_path_rel_ok(buf), 1);
    buf[4095] = 'a';
    buf[4096] = '\0';
    CHECK_INT(stow_path_rel_ok(buf), 0);
}

static void test_link_ok(void)
{
    static const struct {
        const char *rel, *target;
        int ok;
    } t[] = {
        {"a/l", "../b", 1},
        {"a/l", "b", 1},
        {"l", "x", 1},
        {"l", "./x", 1},
        {"l", "x/", 1},
        {"l", "a/b/../c", 1},
        {"l", "a/../x", 1},
        {"a/b/l", "../../c", 1},
        {"a/b/l", "../c/../../d", 1},
        {"l", ".", 1},
        {"a/l", "..", 1},
        {"l", "../x", 0},
        {"l", "..", 0},
        {"a/b/l", "../../../c", 0},
        {"a/l", "../../x", 0},
        {"l", "a/../../x", 0},
        {"a/l", "b/../../../x", 0},
        {"l", "/etc/passwd", 0},
        {"a/l", "/", 0},
        {"l", "", 0},
        {"../l", "x", 0}, /* the link's own path must be safe */
        {"", "x", 0},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        if (stow_path_link_ok(t[i].rel, t[i].target) != t[i].ok) {
            fprintf(stderr, "link_ok(\"%s\", \"%s\") != %d\n", t[i].rel, t[i].target, t[i].ok);
            stow_test_failures++;
        }
    }
    CHECK_INT(stow_path_link_ok("l", NULL), 0);
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static void test_mkdirs(void)
{
    char base[] = "/tmp/stow-test-paths-XXXXXX";
    CHECK(mkdtemp(base) != NULL);
    char dir[PATH_MAX], file[PATH_MAX], under[PATH_MAX];
    stow_error err = {0};

    snprintf(dir, sizeof(dir), "%s/a/b/c", base);
    CHECK_INT(stow_path_mkdirs(dir, 0755, &err), STOW_OK);
    CHECK(is_dir(dir));
    CHECK_INT(stow_path_mkdirs(dir, 0755, &err), STOW_OK); /* existing: fine */
    snprintf(dir, sizeof(dir), "%s/a/b/d/", base);         /* trailing slash */
    CHECK_INT(stow_path_mkdirs(dir, 0755, &err), STOW_OK);
    CHECK(is_dir(dir));

    /* A regular file in the way is an error naming the path. */
    snprintf(file, sizeof(file), "%s/a/file", base);
    FILE *f = fopen(file, "w");
    CHECK(f != NULL);
    if (f)
        fclose(f);
    stow_error_clear(&err);
    CHECK_INT(stow_path_mkdirs(file, 0755, &err), STOW_ERR);
    CHECK(strstr(err.msg, file) != NULL);
    snprintf(under, sizeof(under), "%s/sub", file);
    stow_error_clear(&err);
    CHECK_INT(stow_path_mkdirs(under, 0755, &err), STOW_ERR);
    CHECK(strstr(err.msg, base) != NULL);
    stow_error_clear(&err);
    CHECK_INT(stow_path_mkdirs("", 0755, &err), STOW_ERR);

    unlink(file);
    rmdir(dir);
    snprintf(dir, sizeof(dir), "%s/a/b/c", base);
    rmdir(dir);
    snprintf(dir, sizeof(dir), "%s/a/b", base);
    rmdir(dir);
    snprintf(dir, sizeof(dir), "%s/a", base);
    rmdir(dir);
    CHECK_INT(rmdir(base), 0); /* everything above was removed, so nothing unexpected was made */
}

int main(void)
{
    if (getcwd(cwd, sizeof(cwd)) == NULL) {
        perror("getcwd");
        return 1;
    }
    test_expand();
    test_rel_ok();
    test_link_ok();
    test_mkdirs();
    TEST_DONE();
}
