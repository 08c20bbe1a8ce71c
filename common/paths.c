#include "paths.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"

/* An expanded path longer than this is refused (PATH_MAX is checked at the end). */
#define EXPAND_MAX 65535

static int sb_add(stow_buf *b, const char *s, size_t n) { return stow_buf_add(b, s, n, NULL); }

int stow_path_expand(char **out, const char *configured, stow_error *err)
{
    stow_buf b;
    stow_buf_init(&b, EXPAND_MAX);
    const char *p = configured;
    *out = NULL;
    if (configured == NULL || configured[0] == '\0')
        return stow_error_set(err, STOW_EUSAGE, "empty path");
    if (p[0] == '~' && (p[1] == '/' || p[1] == '\0')) {
        const char *home = getenv("HOME");
        if (home == NULL || home[0] == '\0')
            return stow_error_set(err, STOW_EUSAGE, "path \"%s\": HOME is not set", configured);
        if (sb_add(&b, home, strlen(home)) != 0)
            goto toolong;
        p++;
    } else if (p[0] != '/' && p[0] != '$') {
        char cwd[PATH_MAX];
        if (getcwd(cwd, sizeof(cwd)) == NULL)
            return stow_error_set(err, STOW_ERR, "getcwd: %s", strerror(errno));
        if (sb_add(&b, cwd, strlen(cwd)) != 0 || sb_add(&b, "/", 1) != 0)
            goto toolong;
    }
    while (*p) {
        if (*p != '$') {
            if (sb_add(&b, p, 1) != 0)
                goto toolong;
            p++;
            continue;
        }
        const char *name = p + 1;
        size_t n;
        int braced = (*name == '{');
        if (braced) {
            name++;
            const char *end = strchr(name, '}');
            if (end == NULL) {
                stow_buf_free(&b);
                return stow_error_set(err, STOW_EUSAGE, "path \"%s\": unterminated ${", configured);
            }
            n = (size_t)(end - name);
            p = end + 1;
        } else {
            n = 0;
            while (name[n] == '_' || (name[n] >= 'A' && name[n] <= 'Z') ||
                   (name[n] >= 'a' && name[n] <= 'z') ||
                   (n > 0 && name[n] >= '0' && name[n] <= '9'))
                n++;
            p = name + n;
        }
        if (n == 0 || n > 255) {
            stow_buf_free(&b);
            return stow_error_set(err, STOW_EUSAGE, "path \"%s\": bad variable reference",
                                  configured);
        }
        char var[256];
        memcpy(var, name, n);
        var[n] = '\0';
        const char *val = getenv(var);
        if (val == NULL) {
            stow_buf_free(&b);
            return stow_error_set(err, STOW_EUSAGE,
                                  "path \"%s\": environment variable %s is not set", configured,
                                  var);
        }
        if (sb_add(&b, val, strlen(val)) != 0)
            goto toolong;
    }
    if (b.ptr == NULL || b.ptr[0] != '/') {
        stow_buf_free(&b);
        return stow_error_set(err, STOW_EUSAGE, "path \"%s\" does not expand to an absolute path",
                              configured);
    }
    while (b.len > 1 && b.ptr[b.len - 1] == '/')
        b.ptr[--b.len] = '\0';
    if (b.len >= PATH_MAX)
        goto toolong;
    *out = stow_buf_take(&b, NULL);
    return STOW_OK;
toolong:
    stow_buf_free(&b);
    return stow_error_set(err, STOW_EUSAGE, "path \"%s\" is too long once expanded", configured);
}

int stow_path_rel_ok(const char *rel)
{
    size_t n = rel ? strlen(rel) : 0;
    if (n == 0 || n > 4095 || rel[0] == '/')
        return 0;
    const char *seg = rel;
    for (const char *p = rel;; p++) {
        if (*p == '/' || *p == '\0') {
            size_t sl = (size_t)(p - seg);
            if (sl == 0 || (sl == 1 && seg[0] == '.') ||
                (sl == 2 && seg[0] == '.' && seg[1] == '.'))
                return 0;
            if (*p == '\0')
                return 1;
            seg = p + 1;
        }
    }
}

int stow_path_link_ok(const char *rel, const char *target)
{
    if (!stow_path_rel_ok(rel) || target == NULL || target[0] == '\0' || target[0] == '/' ||
        strlen(target) > 4095)
        return 0;
    /* Depth of the link's directory below the root. */
    long depth = 0;
    for (const char *p = rel; *p; p++)
        if (*p == '/')
            depth++;
    const char *seg = target;
    for (const char *p = target;; p++) {
        if (*p == '/' || *p == '\0') {
            size_t sl = (size_t)(p - seg);
            if (sl == 2 && seg[0] == '.' && seg[1] == '.') {
                if (--depth < 0)
                    return 0;
            } else if (sl > 0 && !(sl == 1 && seg[0] == '.')) {
                depth++;
            }
            if (*p == '\0')
                return 1;
            seg = p + 1;
        }
    }
}

int stow_path_mkdirs(const char *dir, int mode, stow_error *err)
{
    char buf[PATH_MAX];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof(buf))
        return stow_error_set(err, STOW_ERR, "bad directory path \"%s\"", dir);
    memcpy(buf, dir, n + 1);
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(buf, (mode_t)mode) != 0 && errno != EEXIST)
            return stow_error_set(err, STOW_ERR, "cannot create directory %s: %s", buf,
                                  strerror(errno));
        *p = c;
        if (c == '\0')
            break;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return stow_error_set(err, STOW_ERR, "%s is not a directory", dir);
    return STOW_OK;
}
