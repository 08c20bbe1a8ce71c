/* Unit tests for agent/stage.c: staged files are renamed into place only by commit; discard
 * removes them and the directories the stage created; a directory in the way stops the
 * commit before anything is replaced; the sweep removes only stowage's own temp names, never
 * through a symlink, and leaves a root alone while another restore holds it. */
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "scan.h"
#include "stage.h"
#include "test.h"

static char base[PATH_MAX];

static void p_of(char *out, size_t outsz, const char *rel)
{
    snprintf(out, outsz, "%s/%s", base, rel);
}

static void put(const char *rel, const char *data)
{
    char p[PATH_MAX + 64];
    p_of(p, sizeof(p), rel);
    FILE *f = fopen(p, "w");
    CHECK(f != NULL);
    if (f != NULL) {
        fputs(data, f);
        fclose(f);
    }
}

static int exists(const char *rel)
{
    char p[PATH_MAX + 64];
    struct stat st;
    p_of(p, sizeof(p), rel);
    return lstat(p, &st) == 0;
}

static int has(const char *rel, const char *data)
{
    char p[PATH_MAX + 64], buf[64] = "";
    p_of(p, sizeof(p), rel);
    FILE *f = fopen(p, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strcmp(buf, data) == 0;
}

/* Writes data under a fresh temp name in dir below root 0 and stages it as dir/name. */
static void stage_file(stow_stage *s, const char *dir, const char *name, const char *data)
{
    stow_error err = {0};
    stow_safedir_cache c = STOW_SAFEDIR_CACHE_INIT;
    int dfd = stow_stage_dir(s, &c, 0, dir, &err);
    CHECK(dfd >= 0);
    if (dfd < 0)
        return;
    char tmp[48];
    stow_stage_temp_name(tmp, sizeof(tmp));
    CHECK(stow_stage_is_temp_name(tmp));
    int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL, 0644);
    CHECK(fd >= 0);
    if (fd >= 0) {
        CHECK(write(fd, data, strlen(data)) == (ssize_t)strlen(data));
        close(fd);
    }
    CHECK_INT(stow_stage_add(s, 0, dir, name, tmp, &err), STOW_OK);
    stow_safedir_cache_close(&c);
}

static size_t count_temp(const char *rel)
{
    char p[PATH_MAX + 64];
    p_of(p, sizeof(p), rel);
    size_t n = 0;
    DIR *d = opendir(p);
    if (d == NULL)
        return 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        n += stow_stage_is_temp_name(de->d_name);
    closedir(d);
    return n;
}

static void test_commit_discard(void)
{
    stow_error err = {0};
    char root[PATH_MAX + 64];
    p_of(root, sizeof(root), "r1");
    char *roots[] = {root};
    CHECK(mkdir(root, 0755) == 0);
    put("r1/old", "old");

    /* Discard: nothing replaced, temp files and new directories gone, old file intact. */
    stow_stage *s = NULL;
    CHECK_INT(stow_stage_new(&s, roots, 1, &err), STOW_OK);
    stage_file(s, "", "old", "new");
    stage_file(s, "x/y", "f", "xy");
    CHECK_INT(stow_stage_count(s), 2);
    CHECK(has("r1/old", "old"));
    CHECK(!exists("r1/x/y/f"));
    CHECK_INT(count_temp("r1"), 1);
    stow_stage_discard(s);
    stow_stage_free(s);
    CHECK(has("r1/old", "old"));
    CHECK_INT(count_temp("r1"), 0);
    CHECK(!exists("r1/x")); /* created by the stage, removed by discard */

    /* Commit: everything renamed into place. */
    CHECK_INT(stow_stage_new(&s, roots, 1, &err), STOW_OK);
    stage_file(s, "", "old", "new");
    stage_file(s, "x/y", "f", "xy");
    size_t committed = 0;
    CHECK_INT(stow_stage_commit(s, &committed, &err), STOW_OK);
    CHECK_INT(committed, 2);
    stow_stage_discard(s); /* after a commit: removes nothing */
    stow_stage_free(s);
    CHECK(has("r1/old", "new"));
    CHECK(has("r1/x/y/f", "xy"));
    CHECK_INT(count_temp("r1"), 0);
    CHECK_INT(count_temp("r1/x/y"), 0);

    /* A directory where the entry has a file: refused before the first rename. */
    char p[PATH_MAX + 64];
    p_of(p, sizeof(p), "r1/adir");
    CHECK(mkdir(p, 0755) == 0);
    CHECK_INT(stow_stage_new(&s, roots, 1, &err), STOW_OK);
    stage_file(s, "", "aaa", "first in order");
    stage_file(s, "", "adir", "file");
    stage_file(s, "", "old", "newer");
    CHECK(stow_stage_commit(s, &committed, &err) != STOW_OK);
    CHECK_INT(committed, 0);
    CHECK(strstr(err.msg, "adir") != NULL);
    stow_stage_discard(s);
    stow_stage_free(s);
    CHECK(!exists("r1/aaa"));
    CHECK(has("r1/old", "new"));
    CHECK_INT(count_temp("r1"), 0);

    /* A staged file whose directory became a symlink is not committed through it. */
    CHECK_INT(stow_stage_new(&s, roots, 1, &err), STOW_OK);
    stage_file(s, "sub", "f", "data");
    char subp[PATH_MAX + 64], moved[PATH_MAX + 64];
    p_of(subp, sizeof(subp), "r1/sub");
    p_of(moved, sizeof(moved), "elsewhere");
    CHECK(rename(subp, moved) == 0);
    CHECK(symlink(moved, subp) == 0);
    CHECK(stow_stage_commit(s, &committed, &err) != STOW_OK);
    CHECK_INT(committed, 0);
    stow_stage_discard(s);
    stow_stage_free(s);
    CHECK(!exists("elsewhere/f"));
}

