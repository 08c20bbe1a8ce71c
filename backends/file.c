/* file:// backend: objects are files under a directory; writes are atomic (temp + rename). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hash.h"
#include "log.h"
#include "backend.h"

#define FILE_CHUNK (1u << 20)

typedef struct {
    stow_backend parent;
    char *root; /* absolute directory, no trailing slash */
} file_backend;

struct stow_put {
    file_backend *fb;
    int fd;
    unsigned flags;
    char path[PATH_MAX];
    char tmp[PATH_MAX];
};

static int object_path(char *out, size_t outsz, const file_backend *fb, const char *name,
                       stow_error *err)
{
    if (!stow_backend_name_ok(name))
        return stow_error_set(err, STOW_ERR, "invalid object name \"%s\"", name);
    int n = snprintf(out, outsz, "%s/%s", fb->root, name);
    if (n < 0 || (size_t)n >= outsz)
        return stow_error_set(err, STOW_ERR, "object path too long: %s/%s", fb->root, name);
    return STOW_OK;
}

/* mkdir -p for the directory part of path. */
static int make_parents(const char *path, stow_error *err)
{
    char buf[PATH_MAX];
    size_t n = strlen(path);
    if (n >= sizeof(buf))
        return stow_error_set(err, STOW_ERR, "path too long: %s", path);
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
            int e = errno;
            *p = '/';
            return stow_error_set(err, STOW_ERR, "cannot create directory %.*s: %s", (int)(p - buf),
                                  buf, strerror(e));
        }
        *p = '/';
    }
    return STOW_OK;
}

static int map_errno(int e)
{
    return (e == ENOENT || e == ENOTDIR) ? STOW_ENOTFOUND
           : (e == EACCES || e == EPERM) ? STOW_EAUTH
                                         : STOW_ERR;
}

static int file_open(stow_backend **out, const stow_backend_opts *opts, stow_error *err)
{
    const char *path = opts->url + strlen("file://");
    if (path[0] != '/')
        return stow_error_set(err, STOW_EUSAGE,
                              "file store URL \"%s\" must name an absolute directory (file:///dir)",
                              opts->url);
    file_backend *fb = calloc(1, sizeof(*fb));
    if (fb == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    fb->root = strdup(path);
    if (fb->root == NULL) {
        free(fb);
        return stow_error_set(err, STOW_ERR, "out of memory");
    }
    size_t n = strlen(fb->root);
    while (n > 1 && fb->root[n - 1] == '/')
        fb->root[--n] = '\0';
    fb->parent.ops = &stow_backend_file_ops;
    *out = &fb->parent;
    return STOW_OK;
}

static void file_free(stow_backend *b)
{
    file_backend *fb = (file_backend *)b;
    if (fb == NULL)
        return;
    free(fb->root);
    free(fb);
}

static int file_get(stow_backend *b, const char *name, uint64_t offset, uint64_t length,
                    stow_sink_fn sink, void *ud, stow_error *err)
{
    file_backend *fb = (file_backend *)b;
    char path[PATH_MAX];
    int rc = object_path(path, sizeof(path), fb, name, err);
    if (rc != STOW_OK)
        return rc;
    int fd = -1;
    char *buf = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return stow_error_set(err, map_errno(e), "%s: %s", path, strerror(e));
    }
    /* As in head: a directory (a prefix of other names) is no object. */
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = stow_error_set(err, STOW_ENOTFOUND, "%s: not a regular file", path);
        goto done;
    }
    stow_debug("file get %s", path);
    buf = malloc(FILE_CHUNK);
    if (buf == NULL) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    uint64_t remaining = length ? length : UINT64_MAX;
    off_t pos = (off_t)offset;
    while (remaining > 0) {
        size_t want = remaining < FILE_CHUNK ? (size_t)remaining : FILE_CHUNK;
        ssize_t n = pread(fd, buf, want, pos);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = stow_error_set(err, STOW_ERR, "%s: read: %s", path, strerror(errno));
            goto done;
        }
        if (n == 0)
            break;
        if (sink(ud, buf, (size_t)n) != 0) {
            if (err && err->code == STOW_OK)
                stow_error_set(err, STOW_ERR, "%s: download aborted by consumer", name);
            rc = err ? err->code : STOW_ERR;
            goto done;
        }
        pos += n;
        remaining -= (uint64_t)n;
    }
    rc = STOW_OK;
