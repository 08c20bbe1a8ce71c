/* Use tracking across real restores (agent/cache.c with agent/trim.c, issue 16 item 4): after
 * every restore each regular file carries the marker atime, whether it was extracted (the
 * marker is written at extraction), already present and marked (left alone: not even its
 * ctime moves), or present but read by a build since the last marking (its atime moved: it is
 * marked again); a layer that is partly gone is extracted whole and every file of it marked.
 * A file store and a cache directory in a temp dir. */
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "cache.h"
#include "layout.h"
#include "log.h"
#include "test.h"
#include "trim.h"

static char base[PATH_MAX], root[PATH_MAX], state[PATH_MAX];

static void path_of(char *out, size_t outsz, const char *rel)
{
    snprintf(out, outsz, "%s/%s", root, rel);
}

static void write_file(const char *rel, size_t n, char fill)
{
    char path[PATH_MAX], dir[PATH_MAX];
    path_of(path, sizeof(path), rel);
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash != NULL) {
        *slash = '\0';
        mkdir(dir, 0755);
    }
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        fputc(fill + (int)(i % 7), f);
    fclose(f);
}

/* A build reads the file: its first byte, checked. */
static void read_file(const char *rel, char fill)
{
    char path[PATH_MAX], c = 0;
    path_of(path, sizeof(path), rel);
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    if (fd >= 0) {
        CHECK(read(fd, &c, 1) == 1);
        close(fd);
    }
    CHECK_INT(c, fill);
}

static int stat_of(struct stat *st, const char *rel)
{
    char path[PATH_MAX];
    path_of(path, sizeof(path), rel);
    return lstat(path, st);
}

static int marked(const char *rel)
{
    struct stat st;
    return stat_of(&st, rel) == 0 && S_ISREG(st.st_mode) && stow_trim_is_marked(&st);
}

