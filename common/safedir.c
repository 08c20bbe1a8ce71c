#include "safedir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

int stow_safedir_open(int rootfd, const char *dirrel, int create, stow_safedir_created_fn created,
                      void *ud, stow_error *err)
{
    int fd = fcntl(rootfd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        return stow_error_set(err, STOW_ERR, "dup: %s", strerror(errno)), -1;
    const char *p = dirrel;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        char comp[NAME_MAX + 1];
        if (n == 0 || n > NAME_MAX || (n == 1 && p[0] == '.') ||
            (n == 2 && p[0] == '.' && p[1] == '.')) {
            close(fd);
            return stow_error_set(err, STOW_ECORRUPT, "bad path component in %s", dirrel), -1;
        }
        memcpy(comp, p, n);
        comp[n] = '\0';
        int sub = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0 && errno == ENOENT && create) {
            if (mkdirat(fd, comp, 0755) == 0) {
                if (created != NULL) {
                    char made[PATH_MAX];
                    size_t upto = (size_t)(p + n - dirrel);
                    if (upto < sizeof(made)) {
                        memcpy(made, dirrel, upto);
                        made[upto] = '\0';
                        created(ud, made);
                    }
                }
            } else if (errno != EEXIST) {
                int e = errno;
                close(fd);
                return stow_error_set(err, STOW_ERR, "cannot create directory %s: %s", dirrel,
                                      strerror(e)),
                       -1;
            }
            sub = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        if (sub < 0) {
            int e = errno;
            close(fd);
            if (e == ELOOP || e == ENOTDIR)
                return stow_error_set(
                           err, STOW_ECORRUPT,
                           "refusing to write through %s: a component is a symlink or not a directory",
                           dirrel),
                       -1;
            return stow_error_set(err, e == ENOENT ? STOW_ENOTFOUND : STOW_ERR, "%s: %s", dirrel,
                                  strerror(e)),
                   -1;
        }
        close(fd);
        fd = sub;
        p += n;
        if (*p == '/')
            p++;
    }
    return fd;
}

int stow_safedir_cache_get(stow_safedir_cache *c, int rootfd, const char *dirrel, int create,
                           stow_safedir_created_fn created, void *ud, stow_error *err)
{
    if (c->fd >= 0 && c->rootfd == rootfd && strcmp(c->rel, dirrel) == 0)
        return c->fd;
    stow_safedir_cache_close(c);
    if (stow_strlcpy(c->rel, dirrel, sizeof(c->rel)) != 0)
        return stow_error_set(err, STOW_ECORRUPT, "path too long: %.200s...", dirrel), -1;
    c->fd = stow_safedir_open(rootfd, dirrel, create, created, ud, err);
    c->rootfd = rootfd;
    return c->fd;
}

void stow_safedir_cache_close(stow_safedir_cache *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->rootfd = -1;
    c->rel[0] = '\0';
}

static void walk_truncate(stow_safedir_walk *w, size_t keep)
{
    if (w->deep_fd >= 0)
        close(w->deep_fd);
    w->deep_fd = -1;
    while (w->depth > keep)
        close(w->fds[--w->depth]);
    w->len = w->depth ? w->ends[w->depth - 1] : 0;
}

void stow_safedir_walk_close(stow_safedir_walk *w)
{
    walk_truncate(w, 0);
    w->rootfd = -1;
}

