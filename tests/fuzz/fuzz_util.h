/* Helpers shared by the libFuzzer harnesses: a private temporary directory and a remover that
 * never follows a symlink (the unpack harness restores hostile trees into it). Header-only so
 * each harness stays one file plus this. */
#ifndef STOW_FUZZ_UTIL_H
#define STOW_FUZZ_UTIL_H

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A fresh directory under $TMPDIR (or /tmp), removed at exit. Aborts on failure: a harness
 * that cannot set itself up must not report "no crash". */
static char fuzz_tmp_base[512];

static void fuzz_rm_at(int dirfd, const char *name)
{
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        fchmodat(dirfd, name, 0700, 0); /* restored modes may forbid reading or writing */
        int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0) {
            DIR *d = fdopendir(fd);
            if (d == NULL) {
                close(fd);
            } else {
                struct dirent *de;
                while ((de = readdir(d)) != NULL)
                    if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
                        fuzz_rm_at(fd, de->d_name);
                closedir(d);
            }
        }
        unlinkat(dirfd, name, AT_REMOVEDIR);
    } else {
        unlinkat(dirfd, name, 0);
    }
}

/* rm -rf of an absolute path, symlinks removed not followed. */
static void fuzz_rm_tree(const char *path) { fuzz_rm_at(AT_FDCWD, path); }

static void fuzz_tmp_cleanup(void)
{
    if (fuzz_tmp_base[0] != '\0')
        fuzz_rm_tree(fuzz_tmp_base);
}

static const char *fuzz_tmp_dir(const char *what)
{
    if (fuzz_tmp_base[0] != '\0')
        return fuzz_tmp_base;
    /* $TMPDIR, else /dev/shm: the restore path fsyncs, and on a tmpfs that costs nothing
     * (3x more runs per second on an idle disk, 20x on a busy one). */
    const char *t = getenv("TMPDIR");
    if (t == NULL || t[0] == '\0')
        t = access("/dev/shm", W_OK | X_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(fuzz_tmp_base, sizeof(fuzz_tmp_base), "%s/stow-fuzz-%s-XXXXXX", t, what);
    if (mkdtemp(fuzz_tmp_base) == NULL) {
        perror("mkdtemp");
        abort();
    }
    atexit(fuzz_tmp_cleanup);
    return fuzz_tmp_base;
}

/* Writes len bytes to path (created or truncated); aborts on failure. */
static void fuzz_write_file(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL || (len > 0 && fwrite(buf, 1, len, f) != len) || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

#endif