/* Writes data under its final name (inside a new directory) or a staged temp name. */
static void stage_entry(stow_stage *s, stow_stage_cursor *cur, const char *dir, const char *name,
                        const char *data, int want_direct)
{
    stow_error err = {0};
    int dfd = stow_stage_file_dir(s, cur, 0, dir, &err);
    CHECK(dfd >= 0);
    if (dfd < 0)
        return;
    CHECK_INT(cur->direct, want_direct);
    char tmp[48];
    stow_stage_temp_name(tmp, sizeof(tmp));
    int fd = openat(dfd, cur->direct ? name : tmp, O_WRONLY | O_CREAT | O_EXCL, 0644);
    CHECK(fd >= 0);
    if (fd >= 0) {
        CHECK(write(fd, data, strlen(data)) == (ssize_t)strlen(data));
        close(fd);
    }
    if (!cur->direct)
        CHECK_INT(stow_stage_add(s, 0, dir, name, tmp, &err), STOW_OK);
}

static stow_stage *stage_dirs(char **roots, const char *const *dirs, size_t n)
{
    stow_error err = {0};
    stow_stage *s = NULL;
    CHECK_INT(stow_stage_new(&s, roots, 1, &err), STOW_OK);
    stow_safedir_cache c = STOW_SAFEDIR_CACHE_INIT;
    for (size_t i = 0; s != NULL && i < n; i++)
        CHECK_INT(stow_stage_make_dir(s, &c, 0, dirs[i], &err), STOW_OK);
    stow_safedir_cache_close(&c);
    return s;
}

