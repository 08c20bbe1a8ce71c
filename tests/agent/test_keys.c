/* Tests for agent/keys.c: templates, hashFiles, branch detection, validation. */
#include "keys.h"
#include "branch.h"
#include "glob.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "test.h"

/* ---- temp tree helpers ---- */

static char root[512];

static void path_of(char *out, size_t outsz, const char *rel)
{
    int n = snprintf(out, outsz, "%s/%s", root, rel);
    if (n < 0 || (size_t)n >= outsz) {
        fprintf(stderr, "path too long: %s\n", rel);
        exit(2);
    }
}

/* Creates every directory of rel (relative to root), like mkdir -p. */
static void mkdirs(const char *rel)
{
    char p[1024];
    path_of(p, sizeof(p), rel);
    for (char *s = p + strlen(root) + 1; *s != '\0'; s++) {
        if (*s == '/') {
            *s = '\0';
            if (mkdir(p, 0755) != 0 && errno != EEXIST) {
                perror(p);
                exit(2);
            }
            *s = '/';
        }
    }
    if (mkdir(p, 0755) != 0 && errno != EEXIST) {
        perror(p);
        exit(2);
    }
}

/* Writes content to rel (relative to root), creating parent directories. */
static void write_file(const char *rel, const char *content)
{
    char p[1024];
    const char *slash = strrchr(rel, '/');
    if (slash != NULL) {
        char dir[1024];
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - rel), rel);
        mkdirs(dir);
    }
    path_of(p, sizeof(p), rel);
    FILE *f = fopen(p, "wb");
    if (f == NULL || fputs(content, f) < 0 || fclose(f) != 0) {
        perror(p);
        exit(2);
    }
}