int stow_safedir_walk_get(stow_safedir_walk *w, int rootfd, const char *dir, size_t dirlen,
                          stow_error *err)
{
    if (rootfd != w->rootfd) {
        stow_safedir_walk_close(w);
        w->rootfd = rootfd;
    }
    if (dirlen == 0)
        return rootfd;
    if (dirlen == w->len && memcmp(w->rel, dir, dirlen) == 0 && (w->deep_fd >= 0 || w->depth > 0))
        return w->deep_fd >= 0 ? w->deep_fd : w->fds[w->depth - 1];
    if (dirlen >= sizeof(w->rel))
        return stow_error_set(err, STOW_ECORRUPT, "path too long: %.200s...", dir), -1;
    /* Keep the components shared with the last directory. */
    size_t lcp = 0, max = dirlen < w->len ? dirlen : w->len;
    while (lcp < max && w->rel[lcp] == dir[lcp])
        lcp++;
    size_t keep = 0;
    while (keep < w->depth && w->ends[keep] <= lcp &&
           (w->ends[keep] == dirlen || dir[w->ends[keep]] == '/'))
        keep++;
    walk_truncate(w, keep);
    memcpy(w->rel, dir, dirlen);
    w->rel[dirlen] = '\0';
    size_t pos = keep ? w->ends[keep - 1] + 1 : 0;
    int parent = keep ? w->fds[keep - 1] : rootfd;
    while (pos < dirlen) {
        const char *c = dir + pos;
        const char *slash = memchr(c, '/', dirlen - pos);
        size_t n = slash ? (size_t)(slash - c) : dirlen - pos;
        char comp[NAME_MAX + 1];
        if (n == 0 || n > NAME_MAX || (n == 1 && c[0] == '.') ||
            (n == 2 && c[0] == '.' && c[1] == '.')) {
            walk_truncate(w, w->depth);
            return stow_error_set(err, STOW_ECORRUPT, "bad path component in %.*s", (int)dirlen,
                                  dir),
                   -1;
        }
        memcpy(comp, c, n);
        comp[n] = '\0';
        int fd = openat(parent, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            walk_truncate(w, w->depth);
            if (e == ELOOP || e == ENOTDIR)
                return stow_error_set(err, STOW_ECORRUPT,
                                      "%.*s: a component is a symlink or not a directory",
                                      (int)dirlen, dir),
                       -1;
            return stow_error_set(err, e == ENOENT ? STOW_ENOTFOUND : STOW_ERR, "%.*s: %s",
                                  (int)dirlen, dir, strerror(e)),
                   -1;
        }
        if (w->deep_fd < 0 && w->depth < STOW_SAFEDIR_WALK_DEPTH) {
            w->fds[w->depth] = fd;
            w->ends[w->depth++] = pos + n;
        } else {
            if (w->deep_fd >= 0)
                close(w->deep_fd);
            w->deep_fd = fd;
        }
        parent = fd;
        pos += n + 1;
    }
    w->len = dirlen;
    return parent;
}

int stow_safedir_split(char *dir, size_t dirsz, const char **leaf, const char *rel)
{
    const char *slash = strrchr(rel, '/');
    if (slash == NULL) {
        if (dirsz > 0)
            dir[0] = '\0';
        *leaf = rel;
        return dirsz > 0 ? 0 : -1;
    }
    size_t n = (size_t)(slash - rel);
    *leaf = slash + 1;
    if (n >= dirsz) {
        if (dirsz > 0)
            dir[0] = '\0';
        return -1;
    }
    memcpy(dir, rel, n);
    dir[n] = '\0';
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Link resolution
 * ------------------------------------------------------------------------------------------ */

#define RESOLVE_MAX 16384 /* the not yet resolved rest of a path, links expanded */

static int why_set(char *why, size_t whysz, const char *fmt, ...) STOW_PRINTF(3, 4);
static int why_set(char *why, size_t whysz, const char *fmt, ...)
{
    if (why != NULL && whysz > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, whysz, fmt, ap);
        va_end(ap);
    }
    return 0;
}

/* What the disk holds at rel: a symlink (target copied into buf) or not. */
static stow_safedir_kind disk_kind(int rootfd, const char *rel, char *buf, size_t bufsz)
{
    if (rootfd < 0)
        return STOW_SAFEDIR_NOT_LINK;
    char dir[PATH_MAX];
    const char *leaf;
    if (stow_safedir_split(dir, sizeof(dir), &leaf, rel) != 0)
        return STOW_SAFEDIR_NOT_LINK;
    stow_error ignored;
    int dfd = stow_safedir_open(rootfd, dir, 0, NULL, NULL, &ignored);
    if (dfd < 0)
        return STOW_SAFEDIR_NOT_LINK; /* missing: nothing to follow */
    ssize_t n = readlinkat(dfd, leaf, buf, bufsz - 1);
    close(dfd);
    if (n < 0)
        return STOW_SAFEDIR_NOT_LINK;
    if ((size_t)n >= bufsz - 1) {
        /* Too long to judge: report it as a link to an absolute path, which is refused. */
        stow_strlcpy(buf, "/", bufsz);
        return STOW_SAFEDIR_LINK;
    }
    buf[n] = '\0';
    return STOW_SAFEDIR_LINK;
}

