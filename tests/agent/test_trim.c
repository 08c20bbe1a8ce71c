/* Unit tests for agent/trim.c: the policy (unread counts, what is trimmed and what never is),
 * the atime marker and the canary on a real directory, the save-side observation end to end
 * (mark, a build that reads some files, apply), the build status parser and dead weight. */
#include <fcntl.h>
#include <dirent.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "scan.h"
#include "test.h"
#include "trim.h"

#define ID0 "0123456789abcdef0123456789abcdef"

static char base[PATH_MAX];

static void add(stow_manifest *m, uint32_t root, const char *path, char type, uint64_t size,
                int64_t mtime, int32_t layer, uint32_t unread)
{
    stow_error err = {0};
    stow_file_entry e = {.root = root,
                         .path = (char *)path,
                         .type = type,
                         .mode = 0644,
                         .size = size,
                         .mtime = mtime,
                         .layer = layer,
                         .unread = unread};
    CHECK_INT(stow_manifest_add_file(m, &e, &err), STOW_OK);
}

static stow_manifest *new_manifest(const char *key)
{
    stow_error err = {0};
    stow_manifest *m = stow_manifest_new();
    CHECK_INT(stow_manifest_set_key(m, key, "main", &err), STOW_OK);
    CHECK_INT(stow_manifest_add_root(m, "~/c", &err), STOW_OK);
    return m;
}

/* parent: a (unread 1), b (unread 2), c (0), d (0), x (unread 9), u (unread 5).
 * scan:   the same files, d rewritten (new mtime), e new, f new and marked (a leftover). */
static void fixture(stow_manifest **pm, stow_manifest **sm)
{
    stow_error err = {0};
    stow_manifest *parent = new_manifest("k");
    stow_layer *l = stow_manifest_add_layer(parent, &err);
    memcpy(l->id, ID0, sizeof(ID0));
    add(parent, 0, "a", STOW_FT_FILE, 10, 100, 0, 1);
    add(parent, 0, "b", STOW_FT_FILE, 20, 100, 0, 2);
    add(parent, 0, "c", STOW_FT_FILE, 30, 100, 0, 0);
    add(parent, 0, "d", STOW_FT_FILE, 40, 100, 0, 0);
    add(parent, 0, "u", STOW_FT_FILE, 60, 100, 0, 5);
    add(parent, 0, "x", STOW_FT_FILE, 50, 100, 0, 9);
    stow_manifest_sort(parent);
    stow_manifest *scan = new_manifest("k");
    add(scan, 0, "a", STOW_FT_FILE, 10, 100, -1, 0);
    add(scan, 0, "b", STOW_FT_FILE, 20, 100, -1, 0);
    add(scan, 0, "c", STOW_FT_FILE, 30, 100, -1, 0);
    add(scan, 0, "d", STOW_FT_FILE, 40, 200, -1, 0);
    add(scan, 0, "dir", STOW_FT_DIR, 0, 100, -1, 0);
    add(scan, 0, "e", STOW_FT_FILE, 70, 100, -1, 0);
    add(scan, 0, "f", STOW_FT_FILE, 80, 100, -1, 0);
    add(scan, 0, "u", STOW_FT_FILE, 60, 100, -1, 0);
    add(scan, 0, "x", STOW_FT_FILE, 50, 100, -1, 0);
    stow_manifest_sort(scan);
    *pm = parent;
    *sm = scan;
}

/* In the scan's (sorted) order: a b c d dir e f u x. x is under a buildx cache (NONE), u's
 * root is not tracked (UNKNOWN). */
static const stow_trim_use uses[] = {STOW_USE_UNREAD,   STOW_USE_UNREAD,  STOW_USE_READ,
                                     STOW_USE_UNREAD,   STOW_USE_NONE,    STOW_USE_READ,
                                     STOW_USE_LEFTOVER, STOW_USE_UNKNOWN, STOW_USE_NONE};

static uint32_t unread_of(const stow_manifest *m, const char *path)
{
    const stow_file_entry *e = stow_manifest_find(m, 0, path);
    return e ? e->unread : 12345;
}

