/* Unit tests for common/safedir.c: directories opened without following symlinks, and symlink
 * targets judged after resolving the links they pass through (chains, links to directories,
 * dangling links, loops), from the caller's view and from the disk. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safedir.h"
#include "test.h"

static char base[PATH_MAX];

static void path_of(char *out, size_t outsz, const char *rel)
{
    snprintf(out, outsz, "%s/%s", base, rel);
}

static void mk(const char *rel)
{
    char p[PATH_MAX + 64];
    path_of(p, sizeof(p), rel);
    CHECK(mkdir(p, 0755) == 0);
}

static void ln(const char *target, const char *rel)
{
    char p[PATH_MAX + 64];
    path_of(p, sizeof(p), rel);
    CHECK(symlink(target, p) == 0);
}

/* The caller's view: a small table of links that "will exist". */
typedef struct {
    const char *path, *target; /* target NULL: a file or directory */
} view_entry;

static stow_safedir_kind view_lookup(void *ud, const char *rel, const char **target)
{
    for (const view_entry *v = ud; v->path != NULL; v++) {
        if (strcmp(v->path, rel) == 0) {
            if (v->target == NULL)
                return STOW_SAFEDIR_NOT_LINK;
            *target = v->target;
            return STOW_SAFEDIR_LINK;
        }
    }
    return STOW_SAFEDIR_UNKNOWN;
}

static char created_log[1024];
static void on_created(void *ud, const char *dirrel)
{
    (void)ud;
    strncat(created_log, dirrel, sizeof(created_log) - strlen(created_log) - 2);
    strncat(created_log, ";", sizeof(created_log) - strlen(created_log) - 1);
}

static void test_open(int rootfd)
{
    stow_error err = {0};
    mk("root/a");
    mk("root/a/b");
    mk("outside");
    ln("../outside", "root/a/up"); /* a symlinked directory component */
    ln("b", "root/a/bl");          /* even one that stays inside */

    int fd = stow_safedir_open(rootfd, "a/b", 0, NULL, NULL, &err);
    CHECK(fd >= 0);
    if (fd >= 0)
        close(fd);
    fd = stow_safedir_open(rootfd, "", 0, NULL, NULL, &err);
    CHECK(fd >= 0);
    if (fd >= 0)
        close(fd);

    CHECK_INT(stow_safedir_open(rootfd, "a/up", 1, NULL, NULL, &err), -1);
    CHECK_INT(err.code, STOW_ECORRUPT);
    CHECK_INT(stow_safedir_open(rootfd, "a/up/x", 1, NULL, NULL, &err), -1);
    CHECK_INT(err.code, STOW_ECORRUPT);
    CHECK_INT(stow_safedir_open(rootfd, "a/bl", 0, NULL, NULL, &err), -1);
    CHECK_INT(err.code, STOW_ECORRUPT);
    char p[PATH_MAX + 64];
    path_of(p, sizeof(p), "outside/x");
    CHECK(access(p, F_OK) != 0); /* create through a link made nothing outside */

    CHECK_INT(stow_safedir_open(rootfd, "a/../a", 1, NULL, NULL, &err), -1);
    CHECK_INT(err.code, STOW_ECORRUPT);
    CHECK_INT(stow_safedir_open(rootfd, "a//b", 1, NULL, NULL, &err), -1);
    CHECK_INT(stow_safedir_open(rootfd, "a/./b", 1, NULL, NULL, &err), -1);

    CHECK_INT(stow_safedir_open(rootfd, "a/missing", 0, NULL, NULL, &err), -1);
    CHECK_INT(err.code, STOW_ENOTFOUND);

    created_log[0] = '\0';
    fd = stow_safedir_open(rootfd, "a/n1/n2", 1, on_created, NULL, &err);
    CHECK(fd >= 0);
    if (fd >= 0)
        close(fd);
    CHECK_STR(created_log, "a/n1;a/n1/n2;");
    created_log[0] = '\0';
    fd = stow_safedir_open(rootfd, "a/n1/n2", 1, on_created, NULL, &err);
    CHECK(fd >= 0);
    if (fd >= 0)
        close(fd);
    CHECK_STR(created_log, ""); /* existing directories are not reported */

    /* The cache hands back the same fd for the same directory, a new one otherwise. */
    stow_safedir_cache c = STOW_SAFEDIR_CACHE_INIT;
    int f1 = stow_safedir_cache_get(&c, rootfd, "a/b", 0, NULL, NULL, &err);
    int f2 = stow_safedir_cache_get(&c, rootfd, "a/b", 0, NULL, NULL, &err);
    CHECK(f1 >= 0 && f1 == f2);
    CHECK_INT(stow_safedir_cache_get(&c, rootfd, "a/up", 0, NULL, NULL, &err), -1);
    stow_safedir_cache_close(&c);
    CHECK_INT(c.fd, -1);
}