int stow_safedir_link_inside(int rootfd, const char *rel, const char *target,
                             stow_safedir_lookup_fn lookup, void *ud, char *why, size_t whysz)
{
    int ok = 0;
    char *rest = malloc(RESOLVE_MAX), *next = malloc(RESOLVE_MAX);
    char cur[PATH_MAX], linkbuf[PATH_MAX];
    const char *leaf;
    int hops = 0;

    if (why != NULL && whysz > 0)
        why[0] = '\0';
    if (rest == NULL || next == NULL) {
        why_set(why, whysz, "out of memory");
        goto done;
    }
    if (rel == NULL || rel[0] == '\0' || rel[0] == '/' || target == NULL || target[0] == '\0') {
        why_set(why, whysz, "empty or absolute name or target");
        goto done;
    }
    if (target[0] == '/') {
        why_set(why, whysz, "absolute target");
        goto done;
    }
    if (stow_safedir_split(cur, sizeof(cur), &leaf, rel) != 0 ||
        stow_strlcpy(rest, target, RESOLVE_MAX) != 0) {
        why_set(why, whysz, "path too long");
        goto done;
    }
    size_t pos = 0; /* into rest */
    for (;;) {
        while (rest[pos] == '/')
            pos++;
        if (rest[pos] == '\0')
            break;
        const char *c = rest + pos;
        const char *slash = strchr(c, '/');
        size_t n = slash ? (size_t)(slash - c) : strlen(c);
        pos += n;
        if (n == 1 && c[0] == '.')
            continue;
        if (n == 2 && c[0] == '.' && c[1] == '.') {
            if (cur[0] == '\0') {
                why_set(why, whysz, "climbs above the root");
                goto done;
            }
            char *up = strrchr(cur, '/');
            if (up == NULL)
                cur[0] = '\0';
            else
                *up = '\0';
            continue;
        }
        size_t cl = strlen(cur);
        if (cl + 1 + n >= sizeof(cur) || n > NAME_MAX) {
            why_set(why, whysz, "path too long");
            goto done;
        }
        if (cl > 0)
            cur[cl++] = '/';
        memcpy(cur + cl, c, n);
        cur[cl + n] = '\0';

        const char *lt = NULL;
        stow_safedir_kind k = lookup != NULL ? lookup(ud, cur, &lt) : STOW_SAFEDIR_UNKNOWN;
        if (k == STOW_SAFEDIR_UNKNOWN) {
            k = disk_kind(rootfd, cur, linkbuf, sizeof(linkbuf));
            lt = linkbuf;
        }
        if (k != STOW_SAFEDIR_LINK)
            continue;
        if (++hops > STOW_SAFEDIR_MAX_HOPS) {
            why_set(why, whysz, "more than %d nested symlinks", STOW_SAFEDIR_MAX_HOPS);
            goto done;
        }
        if (lt == NULL || lt[0] == '\0' || lt[0] == '/') {
            why_set(why, whysz, "passes through %s, a symlink to an absolute path", cur);
            goto done;
        }
        /* Replace the link's name by its target: rest = target + "/" + what followed. */
        int w = snprintf(next, RESOLVE_MAX, "%s/%s", lt, rest + pos);
        if (w < 0 || w >= RESOLVE_MAX) {
            why_set(why, whysz, "path too long once its symlinks are expanded");
            goto done;
        }
        char *t = rest;
        rest = next;
        next = t;
        pos = 0;
        char *up = strrchr(cur, '/');
        if (up == NULL)
            cur[0] = '\0';
        else
            *up = '\0';
    }
    ok = 1;
done:
    free(rest);
    free(next);
    return ok;
}