static void test_policy(void)
{
    stow_error err = {0};
    stow_manifest *parent, *m;

    /* after = 3: b reaches 3 and goes; a goes to 2; c read; d written; the leftover f stays out;
     * u (unknown) keeps its 5 and stays; x (buildx) is never counted. */
    fixture(&parent, &m);
    stow_trim_stats st = {0};
    stow_trim_dropped *d = NULL;
    stow_trim_policy pol = {.after = 3, .enabled = 1};
    CHECK_INT(stow_trim_plan(&st, &d, m, parent, uses, &pol, &err), STOW_OK);
    CHECK_INT(m->nfiles, 7);
    CHECK(stow_manifest_find(m, 0, "b") == NULL);
    CHECK(stow_manifest_find(m, 0, "f") == NULL);
    CHECK_INT(unread_of(m, "a"), 2);
    CHECK_INT(unread_of(m, "c"), 0);
    CHECK_INT(unread_of(m, "d"), 0);
    CHECK_INT(unread_of(m, "e"), 0);
    CHECK_INT(unread_of(m, "u"), 5);
    CHECK_INT(unread_of(m, "x"), 0);
    CHECK_INT(st.files_trimmed, 1);
    CHECK_INT(st.bytes_trimmed, 20);
    CHECK_INT(st.files_kept_out, 1);
    CHECK_INT(st.bytes_kept_out, 80);
    CHECK_INT(st.files_unread, 1);
    CHECK_INT(st.bytes_unread, 10);
    CHECK(st.counts_changed && st.trimming);
    for (size_t i = 1; i < m->nfiles; i++)
        CHECK(strcmp(m->files[i - 1].path, m->files[i].path) < 0);
    stow_trim_remove_local(NULL, NULL); /* nothing to do */
    stow_trim_dropped_free(d);
    stow_manifest_free(m);
    stow_manifest_free(parent);

    /* A failed build: nothing trimmed, unread counts do not advance (reads still reset). */
    fixture(&parent, &m);
    memset(&st, 0, sizeof(st));
    stow_trim_policy failed = {.after = 3, .enabled = 1, .build_failed = 1};
    CHECK_INT(stow_trim_plan(&st, NULL, m, parent, uses, &failed, &err), STOW_OK);
    CHECK_INT(m->nfiles, 9);
    CHECK_INT(unread_of(m, "a"), 1);
    CHECK_INT(unread_of(m, "b"), 2);
    CHECK_INT(unread_of(m, "f"), 0);
    CHECK_INT(st.files_trimmed + st.files_kept_out, 0);
    CHECK(!st.trimming);
    stow_manifest_free(m);
    stow_manifest_free(parent);

    /* --no-trim and trim_unused_after = 0: counts advance, nothing leaves. */
    stow_trim_policy off[] = {{.after = 3, .enabled = 0}, {.after = 0, .enabled = 1}};
    for (size_t k = 0; k < 2; k++) {
        fixture(&parent, &m);
        memset(&st, 0, sizeof(st));
        CHECK_INT(stow_trim_plan(&st, NULL, m, parent, uses, &off[k], &err), STOW_OK);
        CHECK_INT(m->nfiles, 9);
        CHECK_INT(unread_of(m, "b"), 3);
        CHECK_INT(unread_of(m, "a"), 2);
        CHECK_INT(st.files_trimmed, 0);
        stow_manifest_free(m);
        stow_manifest_free(parent);
    }

    /* after = 1 trims every unread file of the parent at once, never a read, written, unknown
     * or buildx one. */
    fixture(&parent, &m);
    memset(&st, 0, sizeof(st));
    stow_trim_policy one = {.after = 1, .enabled = 1};
    CHECK_INT(stow_trim_plan(&st, NULL, m, parent, uses, &one, &err), STOW_OK);
    CHECK(stow_manifest_find(m, 0, "a") == NULL && stow_manifest_find(m, 0, "b") == NULL);
    CHECK(stow_manifest_find(m, 0, "c") && stow_manifest_find(m, 0, "d") &&
          stow_manifest_find(m, 0, "u") && stow_manifest_find(m, 0, "x") &&
          stow_manifest_find(m, 0, "e"));
    CHECK_INT(st.files_trimmed, 2);
    stow_manifest_free(m);
    stow_manifest_free(parent);

    /* Nothing differs: counts_changed stays 0 (no manifest rewrite for nothing). */
    fixture(&parent, &m);
    memset(&st, 0, sizeof(st));
    stow_trim_use all_read[9];
    for (size_t i = 0; i < 9; i++)
        all_read[i] = STOW_USE_READ;
    for (size_t i = 0; i < parent->nfiles; i++)
        parent->files[i].unread = 0;
    CHECK_INT(stow_trim_plan(&st, NULL, m, parent, all_read, &pol, &err), STOW_OK);
    CHECK(!st.counts_changed);
    stow_manifest_free(m);
    stow_manifest_free(parent);
}