static void test_split(void)
{
    char dir[8];
    const char *leaf;
    CHECK_INT(stow_safedir_split(dir, sizeof(dir), &leaf, "a/b/c"), 0);
    CHECK_STR(dir, "a/b");
    CHECK_STR(leaf, "c");
    CHECK_INT(stow_safedir_split(dir, sizeof(dir), &leaf, "top"), 0);
    CHECK_STR(dir, "");
    CHECK_STR(leaf, "top");
    CHECK_INT(stow_safedir_split(dir, sizeof(dir), &leaf, "abcdefgh/x"), -1);
}

static int inside(int rootfd, const char *rel, const char *target, const view_entry *view)
{
    char why[256];
    return stow_safedir_link_inside(rootfd, rel, target, view ? view_lookup : NULL, (void *)view,
                                    why, sizeof(why));
}

static void test_links_view(void)
{
    /* The chain: each link is fine lexically, together they climb out. */
    const view_entry chain[] = {
        {"d", NULL}, {"d/s", ".."}, {"u1", "d/s/.."}, {"u2", "u1/.."}, {NULL, NULL},
    };
    CHECK_INT(inside(-1, "d/s", "..", chain), 1);    /* = the root: fine */
    CHECK_INT(inside(-1, "u1", "d/s/..", chain), 0); /* one above the root */
    CHECK_INT(inside(-1, "evil", "u2/etc/passwd", chain), 0);
    CHECK_INT(inside(-1, "ok", "d/s/d", chain), 1);       /* root/d */
    CHECK_INT(inside(-1, "ok", "d/s/d/s/d/s", chain), 1); /* still the root */

    /* Through a link to a directory. */
    const view_entry dirlink[] = {
        {"d", NULL},
        {"d/s", ".."},
        {"d2", "d"},
        {NULL, NULL},
    };
    CHECK_INT(inside(-1, "x", "d2/s", dirlink), 1);
    CHECK_INT(inside(-1, "x", "d2/s/..", dirlink), 0);
    CHECK_INT(inside(-1, "x", "d2/s/d2/s/..", dirlink), 0);
    CHECK_INT(inside(-1, "a/b/x", "../../d2/f", dirlink), 1);

    /* Lexical escapes, absolute targets, absolute links passed through. */
    CHECK_INT(inside(-1, "x", "..", NULL), 0);
    CHECK_INT(inside(-1, "a/x", "../..", NULL), 0);
    CHECK_INT(inside(-1, "a/x", "..", NULL), 1);
    CHECK_INT(inside(-1, "x", "/etc/passwd", NULL), 0);
    const view_entry abs[] = {{"etc", "/etc"}, {NULL, NULL}};
    CHECK_INT(inside(-1, "x", "etc/passwd", abs), 0);

    /* Dangling links are fine; so is "." and "a/./b". */
    CHECK_INT(inside(-1, "x", "does/not/exist", NULL), 1);
    CHECK_INT(inside(-1, "x", "./a/./b", NULL), 1);

    /* Loops end at the hop limit instead of spinning. */
    const view_entry loop[] = {{"l1", "l2"}, {"l2", "l1"}, {NULL, NULL}};
    char why[256];
    CHECK_INT(stow_safedir_link_inside(-1, "x", "l1/f", view_lookup, (void *)loop, why,
                                       sizeof(why)),
              0);
    CHECK(strstr(why, "nested") != NULL);

    /* The view wins over the disk: a path it calls a file is not followed. */
    const view_entry shadow[] = {{"d", NULL}, {"d/s", NULL}, {NULL, NULL}};
    CHECK_INT(inside(-1, "x", "d/s/..", shadow), 1);

    /* Malformed input. */
    CHECK_INT(inside(-1, "", "a", NULL), 0);
    CHECK_INT(inside(-1, "x", "", NULL), 0);
    CHECK_INT(inside(-1, "/x", "a", NULL), 0);
}