static void rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (d != NULL) {
            struct dirent *e;
            while ((e = readdir(d)) != NULL) {
                if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                    continue;
                char child[4096];
                snprintf(child, sizeof(child), "%s/%s", path, e->d_name);
                rm_rf(child);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

static void unset_branch_env(void)
{
    unsetenv("GITHUB_HEAD_REF");
    unsetenv("GITHUB_REF_NAME");
    unsetenv("CI_COMMIT_REF_NAME");
}

/* Hash of globs in dir, or "" on error (the error is printed). */
static const char *hash_of(char out[65], const char *globs, const char *dir)
{
    stow_error err = {0};
    if (stow_key_hash_files(out, globs, dir, &err) != 0) {
        fprintf(stderr, "hash_files(%s): %s\n", globs, err.msg);
        out[0] = '\0';
    }
    return out;
}

/* ---- hashFiles ---- */

static void test_hash_known_values(void)
{
    char h[65];
    write_file("requirements.txt", "torch==2.7.1\n");
    /* Expected value, computed independently with coreutils:
     *   printf 'torch==2.7.1\n' | sha256sum
     *     -> 3b1344857a5a149f0093b3ae079c1cd440f3218dba981c6be71f9629e8fb24b7
     *   printf 'torch==2.7.1\n' | sha256sum | cut -c1-64 | xxd -r -p | sha256sum
     *     -> b62a817a27391e69ef3410217c526c1fb851ecb74aa9d95f58c3957da0c20132
     * i.e. sha256 over the file's 32-byte binary sha256. */
    CHECK_STR(hash_of(h, "requirements.txt", root),
              "b62a817a27391e69ef3410217c526c1fb851ecb74aa9d95f58c3957da0c20132");

    /* Two files: digests concatenated in path order (a.txt before b.txt):
     *   ( printf 'alpha\n' | sha256sum | cut -c1-64 | xxd -r -p;
     *     printf 'beta\n'  | sha256sum | cut -c1-64 | xxd -r -p ) | sha256sum
     *     -> 24d116e0411b3a4a8d3d5c9c88c150bc4d4603a490294bd4b23d3ef549e1f1a0
     * (the reverse order would give
     *  a3013a35661fd0340c6651bfd9b89fd7c86e916011c7e9cfecfb835d90ec7505) */
    write_file("two/a.txt", "alpha\n");
    write_file("two/b.txt", "beta\n");
    const char *ab = "24d116e0411b3a4a8d3d5c9c88c150bc4d4603a490294bd4b23d3ef549e1f1a0";
    char dir[1024];
    path_of(dir, sizeof(dir), "two");
    CHECK_STR(hash_of(h, "a.txt,b.txt", dir), ab);
    CHECK_STR(hash_of(h, "b.txt,a.txt", dir), ab);        /* order of globs does not matter */
    CHECK_STR(hash_of(h, "  b.txt ,\ta.txt  ", dir), ab); /* whitespace around commas */
    CHECK_STR(hash_of(h, "*.txt", dir), ab);
    CHECK_STR(hash_of(h, "b.txt,*.txt,a.txt,./a.txt", dir), ab); /* duplicates count once */
    CHECK_STR(hash_of(h, "two/a.txt,two/b.txt", root), ab);
    CHECK_STR(hash_of(h, "two", root), ab); /* a directory: the files below */
    CHECK_STR(hash_of(h, "two/", root), ab);
    CHECK_STR(hash_of(h, "two/**", root), ab);
    CHECK_STR(hash_of(h, "t?o/[ab].txt", root), ab);
    CHECK(strcmp(hash_of(h, "two/a.txt", root), ab) != 0);

    /* NULL base_dir = the current directory. */
    char cwd[4096];
    CHECK(getcwd(cwd, sizeof(cwd)) != NULL);
    CHECK_INT(chdir(dir), 0);
    CHECK_STR(hash_of(h, "b.txt,a.txt", NULL), ab);
    CHECK_INT(chdir(cwd), 0);
}

static void test_hash_globstar(void)
{
    char h[65], expect[65];
    write_file("gs/requirements.txt", "a\n");
    write_file("gs/sub/requirements-dev.txt", "b\n");
    write_file("gs/sub/deep/x/requirements.txt", "c\n");
    write_file("gs/sub/notes.txt", "not matched\n");
    write_file("gs/.git/requirements.txt", "inside .git: skipped by **\n");
    write_file("gs/.hidden/requirements.txt", "d\n"); /* dot directories are walked */
    char gs[1024], target[1024], link[1024];
    path_of(gs, sizeof(gs), "gs");
    /* A symlinked directory is not followed by **: it would add link/requirements-dev.txt. */
    path_of(target, sizeof(target), "gs/sub");
    path_of(link, sizeof(link), "gs/link");
    CHECK_INT(symlink(target, link), 0);

    hash_of(expect,
            ".hidden/requirements.txt,requirements.txt,sub/deep/x/requirements.txt,"
            "sub/requirements-dev.txt",
            gs);
    CHECK(expect[0] != '\0');
    CHECK_STR(hash_of(h, "**/requirements*.txt", gs), expect);
    CHECK_STR(hash_of(h, "**/**/requirements*.txt", gs), expect);
    /* The definition sorts by path: the same files listed in another order hash the same. */
    CHECK_STR(hash_of(h,
                      "sub/requirements-dev.txt,sub/deep/x/requirements.txt,requirements.txt,"
                      ".hidden/requirements.txt",
                      gs),
              expect);
    /* ** in the middle matches zero or more directories. */
    hash_of(expect, "sub/deep/x/requirements.txt,sub/requirements-dev.txt", gs);
    CHECK_STR(hash_of(h, "sub/**/requirements*.txt", gs), expect);
    /* Wildcards do not match ".git"; naming .git or the link literally reaches inside. */
    stow_error gerr = {0};
    CHECK_INT(stow_key_hash_files(h, ".gi?/requirements.txt", gs, &gerr), STOW_EUSAGE);
    CHECK_INT(stow_key_hash_files(h, "*/requirements.txt", gs, &gerr), 0);
    hash_of(expect, ".hidden/requirements.txt", gs);
    CHECK_STR(h, expect);
    hash_of(expect, ".git/requirements.txt", gs);
    CHECK(expect[0] != '\0');
    hash_of(expect, "sub/requirements-dev.txt", gs);
    CHECK_STR(hash_of(h, "link/requirements-dev.txt", gs), expect);

    /* Exclusions: the last matching glob wins; a directory excludes everything below it. */
    hash_of(expect, "requirements.txt,sub/requirements-dev.txt", gs);
    CHECK_STR(hash_of(h, "**/requirements*.txt,!sub/deep/**,!.hidden", gs), expect);
    CHECK_STR(hash_of(h, "**/requirements*.txt,!**/x,!.hidden/*", gs), expect);
    hash_of(expect, "requirements.txt,sub/deep/x/requirements.txt,sub/requirements-dev.txt", gs);
    CHECK_STR(hash_of(h, "**/requirements*.txt,!.hidden,!sub,sub/**/requirements*.txt", gs),
              expect);

    stow_error err = {0};
    CHECK_INT(stow_key_hash_files(h, "**/requirements*.txt,!**", gs, &err), STOW_EUSAGE);
    CHECK(strstr(err.msg, "excluded") != NULL);
    CHECK_INT(stow_key_hash_files(h, "requirements.txt,!requirements.txt", gs, &err), STOW_EUSAGE);
    CHECK(strstr(err.msg, "every file matched by") != NULL);
    CHECK_INT(stow_key_hash_files(h, "!requirements.txt", gs, &err), STOW_EUSAGE);
    CHECK(strstr(err.msg, "only exclusions") != NULL);
}

static void test_hash_errors(void)
{
    char h[65];
    stow_error err = {0};
    write_file("err/present.txt", "x\n");
    char dir[1024];
    path_of(dir, sizeof(dir), "err");

    CHECK_INT(stow_key_hash_files(h, "nomatch*.lock", dir, &err), STOW_EUSAGE);
    CHECK(strstr(err.msg, "\"nomatch*.lock\"") != NULL);
    CHECK(strstr(err.msg, dir) != NULL);
    /* One glob of several without a match is an error naming that glob. */
    CHECK_INT(stow_key_hash_files(h, "present.txt, missing.txt", dir, &err), STOW_EUSAGE);
    CHECK(strstr(err.msg, "\"missing.txt\"") != NULL);
    CHECK(strstr(err.msg, "present.txt") == NULL);

    CHECK_INT(stow_key_hash_files(h, "present.txt,", dir, &err), STOW_EUSAGE);
    CHECK(strstr(err.msg, "empty glob") != NULL);
    CHECK_INT(stow_key_hash_files(h, "../err/present.txt", dir, &err), STOW_EUSAGE);
    CHECK(strstr(err.msg, "..") != NULL);
    CHECK_INT(stow_key_hash_files(h, "/etc/hostname", dir, &err), STOW_EUSAGE);
    CHECK(strstr(err.msg, "absolute") != NULL);
    CHECK_INT(stow_key_hash_files(h, "present.txt", "/nonexistent-stow-dir", &err), STOW_EUSAGE);
    CHECK(strstr(err.msg, "/nonexistent-stow-dir") != NULL);

    /* Depth bound: 70 nested directories under a "**" walk. */
    char deep[1024] = "deep";
    for (int i = 0; i < 70; i++) {
        size_t n = strlen(deep);
        snprintf(deep + n, sizeof(deep) - n, "/d");
    }
    mkdirs(deep);
    char deepdir[1024];
    path_of(deepdir, sizeof(deepdir), "deep");
    write_file("deep/f.txt", "f\n");
    CHECK_INT(stow_key_hash_files(h, "**/f.txt", deepdir, &err), STOW_EUSAGE);
    CHECK(strstr(err.msg, "deeper than 64") != NULL);
    /* A glob that never descends does not hit the bound. */
    CHECK_INT(stow_key_hash_files(h, "f.txt", deepdir, &err), 0);
}

/* ---- templates ---- */

static void test_expand(void)
{
    char *out = NULL;
    stow_error err = {0};
    char h[65];
    write_file("tpl/requirements.txt", "torch==2.7.1\n");
    char dir[1024];
    path_of(dir, sizeof(dir), "tpl");

    struct utsname u;
    CHECK_INT(uname(&u), 0);
    const char *arch = u.machine;
    if (strcmp(arch, "x86_64") == 0)
        arch = "x64";
    else if (strcmp(arch, "aarch64") == 0)
        arch = "arm64";
    const char *os = "linux";
#if defined(__APPLE__)
    os = "darwin";
#elif !defined(__linux__)
#error "add the expected {os} value for this system"
#endif
    char expect[512];
    snprintf(expect, sizeof(expect), "docker-%s-%s-%s", os, arch,
             "b62a817a27391e69ef3410217c526c1fb851ecb74aa9d95f58c3957da0c20132");
    CHECK_INT(stow_key_expand(&out, "docker-{os}-{arch}-{hash:requirements.txt}", dir, &err), 0);
    CHECK_STR(out, expect);
    free(out);
    out = NULL;

    CHECK_INT(stow_key_expand(&out, "plain-key_1.0", dir, &err), 0);
    CHECK_STR(out, "plain-key_1.0");
    free(out);
    out = NULL;
    CHECK_INT(stow_key_expand(&out, "", dir, &err), 0);
    CHECK_STR(out, "");
    free(out);
    out = NULL;

    /* {env:NAME}: sanitized value; unset/empty/bad names are errors naming the variable. */
    setenv("STOW_TEST_KEYVAR", "py 3.12/cu124", 1);
    CHECK_INT(stow_key_expand(&out, "x-{env:STOW_TEST_KEYVAR}-y", dir, &err), 0);
    CHECK_STR(out, "x-py-3.12-cu124-y");
    free(out);
    out = NULL;
    unsetenv("STOW_TEST_KEYVAR");
    CHECK_INT(stow_key_expand(&out, "x-{env:STOW_TEST_KEYVAR}", dir, &err), STOW_EUSAGE);
    CHECK(out == NULL);
    CHECK(strstr(err.msg, "STOW_TEST_KEYVAR is not set") != NULL);
    CHECK(strstr(err.msg, "\"x-{env:STOW_TEST_KEYVAR}\"") != NULL);
    setenv("STOW_TEST_KEYVAR", "", 1);
    CHECK_INT(stow_key_expand(&out, "x-{env:STOW_TEST_KEYVAR}", dir, &err), STOW_EUSAGE);
    CHECK(strstr(err.msg, "STOW_TEST_KEYVAR is empty") != NULL);
    unsetenv("STOW_TEST_KEYVAR");
    CHECK_INT(stow_key_expand(&out, "{env:1BAD}", dir, &err), STOW_EUSAGE);
    CHECK(strstr(err.msg, "1BAD") != NULL);
    CHECK_INT(stow_key_expand(&out, "{env:}", dir, &err), STOW_EUSAGE);
    CHECK_INT(stow_key_expand(&out, "{env:A-B}", dir, &err), STOW_EUSAGE);

    /* Malformed templates. */
    CHECK_INT(stow_key_expand(&out, "docker-{nope}-x", dir, &err), STOW_EUSAGE);
    CHECK(out == NULL);
    CHECK(strstr(err.msg, "\"docker-{nope}-x\"") != NULL);
    CHECK(strstr(err.msg, "{nope}") != NULL);
    CHECK(strstr(err.msg, "unknown placeholder") != NULL);
    CHECK_INT(stow_key_expand(&out, "a-{hash:x", dir, &err), STOW_EUSAGE);
    CHECK(strstr(err.msg, "\"a-{hash:x\"") != NULL);
    CHECK(strstr(err.msg, "unterminated '{' at offset 2") != NULL);
    CHECK_INT(stow_key_expand(&out, "a-{os-{arch}", dir, &err), STOW_EUSAGE);
    CHECK(strstr(err.msg, "unterminated") != NULL);
    CHECK_INT(stow_key_expand(&out, "a-os}", dir, &err), STOW_EUSAGE);
    CHECK(strstr(err.msg, "offset 4") != NULL);
    CHECK_INT(stow_key_expand(&out, "a-{}", dir, &err), STOW_EUSAGE);
    CHECK(strstr(err.msg, "unknown placeholder") != NULL);
    CHECK_INT(stow_key_expand(&out, "{OS}", dir, &err), STOW_EUSAGE);

    /* A glob without a match: the message names the template, the placeholder and the glob. */
    CHECK_INT(stow_key_expand(&out, "k-{hash:requirements.txt,poetry.lock}", dir, &err),
              STOW_EUSAGE);
    CHECK(strstr(err.msg, "\"k-{hash:requirements.txt,poetry.lock}\"") != NULL);
    CHECK(strstr(err.msg, "no file matches glob \"poetry.lock\"") != NULL);
    CHECK_INT(stow_key_expand(&out, "k-{hash:}", dir, &err), STOW_EUSAGE);
    CHECK(strstr(err.msg, "empty glob") != NULL);

    /* Hash inside a template equals stow_key_hash_files. */
    CHECK_INT(stow_key_expand(&out, "{hash: requirements.txt }", dir, &err), 0);
    CHECK_STR(out, hash_of(h, "requirements.txt", dir));
    free(out);
    out = NULL;

    /* Expansion is bounded. */
    char *big = malloc(STOW_KEY_TEMPLATE_MAX + 2);
    CHECK(big != NULL);
    if (big != NULL) {
        memset(big, 'a', STOW_KEY_TEMPLATE_MAX + 1);
        big[STOW_KEY_TEMPLATE_MAX + 1] = '\0';
        CHECK_INT(stow_key_expand(&out, big, dir, &err), STOW_EUSAGE);
        CHECK(strstr(err.msg, "longer than") != NULL);
        free(big);
    }
}

/* ---- branch ---- */

static void test_branch(void)
{
    char *b = NULL;
    stow_error err = {0};
    char repo[1024], start[1024];

    unset_branch_env();
    setenv("GITHUB_REF_NAME", "feature/x", 1);
    CHECK_INT(stow_key_branch(&b, root, &err), 0);
    CHECK_STR(b, "feature-x");
    free(b);
    b = NULL;
    setenv("GITHUB_HEAD_REF", "pr/branch name", 1); /* pull requests: the head branch wins */
    CHECK_INT(stow_key_branch(&b, root, &err), 0);
    CHECK_STR(b, "pr-branch-name");
    free(b);
    b = NULL;
    setenv("GITHUB_HEAD_REF", "", 1); /* empty counts as unset */
    CHECK_INT(stow_key_branch(&b, root, &err), 0);
    CHECK_STR(b, "feature-x");
    free(b);
    b = NULL;
    unset_branch_env();
    setenv("CI_COMMIT_REF_NAME", "release/1.2", 1);
    CHECK_INT(stow_key_branch(&b, root, &err), 0);
    CHECK_STR(b, "release-1.2");
    free(b);
    b = NULL;
    unset_branch_env();

    /* A fake repository: .git/HEAD, found walking up from a subdirectory. */
    write_file("repo/.git/HEAD", "ref: refs/heads/topic/one\n");
    mkdirs("repo/src/pkg");
    path_of(repo, sizeof(repo), "repo");
    path_of(start, sizeof(start), "repo/src/pkg");
    CHECK_INT(stow_key_branch(&b, start, &err), 0);
    CHECK_STR(b, "topic-one");
    free(b);
    b = NULL;

    /* {branch} in a template looks from base_dir. */
    CHECK_INT(stow_key_expand(&b, "scope-{branch}", start, &err), 0);
    CHECK_STR(b, "scope-topic-one");
    free(b);
    b = NULL;

    /* Detached HEAD is an error. */
    write_file("repo/.git/HEAD", "0123456789abcdef0123456789abcdef01234567\n");
    CHECK_INT(stow_key_branch(&b, start, &err), STOW_EUSAGE);
    CHECK(b == NULL);
    CHECK(strstr(err.msg, "detached HEAD") != NULL);
    CHECK(strstr(err.msg, "GITHUB_REF_NAME") != NULL);
    CHECK_INT(stow_key_expand(&b, "k-{branch}", start, &err), STOW_EUSAGE);
    CHECK(strstr(err.msg, "{branch}") != NULL);
    CHECK(strstr(err.msg, "detached HEAD") != NULL);
    write_file("repo/.git/HEAD", "garbage\n");
    CHECK_INT(stow_key_branch(&b, start, &err), STOW_EUSAGE);

    /* A worktree: ".git" is a file pointing at the git directory (relative and absolute). */
    write_file("gitdirs/wt/HEAD", "ref: refs/heads/wip/keys\n");
    write_file("wt/.git", "gitdir: ../gitdirs/wt\n");
    path_of(start, sizeof(start), "wt");
    CHECK_INT(stow_key_branch(&b, start, &err), 0);
    CHECK_STR(b, "wip-keys");
    free(b);
    b = NULL;
    char abs[1024], line[1200];
    path_of(abs, sizeof(abs), "gitdirs/wt");
    snprintf(line, sizeof(line), "gitdir: %s\n", abs);
    write_file("wt/.git", line);
    CHECK_INT(stow_key_branch(&b, start, &err), 0);
    CHECK_STR(b, "wip-keys");
    free(b);
    b = NULL;
    write_file("wt/.git", "not a gitdir line\n");
    CHECK_INT(stow_key_branch(&b, start, &err), STOW_EUSAGE);
    CHECK(strstr(err.msg, "gitdir") != NULL);

    /* HEAD is read with a cap and only as a regular file: a FIFO nobody writes to must not
     * hang the key computation, and an oversized HEAD is refused naming the file. */
    char head[1024];
    path_of(head, sizeof(head), "fifo/.git/HEAD");
    mkdirs("fifo/.git");
    CHECK_INT(mkfifo(head, 0600), 0);
    path_of(start, sizeof(start), "fifo");
    CHECK_INT(stow_key_branch(&b, start, &err), STOW_EUSAGE);
    CHECK(b == NULL);
    CHECK(strstr(err.msg, "HEAD: not a regular file") != NULL);
    char big[5000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    memcpy(big, "ref: refs/heads/", 16);
    write_file("bighead/.git/HEAD", big);
    path_of(start, sizeof(start), "bighead");
    CHECK_INT(stow_key_branch(&b, start, &err), STOW_EUSAGE);
    CHECK(b == NULL);
    CHECK(strstr(err.msg, "HEAD: 4999 bytes; the limit is 4096") != NULL);
}

/* ---- validation ---- */

static void test_validate(void)
{
    stow_error err = {0};
    char longkey[256];

    CHECK_INT(stow_key_validate("docker-linux-x64-0123abc_1.2", "key", &err), 0);
    CHECK_INT(stow_key_validate("a", "key", &err), 0);
    CHECK_INT(stow_key_validate("a..b", "key", &err), 0);

    CHECK_INT(stow_key_validate("", "key", &err), STOW_EUSAGE);
    CHECK(strstr(err.msg, "key is empty") != NULL);
    CHECK_INT(stow_key_validate(NULL, "scope", &err), STOW_EUSAGE);
    CHECK(strstr(err.msg, "scope is empty") != NULL);

    memset(longkey, 'k', 200);
    longkey[200] = '\0';
    CHECK_INT(stow_key_validate(longkey, "key", &err), 0);
    longkey[200] = 'k';
    longkey[201] = '\0';
    CHECK_INT(stow_key_validate(longkey, "key", &err), STOW_EUSAGE);
    CHECK(strstr(err.msg, "201 bytes") != NULL);

    CHECK_INT(stow_key_validate("abc/def", "restore key", &err), STOW_EUSAGE);
    CHECK(strstr(err.msg, "restore key \"abc/def\"") != NULL);
    CHECK(strstr(err.msg, "'/' at offset 3") != NULL);
    CHECK_INT(stow_key_validate("ab cd", "key", &err), STOW_EUSAGE);
    CHECK(strstr(err.msg, "' ' at offset 2") != NULL);
    CHECK_INT(stow_key_validate(".hidden", "scope", &err), STOW_EUSAGE);
    CHECK(strstr(err.msg, "scope") != NULL);
    CHECK(strstr(err.msg, "start with '.'") != NULL);
    CHECK_INT(stow_key_validate("caf\xc3\xa9", "key", &err), STOW_EUSAGE);
    CHECK(strstr(err.msg, "\\xc3 at offset 3") != NULL);
    CHECK(strstr(err.msg, "caf\\xc3\\xa9") != NULL); /* the key is quoted printably */
    CHECK_INT(stow_key_validate("a\tb", "key", &err), STOW_EUSAGE);
    CHECK(strstr(err.msg, "\\x09 at offset 1") != NULL);
    CHECK_INT(stow_key_validate("a{b}", "key", &err), STOW_EUSAGE);
    CHECK(strstr(err.msg, "'{' at offset 1") != NULL);
}

static void test_sanitize(void)
{
    char s[] = "feature/x y:z\xc3\xa9.ok_-9";
    stow_key_sanitize(s);
    CHECK_STR(s, "feature-x-y-z--.ok_-9");
    char e[] = "";
    stow_key_sanitize(e);
    CHECK_STR(e, "");
    stow_key_sanitize(NULL);
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(root, sizeof(root), "%s/stow-keys-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(root) == NULL) {
        perror("mkdtemp");
        return 2;
    }
    test_hash_known_values();
    test_hash_globstar();
    test_hash_errors();
    test_expand();
    test_branch();
    test_validate();
    test_sanitize();
    rm_rf(root);
    TEST_DONE();
}