static void write_file(const char *path, size_t n)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        fputc('a' + (int)(i % 26), f);
    fclose(f);
}

static void read_file(const char *path)
{
    char buf[64];
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    if (fd >= 0) {
        CHECK(read(fd, buf, sizeof(buf)) > 0);
        close(fd);
    }
}

static int marked(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 && stow_trim_is_marked(&st);
}

static void test_marker_and_canary(void)
{
    stow_error err = {0};
    char dir[PATH_MAX], f[PATH_MAX], why[256] = "";
    snprintf(dir, sizeof(dir), "%s/mark", base);
    mkdir(dir, 0755);
    snprintf(f, sizeof(f), "%s/file", dir);
    write_file(f, 100);
    CHECK(!marked(f));
    struct stat before, after;
    CHECK(lstat(f, &before) == 0);
    CHECK_INT(stow_trim_mark_path(f, &err), STOW_OK);
    CHECK(marked(f));
    CHECK(lstat(f, &after) == 0);
    CHECK(after.st_mtim.tv_sec == before.st_mtim.tv_sec &&
          after.st_mtim.tv_nsec == before.st_mtim.tv_nsec);
    CHECK(after.st_atim.tv_sec < after.st_mtim.tv_sec);
    read_file(f);
    int moved = !marked(f);
    /* The canary must agree with what a plain read just did here, and leave nothing behind. */
    int c = stow_trim_canary(dir, why, sizeof(why));
    CHECK_INT(c, moved);
    if (!moved)
        CHECK(strstr(why, "noatime") != NULL);
    fprintf(stderr, "atime moves on %s: %d\n", dir, moved);
    int entries = 0;
    DIR *dp = opendir(dir);
    struct dirent *de;
    while (dp && (de = readdir(dp)) != NULL)
        entries += de->d_name[0] != '.';
    if (dp)
        closedir(dp);
    CHECK_INT(entries, 1);
    CHECK_INT(stow_trim_canary("/nonexistent-dir-for-canary", why, sizeof(why)), -1);
    CHECK(strstr(why, "canary") != NULL);
}