static void test_links_disk(int rootfd)
{
    /* Links already on disk (from an earlier restore) take part in the resolution. */
    mk("root/old");
    ln("..", "root/old/s");
    CHECK_INT(inside(rootfd, "t", "old/s", NULL), 1);
    CHECK_INT(inside(rootfd, "t", "old/s/..", NULL), 0);
    /* A disk link to an absolute path. */
    ln("/etc", "root/sys");
    CHECK_INT(inside(rootfd, "t", "sys/passwd", NULL), 0);
    /* The view (what this restore will write) beats the disk. */
    const view_entry replaced[] = {{"old/s", NULL}, {NULL, NULL}};
    CHECK_INT(inside(rootfd, "t", "old/s/..", replaced), 1);
    /* A symlinked directory component on disk is followed for judging too. */
    ln("old", "root/oldlink");
    CHECK_INT(inside(rootfd, "t", "oldlink/s/..", NULL), 0);
    CHECK_INT(inside(rootfd, "t", "oldlink/s/a", NULL), 1);
}

static int open_fds(void)
{
    int n = 0;
    for (int fd = 0; fd < 1024; fd++)
        n += fcntl(fd, F_GETFD) != -1;
    return n;
}

static int is_dir_at(int dfd, const char *leaf)
{
    struct stat sb;
    return fstatat(dfd, leaf, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(sb.st_mode);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* The walk keeps one fd per component of the last directory: siblings, parents, deeper and
 * other roots all resolve to the right directory, symlinked components are refused, nothing
 * leaks. */
static void test_walk(void)
{
    stow_error err = {0};
    mk("wroot");
    mk("wroot/a");
    mk("wroot/a/b");
    mk("wroot/a/b/c");
    mk("wroot/a/b/c/in-c");
    mk("wroot/a/b/d");
    mk("wroot/a/b/d/in-d");
    mk("wroot/a/e");
    mk("wroot/a/e/in-e");
    mk("wroot/ab");
    mk("wroot/ab/in-ab");
    ln("b", "wroot/a/bl");
    char rp[PATH_MAX + 64], deep[PATH_MAX];
    /* 70 levels, deeper than the stack. */
    size_t dl = 0;
    path_of(rp, sizeof(rp), "wroot");
    size_t rl = strlen(rp);
    for (int i = 0; i < 70; i++) {
        memcpy(deep + dl, i ? "/d" : "d", i ? 2 : 1);
        dl += i ? 2 : 1;
        deep[dl] = '\0';
        snprintf(rp + rl, sizeof(rp) - rl, "/%s", deep);
        CHECK(mkdir(rp, 0755) == 0);
    }
    snprintf(rp + rl, sizeof(rp) - rl, "/%s/leaf", deep);
    CHECK(mkdir(rp, 0755) == 0);
    path_of(rp, sizeof(rp), "wroot");
    int rootfd = open(rp, O_RDONLY | O_DIRECTORY);
    CHECK(rootfd >= 0);
    int before = open_fds();

    stow_safedir_walk w = STOW_SAFEDIR_WALK_INIT;
    static const struct {
        const char *dir, *leaf;
    } seq[] = {{"a/b/c", "in-c"}, {"a/b/d", "in-d"}, {"a/b/d", "in-d"},
               {"a/b", "c"},      {"a/e", "in-e"},   {"ab", "in-ab"},
               {"a", "b"},        {"", "ab"},        {"a/b/c", "in-c"}};
    for (size_t i = 0; i < sizeof(seq) / sizeof(seq[0]); i++) {
        int fd = stow_safedir_walk_get(&w, rootfd, seq[i].dir, strlen(seq[i].dir), &err);
        CHECK(fd >= 0);
        CHECK(fd >= 0 && is_dir_at(fd, seq[i].leaf));
    }
    /* A directory named by a prefix of a longer string (no copy of the path needed). */
    const char *file = "a/e/in-e";
    CHECK(is_dir_at(stow_safedir_walk_get(&w, rootfd, file, 3, &err), "in-e"));
    /* Symlinked components and missing ones. */
    CHECK_INT(stow_safedir_walk_get(&w, rootfd, "a/bl", 4, &err), -1);
    CHECK_INT(err.code, STOW_ECORRUPT);
    CHECK_INT(stow_safedir_walk_get(&w, rootfd, "a/bl/c", 6, &err), -1);
    CHECK_INT(err.code, STOW_ECORRUPT);
    CHECK_INT(stow_safedir_walk_get(&w, rootfd, "a/x/y", 5, &err), -1);
    CHECK_INT(err.code, STOW_ENOTFOUND);
    CHECK_INT(stow_safedir_walk_get(&w, rootfd, "a/../a", 6, &err), -1);
    CHECK_INT(err.code, STOW_ECORRUPT);
    /* Still right after the failures. */
    CHECK(is_dir_at(stow_safedir_walk_get(&w, rootfd, "a/b/d", 5, &err), "in-d"));
    /* Past the stack's depth, and back. */
    CHECK(is_dir_at(stow_safedir_walk_get(&w, rootfd, deep, dl, &err), "leaf"));
    CHECK(is_dir_at(stow_safedir_walk_get(&w, rootfd, deep, dl - 2, &err), "d"));
    CHECK(is_dir_at(stow_safedir_walk_get(&w, rootfd, deep, dl, &err), "leaf"));
    CHECK(is_dir_at(stow_safedir_walk_get(&w, rootfd, "a/b", 3, &err), "d"));
    /* Another root: the root's own directory. */
    int other = open(base, O_RDONLY | O_DIRECTORY);
    CHECK(is_dir_at(stow_safedir_walk_get(&w, other, "wroot/a", 7, &err), "e"));
    CHECK_INT(stow_safedir_walk_get(&w, other, "", 0, &err), other);
    stow_safedir_walk_close(&w);
    close(other);
    CHECK_INT(open_fds(), before);
    close(rootfd);
    path_of(rp, sizeof(rp), "wroot");
    CHECK_INT(nftw(rp, rm_entry, 16, FTW_DEPTH | FTW_PHYS), 0);
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(base, sizeof(base), "%s/stow-safedir-XXXXXX", tmp ? tmp : "/tmp");
    if (mkdtemp(base) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    mk("root");
    char rp[PATH_MAX + 64];
    path_of(rp, sizeof(rp), "root");
    int rootfd = open(rp, O_RDONLY | O_DIRECTORY);
    CHECK(rootfd >= 0);
    test_open(rootfd);
    test_split();
    test_links_view();
    test_links_disk(rootfd);
    test_walk();
    close(rootfd);
    /* The tree is small and known: remove it entry by entry. */
    const char *rm[] = {"root/a/n1/n2", "root/a/n1", "root/a/b", "root/old",
                        "root/a",       "root",      "outside",  NULL};
    const char *links[] = {"root/a/up", "root/a/bl",    "root/old/s",
                           "root/sys",  "root/oldlink", NULL};
    for (size_t i = 0; links[i]; i++) {
        path_of(rp, sizeof(rp), links[i]);
        unlink(rp);
    }
    for (size_t i = 0; rm[i]; i++) {
        path_of(rp, sizeof(rp), rm[i]);
        rmdir(rp);
    }
    rmdir(base);
    TEST_DONE();
}