static void test_new_dirs(void)
{
    stow_error err = {0};
    char root[PATH_MAX + 64], p[PATH_MAX + 64];
    p_of(root, sizeof(root), "r3");
    char *roots[] = {root};
    CHECK(mkdir(root, 0755) == 0);
    p_of(p, sizeof(p), "r3/old");
    CHECK(mkdir(p, 0755) == 0);
    put("r3/old/keep", "keep");
    const char *dirs[] = {"n", "n/a", "n/a/b", "n-x", "old", "old/m"};
    size_t committed = 0;

    /* New directories stay under temporary names until commit: nothing new is visible, and
     * their files are written under final names (no record per file). */
    stow_stage *s = stage_dirs(roots, dirs, 6);
    stow_stage_cursor cur = STOW_STAGE_CURSOR_INIT;
    stage_entry(s, &cur, "n/a/b", "f", "nab", 1);
    stage_entry(s, &cur, "n/a/b", "g", "nab2", 1);
    stage_entry(s, &cur, "n-x", "f", "nx", 1);
    stage_entry(s, &cur, "old/m", "f", "om", 1);
    stage_entry(s, &cur, "old", "f", "o", 0);
    stage_entry(s, &cur, "n/c", "f", "nc", 1); /* not in the entry's directories: made inside */
    stow_stage_cursor_close(&cur);
    CHECK(!exists("r3/n"));
    CHECK(!exists("r3/n-x"));
    CHECK(!exists("r3/old/m"));
    CHECK_INT(count_temp("r3"), 2);
    CHECK_INT(count_temp("r3/old"), 2); /* m, and the staged file f */
    CHECK_INT(stow_stage_count(s), 4);  /* three new directories and one file */
    CHECK_INT(stow_stage_commit(s, &committed, &err), STOW_OK);
    CHECK_INT(committed, 4);
    stow_stage_free(s);
    CHECK(has("r3/n/a/b/f", "nab"));
    CHECK(has("r3/n/a/b/g", "nab2"));
    CHECK(has("r3/n/c/f", "nc"));
    CHECK(has("r3/n-x/f", "nx"));
    CHECK(has("r3/old/m/f", "om"));
    CHECK(has("r3/old/f", "o"));
    CHECK(has("r3/old/keep", "keep"));
    CHECK_INT(count_temp("r3"), 0);
    CHECK_INT(count_temp("r3/old"), 0);

    /* Discard removes the staged trees whole; what existed stays. */
    const char *dirs2[] = {"q", "q/r", "old"};
    s = stage_dirs(roots, dirs2, 3);
    stage_entry(s, &cur, "q/r", "f", "qr", 1);
    stage_entry(s, &cur, "old", "keep", "replaced?", 0);
    stow_stage_cursor_close(&cur);
    stow_stage_discard(s);
    stow_stage_free(s);
    CHECK(!exists("r3/q"));
    CHECK_INT(count_temp("r3"), 0);
    CHECK_INT(count_temp("r3/old"), 0);
    CHECK(has("r3/old/keep", "keep"));

    /* A new directory that appears while the restore runs (another restore of the same entry)
     * is merged into: its own files that the entry does not hold stay. */
    s = stage_dirs(roots, dirs2, 2);
    stage_entry(s, &cur, "q/r", "f", "mine", 1);
    stage_entry(s, &cur, "q", "top", "mine too", 1);
    stow_stage_cursor_close(&cur);
    p_of(p, sizeof(p), "r3/q");
    CHECK(mkdir(p, 0755) == 0);
    p_of(p, sizeof(p), "r3/q/r");
    CHECK(mkdir(p, 0755) == 0);
    put("r3/q/r/f", "theirs");
    put("r3/q/r/other", "theirs");
    CHECK_INT(stow_stage_commit(s, &committed, &err), STOW_OK);
    stow_stage_free(s);
    CHECK(has("r3/q/r/f", "mine"));
    CHECK(has("r3/q/r/other", "theirs"));
    CHECK(has("r3/q/top", "mine too"));
    CHECK_INT(count_temp("r3"), 0);

    /* A file where the entry has a new directory: refused before the first rename. */
    const char *dirs3[] = {"z", "w"};
    s = stage_dirs(roots, dirs3, 2);
    stage_entry(s, &cur, "z", "f", "z", 1);
    stage_entry(s, &cur, "", "aaa", "first", 0);
    stow_stage_cursor_close(&cur);
    put("r3/w", "a file");
    CHECK(stow_stage_commit(s, &committed, &err) != STOW_OK);
    CHECK_INT(committed, 0);
    CHECK(strstr(err.msg, "r3/w is a file here") != NULL);
    stow_stage_discard(s);
    stow_stage_free(s);
    CHECK(!exists("r3/z"));
    CHECK(!exists("r3/aaa"));
    CHECK(has("r3/w", "a file"));
    CHECK_INT(count_temp("r3"), 0);

    /* A symlink inside a new directory is not written through. */
    const char *dirs4[] = {"s"};
    s = stage_dirs(roots, dirs4, 1);
    int dfd = stow_stage_file_dir(s, &cur, 0, "s", &err);
    CHECK(dfd >= 0 && cur.direct);
    char out[PATH_MAX + 64];
    p_of(out, sizeof(out), "out3");
    CHECK(mkdir(out, 0755) == 0);
    CHECK(dfd >= 0 && symlinkat(out, dfd, "l") == 0);
    CHECK(stow_stage_file_dir(s, &cur, 0, "s/l", &err) < 0);
    CHECK_INT(err.code, STOW_ECORRUPT);
    stow_stage_cursor_close(&cur);
    stow_stage_discard(s);
    stow_stage_free(s);
    CHECK(!exists("r3/s"));
    CHECK(exists("out3"));
}