/* Mark (as restore does), a "build" reads some files and writes one, then apply. */
static void test_apply(void)
{
    stow_error err = {0};
    char root[PATH_MAX], bxroot[PATH_MAX], state[PATH_MAX], path[PATH_MAX];
    snprintf(root, sizeof(root), "%s/c", base);
    snprintf(bxroot, sizeof(bxroot), "%s/bx", base);
    snprintf(state, sizeof(state), "%s/state", base);
    mkdir(root, 0755);
    mkdir(bxroot, 0755);
    const char *names[] = {"A.deb", "B.deb", "C.deb", "W.deb"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(path, sizeof(path), "%s/%s", root, names[i]);
        write_file(path, 1000 * (i + 1));
    }
    snprintf(path, sizeof(path), "%s/oci-layout", bxroot);
    write_file(path, 30);
    snprintf(path, sizeof(path), "%s/index.json", bxroot);
    write_file(path, 40);

    stow_strlist paths = {0};
    CHECK_INT(stow_strlist_add(&paths, "~/c", &err), STOW_OK);
    CHECK_INT(stow_strlist_add(&paths, "~/bx", &err), STOW_OK);
    char *abs[] = {root, bxroot};
    stow_cache_params p = {.store_url = "file:///nowhere",
                           .key = "k",
                           .scope = "main",
                           .paths = &paths,
                           .abs_paths = abs,
                           .state_dir = state,
                           .trim_unused_after = 1,
                           .trim = 1};

    /* The parent: a scan of what "restore" put there. */
    stow_manifest *parent = NULL, *m = NULL;
    parent = stow_manifest_new();
    CHECK_INT(stow_manifest_set_key(parent, "k", "main", &err), STOW_OK);
    CHECK_INT(stow_manifest_add_root(parent, "~/c", &err), STOW_OK);
    CHECK_INT(stow_manifest_add_root(parent, "~/bx", &err), STOW_OK);
    CHECK_INT(stow_scan_root(parent, 0, root, &err), STOW_OK);
    CHECK_INT(stow_scan_root(parent, 1, bxroot, &err), STOW_OK);
    stow_manifest_sort(parent);
    stow_layer *l = stow_manifest_add_layer(parent, &err);
    memcpy(l->id, ID0, sizeof(ID0));
    for (size_t i = 0; i < parent->nfiles; i++)
        parent->files[i].layer = 0;

    /* Without marks, nothing is known and nothing trimmed. */
    stow_trim_stats st;
    stow_trim_dropped *d = NULL;
    m = stow_manifest_new();
    CHECK_INT(stow_manifest_set_key(m, "k", "main", &err), STOW_OK);
    CHECK_INT(stow_manifest_add_root(m, "~/c", &err), STOW_OK);
    CHECK_INT(stow_manifest_add_root(m, "~/bx", &err), STOW_OK);
    CHECK_INT(stow_scan_root(m, 0, root, &err), STOW_OK);
    CHECK_INT(stow_scan_root(m, 1, bxroot, &err), STOW_OK);
    stow_manifest_sort(m);
    CHECK_INT(stow_trim_apply(&st, &d, m, parent, &p, &err), STOW_OK);
    CHECK(!st.tracked && strstr(st.why, "no restore marked") != NULL);
    CHECK_INT(m->nfiles, 6);
    stow_trim_dropped_free(d);
    stow_manifest_free(m);

    stow_trim_mark_restored(parent, abs, &p, NULL);
    char why[256];
    if (stow_trim_canary(root, why, sizeof(why)) != 1) {
        fprintf(stderr, "skipping the apply checks: %s\n", why);
        stow_strlist_free(&paths);
        stow_manifest_free(parent);
        return;
    }
    snprintf(path, sizeof(path), "%s/%s", root, "A.deb");
    CHECK(marked(path));
    read_file(path);
    snprintf(path, sizeof(path), "%s/%s", root, "C.deb");
    read_file(path);
    snprintf(path, sizeof(path), "%s/%s", root, "W.deb");
    write_file(path, 4000); /* written: a new mtime */
    struct timespec later[2] = {{0, UTIME_OMIT}, {2000000000, 0}};
    utimensat(AT_FDCWD, path, later, 0);

    m = stow_manifest_new();
    CHECK_INT(stow_manifest_set_key(m, "k", "main", &err), STOW_OK);
    CHECK_INT(stow_manifest_add_root(m, "~/c", &err), STOW_OK);
    CHECK_INT(stow_manifest_add_root(m, "~/bx", &err), STOW_OK);
    CHECK_INT(stow_scan_root(m, 0, root, &err), STOW_OK);
    CHECK_INT(stow_scan_root(m, 1, bxroot, &err), STOW_OK);
    stow_manifest_sort(m);
    CHECK_INT(stow_trim_apply(&st, &d, m, parent, &p, &err), STOW_OK);
    CHECK(st.tracked);
    /* Only B (unread, unchanged) goes; the unread buildx files stay. */
    CHECK_INT(st.files_trimmed, 1);
    CHECK_INT(st.bytes_trimmed, 2000);
    CHECK(stow_manifest_find(m, 0, "B.deb") == NULL);
    CHECK(stow_manifest_find(m, 0, "A.deb") && stow_manifest_find(m, 0, "C.deb") &&
          stow_manifest_find(m, 0, "W.deb"));
    CHECK(stow_manifest_find(m, 1, "oci-layout") && stow_manifest_find(m, 1, "index.json"));
    /* trim_local removes B (still unread), nothing else. */
    stow_trim_remove_local(d, &p);
    snprintf(path, sizeof(path), "%s/B.deb", root);
    CHECK(access(path, F_OK) != 0);
    snprintf(path, sizeof(path), "%s/A.deb", root);
    CHECK(access(path, F_OK) == 0);
    stow_trim_dropped_free(d);
    stow_manifest_free(m);

    /* Marks for another entry do not count for this parent. */
    CHECK_INT(stow_manifest_set_key(parent, "other", "main", &err), STOW_OK);
    m = stow_manifest_new();
    CHECK_INT(stow_manifest_set_key(m, "k", "main", &err), STOW_OK);
    CHECK_INT(stow_manifest_add_root(m, "~/c", &err), STOW_OK);
    CHECK_INT(stow_manifest_add_root(m, "~/bx", &err), STOW_OK);
    CHECK_INT(stow_scan_root(m, 0, root, &err), STOW_OK);
    stow_manifest_sort(m);
    CHECK_INT(stow_trim_apply(&st, &d, m, parent, &p, &err), STOW_OK);
    CHECK(!st.tracked && st.files_trimmed == 0);
    stow_trim_dropped_free(d);
    stow_manifest_free(m);

    stow_strlist_free(&paths);
    stow_manifest_free(parent);
}

