/* {branch}: the branch from the CI environment or from .git/HEAD. */
#include "branch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "keys.h"
#include "readfile.h"

#define PATH_CAP 4096       /* longest path built while looking for .git */
#define SMALL_FILE_MAX 4096 /* .git file, HEAD */

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* ---- {branch} ------------------------------------------------------------------------------ */

/* Reads a small text file (a regular file of at most SMALL_FILE_MAX bytes) with trailing
 * whitespace removed. */
static int read_small_file(char **out, const char *path, stow_error *err)
{
    stow_buf b;
    stow_error rerr = {0};
    int rc;

    *out = NULL;
    stow_buf_init(&b, SMALL_FILE_MAX);
    if (stow_read_file(&b, path, SMALL_FILE_MAX, &rerr) != STOW_OK) {
        rc = stow_error_set(err, STOW_EUSAGE, "%s", rerr.msg);
        goto done;
    }
    while (b.len > 0 && is_space(b.ptr[b.len - 1]))
        b.ptr[--b.len] = '\0';
    if ((*out = stow_buf_take(&b, NULL)) == NULL) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    rc = STOW_OK;
done:
    stow_buf_free(&b);
    return rc;
}

static int join(char *out, size_t outsz, const char *dir, const char *name, stow_error *err)
{
    int sep = dir[0] != '\0' && dir[strlen(dir) - 1] != '/';
    int n = snprintf(out, outsz, "%s%s%s", dir, sep ? "/" : "", name);
    if (n < 0 || (size_t)n >= outsz)
        return stow_error_set(err, STOW_EUSAGE, "path too long: %s/%s", dir, name);
    return STOW_OK;
}

static int is_hex_id(const char *s)
{
    size_t n = strlen(s);
    if (n != 40 && n != 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    }
    return 1;
}

/* Finds the git directory from start upwards into gitdir (PATH_CAP bytes). */
static int find_gitdir(char *gitdir, const char *start, stow_error *err)
{
    int rc = STOW_EUSAGE;
    char *dir = NULL, *text = NULL;
    char dotgit[PATH_CAP];

    dir = realpath(start, NULL);
    if (dir == NULL) {
        rc = stow_error_set(err, STOW_EUSAGE, "%s: %s", start, strerror(errno));
        goto done;
    }
    for (;;) {
        rc = join(dotgit, sizeof(dotgit), dir, ".git", err);
        if (rc != STOW_OK)
            goto done;
        struct stat st;
        if (lstat(dotgit, &st) == 0) {
            if (S_ISDIR(st.st_mode)) {
                memcpy(gitdir, dotgit, strlen(dotgit) + 1);
                break;
            }
            if (!S_ISREG(st.st_mode)) {
                rc = stow_error_set(err, STOW_EUSAGE, "%s is neither a directory nor a file",
                                    dotgit);
                goto done;
            }
            /* Worktrees and submodules: ".git" is a file "gitdir: PATH". */
            rc = read_small_file(&text, dotgit, err);
            if (rc != STOW_OK)
                goto done;
            const char *p = text;
            if (strncmp(p, "gitdir:", 7) != 0) {
                rc = stow_error_set(err, STOW_EUSAGE, "%s: expected \"gitdir: PATH\"", dotgit);
                goto done;
            }
            p += 7;
            while (is_space(*p))
                p++;
            if (*p == '\0' || strchr(p, '\n') != NULL) {
                rc = stow_error_set(err, STOW_EUSAGE, "%s: expected \"gitdir: PATH\"", dotgit);
                goto done;
            }
            if (p[0] == '/') {
                size_t n = strlen(p);
                if (n >= PATH_CAP) {
                    rc = stow_error_set(err, STOW_EUSAGE, "%s: path too long", dotgit);
                    goto done;
                }
                memcpy(gitdir, p, n + 1);
            } else {
                rc = join(gitdir, PATH_CAP, dir, p, err);
                if (rc != STOW_OK)
                    goto done;
            }
            break;
        } else if (errno != ENOENT && errno != ENOTDIR) {
            rc = stow_error_set(err, STOW_EUSAGE, "%s: %s", dotgit, strerror(errno));
            goto done;
        }
        if (strcmp(dir, "/") == 0) {
            char *abs = realpath(start, NULL);
            rc = stow_error_set(err, STOW_ENOTFOUND, "no .git found in %s or above",
                                abs ? abs : start);
            free(abs);
            goto done;
        }
        char *slash = strrchr(dir, '/');
        if (slash == dir)
            slash[1] = '\0';
        else
            *slash = '\0';
    }
    rc = STOW_OK;
done:
    free(text);
    free(dir);
    return rc;
}

static int branch_from_git(char **out, const char *start, stow_error *err)
{
    int rc = STOW_EUSAGE;
    char *head = NULL;
    char gitdir[PATH_CAP], head_path[PATH_CAP];

    rc = find_gitdir(gitdir, start, err);
    if (rc != STOW_OK)
        goto done;
    rc = join(head_path, sizeof(head_path), gitdir, "HEAD", err);
    if (rc != STOW_OK)
        goto done;
    rc = read_small_file(&head, head_path, err);
    if (rc != STOW_OK)
        goto done;
    if (strncmp(head, "ref:", 4) == 0) {
        const char *ref = head + 4;
        while (is_space(*ref))
            ref++;
        if (strncmp(ref, "refs/heads/", 11) == 0)
            ref += 11;
        if (*ref == '\0' || strchr(ref, '\n') != NULL) {
            rc = stow_error_set(err, STOW_EUSAGE, "%s: malformed symbolic ref", head_path);
            goto done;
        }
        *out = strdup(ref);
        if (*out == NULL) {
            rc = stow_error_set(err, STOW_ERR, "out of memory");
            goto done;
        }
        rc = STOW_OK;
    } else if (is_hex_id(head)) {
        rc = stow_error_set(err, STOW_EUSAGE, "%s: detached HEAD at %.12s, not on a branch",
                            head_path, head);
    } else {
        rc = stow_error_set(err, STOW_EUSAGE, "%s: unrecognized contents", head_path);
    }
done:
    free(head);
    return rc;
}

int stow_key_branch(char **out, const char *start_dir, stow_error *err)
{
    static const char *const vars[] = {"GITHUB_HEAD_REF", "GITHUB_REF_NAME", "CI_COMMIT_REF_NAME"};
    char *b = NULL;

    *out = NULL;
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]) && b == NULL; i++) {
        const char *v = getenv(vars[i]);
        if (v != NULL && v[0] != '\0') {
            b = strdup(v);
            if (b == NULL)
                return stow_error_set(err, STOW_ERR, "out of memory");
        }
    }
    if (b == NULL) {
        int rc = branch_from_git(&b, start_dir ? start_dir : ".", err);
        if (rc != STOW_OK) {
            if (rc == STOW_ERR)
                return rc;
            stow_error_wrap(err, "cannot determine the branch (GITHUB_HEAD_REF, GITHUB_REF_NAME "
                                 "and CI_COMMIT_REF_NAME are unset)");
            if (err != NULL)
                err->code = STOW_EUSAGE; /* a missing .git is a usage problem here */
            return STOW_EUSAGE;
        }
    }
    stow_key_sanitize(b);
    *out = b;
    return STOW_OK;
}