static int same_time(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

/* Waits until the clock the kernel stamps ctimes with has moved past rel's ctime (a probe
 * file's ctime says so), so that any later change of rel's inode shows in its ctime. */
static void ctime_clock_past(const char *rel)
{
    struct stat st, probe;
    char path[PATH_MAX];
    CHECK(stat_of(&st, rel) == 0);
    snprintf(path, sizeof(path), "%s/probe", base);
    for (int i = 0; i < 5000; i++) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        CHECK(fd >= 0);
        if (fd < 0)
            return;
        CHECK(write(fd, "p", 1) == 1);
        CHECK(fstat(fd, &probe) == 0);
        close(fd);
        if (probe.st_ctim.tv_sec > st.st_ctim.tv_sec ||
            (probe.st_ctim.tv_sec == st.st_ctim.tv_sec &&
             probe.st_ctim.tv_nsec > st.st_ctim.tv_nsec))
            return;
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    CHECK(!"the ctime clock did not move in 5 s");
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

typedef struct {
    stow_backend *b;
    stow_strlist paths, none;
    char *abs[1];
    char url[PATH_MAX + 16];
} fixture;

static stow_cache_params params(fixture *fx, const char *key)
{
    stow_cache_params p = {.backend = fx->b,
                           .store_url = fx->url,
                           .key = key,
                           .restore_keys = &fx->none,
                           .scope = "main",
                           .fallback_scopes = &fx->none,
                           .paths = &fx->paths,
                           .abs_paths = fx->abs,
                           .state_dir = state,
                           .pack = {.level = 1},
                           .layer_size = 1 << 20,
                           .parallel = 2,
                           .max_layers = 8};
    return p;
}

static int restore(stow_cache_result *res, fixture *fx, const char *key)
{
    stow_error err = {0};
    stow_cache_params p = params(fx, key);
    int rc = stow_cache_restore(res, &p, &err);
    if (rc != STOW_OK)
        fprintf(stderr, "restore %s: %s\n", key, err.msg);
    return rc;
}

static void test_restores(void)
{
    fixture fx = {0};
    stow_error err = {0};
    stow_cache_result res;
    char *pv[] = {"~/c"};
    fx.paths.n = 1;
    fx.paths.v = pv;
    fx.abs[0] = root;
    snprintf(fx.url, sizeof(fx.url), "file://%s/store", base);
    stow_backend_opts o = {.url = fx.url, .verify_tls = 1, .max_retries = -1};
    CHECK_INT(stow_backend_open(&fx.b, &o, &err), STOW_OK);
    if (fx.b == NULL)
        return;

    /* k1 holds a, b, c and a link; k2 adds d in a delta layer of its own. */
    mkdir(root, 0755);
    write_file("A/a.bin", 3000, 'a');
    write_file("B/b.bin", 5000, 'b');
    write_file("C/c.bin", 7000, 'c');
    char link[PATH_MAX];
    path_of(link, sizeof(link), "L");
    CHECK_INT(symlink("A/a.bin", link), 0);
    stow_cache_params p = params(&fx, "k1");
    CHECK_INT(stow_cache_save(&res, &p, &err), STOW_OK);
    write_file("D/d.bin", 4000, 'd');
    p = params(&fx, "k2");
    CHECK_INT(stow_cache_save(&res, &p, &err), STOW_OK);
    CHECK_INT(strcmp(res.parent_key, "k1"), 0);

    char why[256];
    if (stow_trim_canary(root, why, sizeof(why)) != 1) {
        fprintf(stderr, "skipping: %s\n", why);
        stow_backend_free(fx.b);
        return;
    }

    /* Cold: every file extracted, every one marked (by extraction alone). */
    nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    CHECK_INT(restore(&res, &fx, "k2"), STOW_OK);
    CHECK(res.layers_total >= 2);
    CHECK_INT(res.layers_moved, res.layers_total);
    CHECK(marked("A/a.bin") && marked("B/b.bin") && marked("C/c.bin") && marked("D/d.bin"));
    char target[64] = "";
    CHECK(readlink(link, target, sizeof(target) - 1) == 7 && strcmp(target, "A/a.bin") == 0);
    read_file("C/c.bin", 'c');
    CHECK(!marked("C/c.bin")); /* a read moves the marker's atime on this mount */
    CHECK_INT(restore(&res, &fx, "k2"), STOW_OK);
    CHECK_INT(res.layers_moved, 0);
    CHECK(marked("C/c.bin"));

    /* Between two restores a build reads a, something sets b's atime, d is rewritten (its
     * layer is extracted again), c is left alone. */
    read_file("A/a.bin", 'a');
    CHECK(!marked("A/a.bin"));
    char path[PATH_MAX];
    path_of(path, sizeof(path), "B/b.bin");
    struct timespec now_atime[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};
    CHECK_INT(utimensat(AT_FDCWD, path, now_atime, 0), 0);
    CHECK(!marked("B/b.bin"));
    write_file("D/d.bin", 4000, 'x');
    path_of(path, sizeof(path), "D/d.bin");
    struct timespec later[2] = {{0, UTIME_OMIT}, {2000000000, 0}};
    CHECK_INT(utimensat(AT_FDCWD, path, later, 0), 0);
    ctime_clock_past("C/c.bin");
    struct stat c0, a0, c1, a1;
    CHECK(stat_of(&c0, "C/c.bin") == 0 && stat_of(&a0, "A/a.bin") == 0);

    CHECK_INT(restore(&res, &fx, "k2"), STOW_OK);
    CHECK_INT(res.layers_moved, 1); /* d's layer only: a, b, c stay where they are */
    CHECK(marked("A/a.bin"));       /* read since the last restore: marked again */
    CHECK(marked("B/b.bin"));       /* atime moved: marked again */
    CHECK(marked("C/c.bin"));
    CHECK(marked("D/d.bin")); /* extracted again */
    read_file("D/d.bin", 'd');
    CHECK(stat_of(&c1, "C/c.bin") == 0 && stat_of(&a1, "A/a.bin") == 0);
    CHECK(same_time(&c0.st_ctim, &c1.st_ctim)); /* still marked: not touched at all */
    CHECK(!same_time(&a0.st_ctim, &a1.st_ctim));

    /* A fully warm restore touches no file (no ctime moves), and leaves every file marked. */
    CHECK_INT(restore(&res, &fx, "k2"), STOW_OK);
    ctime_clock_past("D/d.bin");
    const char *all[] = {"A/a.bin", "B/b.bin", "C/c.bin", "D/d.bin"};
    struct stat before[4], after;
    for (size_t i = 0; i < 4; i++)
        CHECK(stat_of(&before[i], all[i]) == 0);
    CHECK_INT(restore(&res, &fx, "k2"), STOW_OK);
    CHECK_INT(res.layers_moved, 0);
    for (size_t i = 0; i < 4; i++) {
        CHECK(stat_of(&after, all[i]) == 0 && same_time(&before[i].st_ctim, &after.st_ctim));
        CHECK(marked(all[i]));
    }

    /* A layer that is partly gone is extracted whole: a file of it that a build read is
     * written again with the marker (a, b and c share k1's layer). */
    stow_manifest *m = NULL;
    CHECK_INT(stow_layout_fetch_manifest(&m, fx.b, "main", "k2", &err), STOW_OK);
    const stow_file_entry *ea = m ? stow_manifest_find(m, 0, "A/a.bin") : NULL,
                          *eb = m ? stow_manifest_find(m, 0, "B/b.bin") : NULL;
    CHECK(ea != NULL && eb != NULL && ea->layer == eb->layer);
    stow_manifest_free(m);
    read_file("A/a.bin", 'a');
    CHECK(!marked("A/a.bin"));
    path_of(path, sizeof(path), "B/b.bin");
    CHECK_INT(unlink(path), 0);
    CHECK_INT(restore(&res, &fx, "k2"), STOW_OK);
    CHECK_INT(res.layers_moved, 1);
    CHECK(marked("A/a.bin") && marked("B/b.bin") && marked("C/c.bin") && marked("D/d.bin"));

    /* The save after such a restore sees what the build did: a read, the others unread. */
    read_file("A/a.bin", 'a');
    p = params(&fx, "k3");
    p.trim_unused_after = 1;
    p.trim = 1;
    CHECK_INT(stow_cache_save(&res, &p, &err), STOW_OK);
    CHECK(res.trim_tracked);
    CHECK_INT(res.files_trimmed, 3); /* b, c, d */
    stow_backend_free(fx.b);
}

int main(void)
{
    stow_log_set_level(STOW_LOG_WARN);
    snprintf(base, sizeof(base), "%s/stow-trimr-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (mkdtemp(base) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(root, sizeof(root), "%s/c", base);
    snprintf(state, sizeof(state), "%s/state", base);
    test_restores();
    nftw(base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    TEST_DONE();
}