static void test_build_status(void)
{
    CHECK_INT(stow_trim_parse_build_status(NULL), 0);
    CHECK_INT(stow_trim_parse_build_status(""), 0);
    CHECK_INT(stow_trim_parse_build_status("success"), 0);
    CHECK_INT(stow_trim_parse_build_status("Success"), 0);
    CHECK_INT(stow_trim_parse_build_status("0"), 0);
    CHECK_INT(stow_trim_parse_build_status("failed"), 1);
    CHECK_INT(stow_trim_parse_build_status("failure"), 1);
    CHECK_INT(stow_trim_parse_build_status("canceled"), 1);
    CHECK_INT(stow_trim_parse_build_status("cancelled"), 1);
    CHECK_INT(stow_trim_parse_build_status("2"), 1);
    CHECK_INT(stow_trim_parse_build_status("137"), 1);
    CHECK_INT(stow_trim_parse_build_status("maybe"), -1);
    CHECK_INT(stow_trim_parse_build_status("-1"), -1);
    CHECK_INT(stow_trim_parse_build_status("256"), -1);
    CHECK_INT(stow_trim_parse_build_status("1x"), -1);
}

static void test_dead_weight(void)
{
    stow_manifest *parent, *m;
    fixture(&parent, &m);
    uint64_t files, bytes;
    stow_trim_dead_weight(&files, &bytes, parent, 2);
    CHECK_INT(files, 3); /* b (2), u (5), x (9) */
    CHECK_INT(bytes, 130);
    stow_trim_dead_weight(&files, &bytes, parent, 6);
    CHECK_INT(files, 1);
    CHECK_INT(bytes, 50);
    stow_trim_dead_weight(&files, &bytes, m, 1);
    CHECK_INT(files, 0);
    stow_manifest_free(m);
    stow_manifest_free(parent);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

int main(void)
{
    stow_log_set_level(STOW_LOG_WARN);
    snprintf(base, sizeof(base), "%s/stow-trim-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (mkdtemp(base) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    test_policy();
    test_marker_and_canary();
    test_apply();
    test_build_status();
    test_dead_weight();
    nftw(base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    TEST_DONE();
}
