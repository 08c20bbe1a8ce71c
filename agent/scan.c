#include "scan.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "paths.h"

#define MAX_DEPTH 256

int stow_scan_is_temp_name(const char *name)
{
    size_t n = strlen(name);
    size_t pl = strlen(STOW_TEMP_PREFIX), sl = strlen(STOW_TEMP_SUFFIX);
    return n > pl + sl && strncmp(name, STOW_TEMP_PREFIX, pl) == 0 &&
           strcmp(name + n - sl, STOW_TEMP_SUFFIX) == 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* dirfd is owned (closed here). rel is the directory's path below the root ("" for the root). */
static int walk(stow_manifest *m, uint32_t ri, int dirfd, const char *abs_root, const char *rel,
                int depth, stow_error *err)
{
    int rc = STOW_ERR;
    DIR *d = NULL;
    char **names = NULL;
    size_t nnames = 0, cap = 0;

    if (depth > MAX_DEPTH) {
        close(dirfd);
        return stow_error_set(err, STOW_ERR, "%s/%s: directories nested deeper than %d", abs_root,
                              rel, MAX_DEPTH);
    }
    d = fdopendir(dirfd);
    if (d == NULL) {
        close(dirfd);
        return stow_error_set(err, STOW_ERR, "%s/%s: %s", abs_root, rel, strerror(errno));
    }
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
            stow_scan_is_temp_name(de->d_name))
            continue;
        if (nnames == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            char **nn = realloc(names, ncap * sizeof(*nn));
            if (nn == NULL)
                goto oom;
            names = nn;
            cap = ncap;
        }
        if ((names[nnames] = strdup(de->d_name)) == NULL)
            goto oom;
        nnames++;
    }
    if (nnames > 1)
        qsort(names, nnames, sizeof(*names), cmp_str);
    for (size_t i = 0; i < nnames; i++) {
        char path[PATH_MAX];
        int n = snprintf(path, sizeof(path), "%s%s%s", rel, rel[0] ? "/" : "", names[i]);
        if (n < 0 || (size_t)n >= sizeof(path) - 1) {
            rc = stow_error_set(err, STOW_ERR, "%s/%s/%s: path too long", abs_root, rel, names[i]);
            goto done;
        }
        struct stat st;
        if (fstatat(dirfd, names[i], &st, AT_SYMLINK_NOFOLLOW) != 0) {
            if (errno == ENOENT)
                continue; /* vanished while scanning */
            rc = stow_error_set(err, STOW_ERR, "%s/%s: %s", abs_root, path, strerror(errno));
            goto done;
        }
        stow_file_entry e = {.root = ri,
                             .path = path,
                             .mode = (uint32_t)(st.st_mode & 07777),
                             .mtime = (int64_t)st.st_mtim.tv_sec,
                             .mtime_ns = (int32_t)st.st_mtim.tv_nsec,
                             .layer = -1};
        char target[PATH_MAX];
        if (S_ISREG(st.st_mode)) {
            e.type = STOW_FT_FILE;
            e.size = (uint64_t)st.st_size;
        } else if (S_ISDIR(st.st_mode)) {
            e.type = STOW_FT_DIR;
        } else if (S_ISLNK(st.st_mode)) {
            ssize_t tl = readlinkat(dirfd, names[i], target, sizeof(target) - 1);
            if (tl < 0) {
                rc = stow_error_set(err, STOW_ERR, "%s/%s: readlink: %s", abs_root, path,
                                    strerror(errno));
                goto done;
            }
            target[tl] = '\0';
            if (!stow_path_link_ok(path, target)) {
                stow_warn("%s/%s: skipping symlink to %s, which points outside the cache directory",
                          abs_root, path, target);
                continue;
            }
            e.type = STOW_FT_LINK;
            e.target = target;
        } else {
            stow_warn("%s/%s: skipping special file (socket, fifo or device)", abs_root, path);
            continue;
        }
        if (stow_manifest_add_file(m, &e, err) != STOW_OK)
            goto done;
        if (e.type == STOW_FT_DIR) {
            int sub = openat(dirfd, names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0) {
                rc = stow_error_set(err, STOW_ERR, "%s/%s: %s", abs_root, path, strerror(errno));
                goto done;
            }
            if (walk(m, ri, sub, abs_root, path, depth + 1, err) != STOW_OK)
                goto done;
        }
    }
    rc = STOW_OK;
    goto done;
oom:
    rc = stow_error_set(err, STOW_ERR, "out of memory while scanning %s", abs_root);
done:
    for (size_t i = 0; i < nnames; i++)
        free(names[i]);
    free(names);
    closedir(d);
    return rc;
}

int stow_scan_root(stow_manifest *m, uint32_t root_index, const char *abs_root, stow_error *err)
{
    int fd = open(abs_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            stow_warn("%s does not exist; nothing to save from it", abs_root);
            return STOW_OK;
        }
        return stow_error_set(err, STOW_ERR, "%s: %s", abs_root, strerror(errno));
    }
    return walk(m, root_index, fd, abs_root, "", 0, err);
}
