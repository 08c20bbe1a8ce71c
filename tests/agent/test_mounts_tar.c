/* agent/mounts_tar.c without a Docker engine: pack -> unpack round trip (contents, modes,
 * owners recorded in the owners file and packed again), an empty tar never replaces a
 * directory with content, hostile tars ("..", absolute paths, writing through a link) are
 * refused and leave the host directory as it was. */
#include <archive.h>
#include <archive_entry.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mounts_tar.h"
#include "test.h"

static char base[] = "/tmp/stowage-test-mtar.XXXXXX";

static void put(const char *rel, const char *text, int mode)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", base, rel);
    FILE *f = fopen(p, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
    chmod(p, (mode_t)mode);
}

static int has(const char *rel, const char *text)
{
    char p[512], buf[256] = {0};
    snprintf(p, sizeof(p), "%s/%s", base, rel);
    FILE *f = fopen(p, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strcmp(buf, text) == 0;
}

/* A tar with one directory entry and one file entry of the given names and owners. */
static void make_tar(const char *path, const char *dir, const char *file, long uid)
{
    struct archive *a = archive_write_new();
    archive_write_set_format_gnutar(a);
    archive_write_open_filename(a, path);
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, dir);
    archive_entry_set_filetype(e, AE_IFDIR);
    archive_entry_set_perm(e, 0755);
    archive_entry_set_uid(e, uid);
    archive_write_header(a, e);
    archive_entry_clear(e);
    archive_entry_set_pathname(e, file);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0640);
    archive_entry_set_uid(e, uid);
    archive_entry_set_gid(e, uid);
    archive_entry_set_size(e, 3);
    archive_write_header(a, e);
    archive_write_data(a, "hi\n", 3);
    archive_entry_free(e);
    archive_write_close(a);
    archive_write_free(a);
}

int main(void)
{
    CHECK(mkdtemp(base) != NULL);
    char src[600], dst[600], tar[600], p[700];
    snprintf(src, sizeof(src), "%s/src", base);
    snprintf(dst, sizeof(dst), "%s/dst", base);
    snprintf(tar, sizeof(tar), "%s/m.tar", base);
    mkdir(src, 0755);
    mkdir(dst, 0755);
    put("src/a.whl", "wheel\n", 0644);
    snprintf(p, sizeof(p), "%s/sub", src);
    mkdir(p, 0750);
    put("src/sub/b", "bee\n", 0600);
    stow_mount m = {
        .name = "x", .host = src, .id = "x", .target = "/x", .uid = -1, .gid = -1, .mode = -1};
    stow_error err = {0};
    uint64_t files = 0;

    /* src -> tar -> dst */
    CHECK_INT(stow_mounts_pack(&files, &m, tar, &err), STOW_OK);
    CHECK_INT(files, 4); /* root, a.whl, sub, sub/b */
    stow_mount d = m;
    d.host = dst;
    files = 0;
    CHECK_INT(stow_mounts_unpack(&files, &d, tar, &err), STOW_OK);
    CHECK(has("dst/a.whl", "wheel\n") && has("dst/sub/b", "bee\n"));
    struct stat st;
    snprintf(p, sizeof(p), "%s/sub", dst);
    CHECK(stat(p, &st) == 0 && (st.st_mode & 07777) == 0750);
    snprintf(p, sizeof(p), "%s/" STOW_MOUNTS_META, dst);
    CHECK(access(p, F_OK) == 0);

    /* Owners from the builder are recorded, and packed again from the record. */
    make_tar(tar, "./d", "./d/f", 1000);
    CHECK_INT(stow_mounts_unpack(&files, &d, tar, &err), STOW_OK);
    CHECK(has("dst/d/f", "hi\n"));
    CHECK(!has("dst/a.whl", "wheel\n")); /* the host dir now mirrors the mount */
    stow_buf meta;
    CHECK_INT(stow_mounts_read_file(&meta, p, 1 << 20, &err), STOW_OK);
    CHECK(strstr(stow_buf_str(&meta), "\"d/f\"") != NULL &&
          strstr(stow_buf_str(&meta), "1000") != NULL);
    stow_buf_free(&meta);
    char tar2[700];
    snprintf(tar2, sizeof(tar2), "%s/again.tar", base);
    files = 0;
    CHECK_INT(stow_mounts_pack(&files, &d, tar2, &err), STOW_OK);
    struct archive *a = archive_read_new();
    archive_read_support_format_tar(a);
    archive_read_support_format_gnutar(a);
    CHECK(archive_read_open_filename(a, tar2, 16384) == ARCHIVE_OK);
    struct archive_entry *e;
    int found = 0, meta_packed = 0;
    while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
        if (strcmp(archive_entry_pathname(e), "./d/f") == 0)
            found = archive_entry_uid(e) == 1000 && archive_entry_gid(e) == 1000 &&
                    (archive_entry_uname(e) == NULL || archive_entry_uname(e)[0] == '\0');
        if (strstr(archive_entry_pathname(e), STOW_MOUNTS_META) != NULL)
            meta_packed = 1;
    }
    archive_read_free(a);
    CHECK(found);
    CHECK(!meta_packed);

    /* An empty mount keeps the host directory. */
    make_tar(tar, ".", "./.stowage-mount.json", 0);
    CHECK_INT(stow_mounts_unpack(&files, &d, tar, &err), STOW_OK);
    CHECK(has("dst/d/f", "hi\n"));

    /* Hostile tars: refused, the host directory unchanged, no staging left behind. */
    static const char *const bad[][2] = {{"./d", "./../escape"},
                                         {"./d", "/etc/stowage-test"},
                                         {"./d", "./d/../../x"}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        make_tar(tar, bad[i][0], bad[i][1], 0);
        stow_error e2 = {0};
        CHECK_INT(stow_mounts_unpack(&files, &d, tar, &e2), STOW_ECORRUPT);
        CHECK(has("dst/d/f", "hi\n"));
    }
    snprintf(p, sizeof(p), "%s/escape", base);
    CHECK(access(p, F_OK) != 0);
    CHECK(access("/etc/stowage-test", F_OK) != 0);

    /* A link in the tree, then a file written through it: refused. */
    struct archive *w = archive_write_new();
    archive_write_set_format_gnutar(w);
    archive_write_open_filename(w, tar);
    e = archive_entry_new();
    archive_entry_set_pathname(e, "./l");
    archive_entry_set_filetype(e, AE_IFLNK);
    archive_entry_set_symlink(e, base);
    archive_entry_set_perm(e, 0777);
    archive_write_header(w, e);
    archive_entry_clear(e);
    archive_entry_set_pathname(e, "./l/through");
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, 0);
    archive_write_header(w, e);
    archive_entry_free(e);
    archive_write_close(w);
    archive_write_free(w);
    /* libarchive either refuses it or replaces the link by a directory (ARCHIVE_EXTRACT_UNLINK):
     * nothing is written outside the tree either way. */
    stow_error e3 = {0};
    int rc3 = stow_mounts_unpack(&files, &d, tar, &e3);
    snprintf(p, sizeof(p), "%s/through", base);
    CHECK(access(p, F_OK) != 0);
    snprintf(p, sizeof(p), "%s/l", dst);
    CHECK(rc3 != STOW_OK ? has("dst/d/f", "hi\n") : (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)));

    stow_mounts_remove_tree(base);
    CHECK(access(base, F_OK) != 0);
    TEST_DONE();
}