done:
    free(buf);
    close(fd);
    return rc;
}

static int file_put_begin(stow_put **out, stow_backend *b, const char *name, int64_t size_hint,
                          unsigned flags, stow_error *err)
{
    (void)size_hint;
    file_backend *fb = (file_backend *)b;
    *out = NULL;
    stow_put *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    p->fb = fb;
    p->fd = -1;
    p->flags = flags;
    int rc = object_path(p->path, sizeof(p->path), fb, name, err);
    if (rc == STOW_OK)
        rc = make_parents(p->path, err);
    if (rc != STOW_OK) {
        free(p);
        return rc;
    }
    char rnd[17];
    stow_random_hex(rnd, 8);
    const char *slash = strrchr(p->path, '/');
    int n = snprintf(p->tmp, sizeof(p->tmp), "%.*s/.%s.%s.tmp", (int)(slash - p->path), p->path,
                     slash + 1, rnd);
    if (n < 0 || (size_t)n >= sizeof(p->tmp)) {
        rc = stow_error_set(err, STOW_ERR, "object path too long: %s", p->path);
        free(p);
        return rc;
    }
    p->fd = open(p->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (p->fd < 0) {
        int e = errno;
        rc = stow_error_set(err, map_errno(e) == STOW_EAUTH ? STOW_EAUTH : STOW_ERR,
                            "cannot create %s: %s", p->tmp, strerror(e));
        free(p);
        return rc;
    }
    stow_debug("file put %s", p->path);
    *out = p;
    return STOW_OK;
}

static int file_put_write(stow_put *p, const void *buf, size_t len, stow_error *err)
{
    const char *c = buf;
    while (len > 0) {
        ssize_t n = write(p->fd, c, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return stow_error_set(err, STOW_ERR, "write %s: %s", p->tmp, strerror(errno));
        c += n;
        len -= (size_t)n;
    }
    return STOW_OK;
}

static void file_put_abort(stow_put *p)
{
    if (p == NULL)
        return;
    if (p->fd >= 0)
        close(p->fd);
    unlink(p->tmp);
    free(p);
}

static int file_put_commit(stow_put *p, stow_error *err)
{
    int rc = STOW_OK;
    if (fsync(p->fd) != 0) {
        rc = stow_error_set(err, STOW_ERR, "fsync %s: %s", p->tmp, strerror(errno));
        goto fail;
    }
    if (close(p->fd) != 0) {
        p->fd = -1;
        rc = stow_error_set(err, STOW_ERR, "close %s: %s", p->tmp, strerror(errno));
        goto fail;
    }
    p->fd = -1;
    if (p->flags & STOW_PUT_IF_ABSENT) {
        /* link() fails atomically when the name exists. */
        if (link(p->tmp, p->path) != 0) {
            int e = errno;
            rc = stow_error_set(err, e == EEXIST ? STOW_EEXIST : STOW_ERR, "%s: %s", p->path,
                                e == EEXIST ? "already exists" : strerror(e));
            goto fail;
        }
        unlink(p->tmp);
    } else if (rename(p->tmp, p->path) != 0) {
        rc = stow_error_set(err, STOW_ERR, "rename %s: %s", p->path, strerror(errno));
        goto fail;
    }
    /* Make the rename durable. */
    char dir[PATH_MAX];
    const char *slash = strrchr(p->path, '/');
    snprintf(dir, sizeof(dir), "%.*s", (int)(slash - p->path), p->path);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(p);
    return STOW_OK;
fail:
    file_put_abort(p);
    return rc;
}

static int file_head(stow_backend *b, const char *name, stow_object_info *info, stow_error *err)
{
    file_backend *fb = (file_backend *)b;
    char path[PATH_MAX];
    int rc = object_path(path, sizeof(path), fb, name, err);
    if (rc != STOW_OK)
        return rc;
    struct stat st;
    if (stat(path, &st) != 0) {
        int e = errno;
        return stow_error_set(err, map_errno(e), "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode))
        return stow_error_set(err, STOW_ENOTFOUND, "%s: not a regular file", path);
    info->size = (uint64_t)st.st_size;
    info->mtime = (int64_t)st.st_mtime;
    return STOW_OK;
}

static int file_del(stow_backend *b, const char *name, stow_error *err)
{
    file_backend *fb = (file_backend *)b;
    char path[PATH_MAX];
    int rc = object_path(path, sizeof(path), fb, name, err);
    if (rc != STOW_OK)
        return rc;
    if (unlink(path) != 0 && errno != ENOENT)
        return stow_error_set(err, STOW_ERR, "delete %s: %s", path, strerror(errno));
    stow_debug("file delete %s", path);
    return STOW_OK;
}

/* Recursive walk: rel is the name relative to the root ("" at the top). */
static int list_dir(file_backend *fb, const char *rel, const char *prefix, stow_list_fn fn,
                    void *ud, int depth, stow_error *err)
{
    char dirpath[PATH_MAX];
    int n = snprintf(dirpath, sizeof(dirpath), "%s%s%s", fb->root, rel[0] ? "/" : "", rel);
    if (n < 0 || (size_t)n >= sizeof(dirpath) || depth > 64)
        return STOW_OK;
    DIR *d = opendir(dirpath);
    if (d == NULL)
        return (errno == ENOENT)
                   ? STOW_OK
                   : stow_error_set(err, STOW_ERR, "list %s: %s", dirpath, strerror(errno));
    int rc = STOW_OK;
    struct dirent *de;
    size_t rl = strlen(rel) + (rel[0] ? 1 : 0), prl = prefix ? strlen(prefix) : 0;
    /* Temp files of interrupted puts (".<name>.<rnd>.tmp") are listed only when the prefix
     * asks for them by name ("layers/."), so prune can remove stale ones. */
    int want_dot = prl > rl && prefix[rl] == '.';
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.' &&
            (!want_dot || strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0))
            continue; /* ".", "..", temp files */
        char name[PATH_MAX];
        n = snprintf(name, sizeof(name), "%s%s%s", rel, rel[0] ? "/" : "", de->d_name);
        if (n < 0 || (size_t)n >= sizeof(name))
            continue;
        /* Prune subtrees that cannot match the prefix. */
        size_t nl = strlen(name), pl = strlen(prefix);
        if (strncmp(name, prefix, nl < pl ? nl : pl) != 0)
            continue;
        char full[PATH_MAX];
        n = snprintf(full, sizeof(full), "%s/%s", fb->root, name);
        if (n < 0 || (size_t)n >= sizeof(full))
            continue;
        struct stat st;
        if (lstat(full, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            rc = list_dir(fb, name, prefix, fn, ud, depth + 1, err);
            if (rc != STOW_OK)
                break;
        } else if (S_ISREG(st.st_mode) && nl >= pl) {
            stow_object_info info = {(uint64_t)st.st_size, (int64_t)st.st_mtime};
            if (fn(ud, name, &info) != 0) {
                rc = 1; /* stop */
                break;
            }
        }
    }
    closedir(d);
    return rc;
}

static int file_list(stow_backend *b, const char *prefix, stow_list_fn fn, void *ud,
                     stow_error *err)
{
    int rc = list_dir((file_backend *)b, "", prefix ? prefix : "", fn, ud, 0, err);
    return rc == 1 ? STOW_OK : rc;
}

const stow_backend_ops stow_backend_file_ops = {
    .version = STOW_BACKEND_VERSION,
    .scheme = "file",
    .open = file_open,
    .get = file_get,
    .put_begin = file_put_begin,
    .put_write = file_put_write,
    .put_commit = file_put_commit,
    .put_abort = file_put_abort,
    .head = file_head,
    .del = file_del,
    .list = file_list,
    .free = file_free,
};