static void test_sweep(void)
{
    stow_error err = {0};
    char root[PATH_MAX + 64], p[PATH_MAX + 64];
    p_of(root, sizeof(root), "r2");
    CHECK(mkdir(root, 0755) == 0);
    p_of(p, sizeof(p), "r2/d");
    CHECK(mkdir(p, 0755) == 0);
    p_of(p, sizeof(p), "r2/.stowage-aaaaaaaaaaaaaaaa.tmp"); /* a new directory staged whole */
    CHECK(mkdir(p, 0700) == 0);
    p_of(p, sizeof(p), "r2/.stowage-aaaaaaaaaaaaaaaa.tmp/sub");
    CHECK(mkdir(p, 0755) == 0);
    put("r2/.stowage-aaaaaaaaaaaaaaaa.tmp/sub/f", "staged");
    put("r2/.stowage-aaaaaaaaaaaaaaaa.tmp/g", "staged");
    p_of(p, sizeof(p), "out");
    CHECK(mkdir(p, 0755) == 0);
    put("r2/.stowage-0123456789abcdef.tmp", "stale");
    put("r2/d/.stowage-fedcba9876543210.tmp", "stale");
    put("r2/.stowage-notes.tmp", "user file");
    put("r2/.stowage-0123456789ABCDEF.tmp", "not our case");
    put("out/.stowage-1111111111111111.tmp", "behind a link");
    p_of(p, sizeof(p), "r2/d/.stowage-2222222222222222.tmp");
    CHECK(symlink("target", p) == 0);
    char out[PATH_MAX + 64];
    p_of(out, sizeof(out), "out");
    p_of(p, sizeof(p), "r2/outlink");
    CHECK(symlink(out, p) == 0);

    /* While another restore holds the root, nothing is swept. */
    char *roots[] = {root};
    stow_stage *s = NULL;
    CHECK_INT(stow_stage_new(&s, roots, 1, &err), STOW_OK);
    uint64_t removed = 99;
    CHECK_INT(stow_stage_sweep(root, &removed, &err), STOW_OK);
    CHECK_INT(removed, 0);
    CHECK(exists("r2/.stowage-0123456789abcdef.tmp"));
    stow_stage_free(s);

    CHECK_INT(stow_stage_sweep(root, &removed, &err), STOW_OK);
    CHECK_INT(removed, 5);
    CHECK(!exists("r2/.stowage-0123456789abcdef.tmp"));
    CHECK(!exists("r2/d/.stowage-fedcba9876543210.tmp"));
    CHECK(!exists("r2/d/.stowage-2222222222222222.tmp"));
    CHECK(!exists("r2/.stowage-aaaaaaaaaaaaaaaa.tmp"));
    CHECK(exists("r2/.stowage-notes.tmp"));
    CHECK(exists("r2/.stowage-0123456789ABCDEF.tmp"));
    CHECK(exists("out/.stowage-1111111111111111.tmp"));

    p_of(p, sizeof(p), "missing-root");
    CHECK_INT(stow_stage_sweep(p, &removed, &err), STOW_OK);
    CHECK_INT(removed, 0);
}

static void test_names(void)
{
    CHECK(stow_stage_is_temp_name(STOW_TEMP_PREFIX "0123456789abcdef" STOW_TEMP_SUFFIX));
    CHECK(!stow_stage_is_temp_name(STOW_TEMP_PREFIX "0123456789abcde" STOW_TEMP_SUFFIX));
    CHECK(!stow_stage_is_temp_name(STOW_TEMP_PREFIX "0123456789abcdeg" STOW_TEMP_SUFFIX));
    CHECK(!stow_stage_is_temp_name(STOW_TEMP_PREFIX "0123456789abcdef.tmpx"));
    CHECK(!stow_stage_is_temp_name("x" STOW_TEMP_PREFIX "0123456789abcdef" STOW_TEMP_SUFFIX));
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(base, sizeof(base), "%s/stow-stage-XXXXXX", tmp ? tmp : "/tmp");
    if (mkdtemp(base) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    test_names();
    test_commit_discard();
    test_sweep();
    test_new_dirs();
    if (stow_test_failures == 0) /* kept for inspection when a check failed */
        nftw(base, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    TEST_DONE();
}
