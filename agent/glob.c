/* {hash:GLOBS}: hashFiles-style globbing and hashing, apart from the template code. */
#include "glob.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hash.h"
#include "keys.h"

#define PATH_CAP 4096 /* longest path a walk builds (base directory + relative path) */
#define MAX_GLOBS 64  /* globs in one {hash:...} list */
#define MAX_SEGS 63   /* segments in one glob: positions 0..63 fit a uint64_t state set */
#define QUOTE_MAX 256 /* how much of a glob a message quotes */

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* ---- {hash:GLOBS} -------------------------------------------------------------------------- */

/* One glob, compiled to segments. Matching runs a small NFA over path segments: a state set
 * holds the positions 0..nseg reached so far (bit nseg = the glob matched this path, and stays
 * set for everything below it, which gives hashFiles' implicit descendants). */
typedef struct {
    char *text; /* as written, trimmed, without the '!' (for messages) */
    char *buf;  /* owns the segment strings */
    char *segs[MAX_SEGS];
    unsigned char globstar[MAX_SEGS];
    size_t nseg;
    int negate;
    size_t matches; /* files this include glob matched, before exclusions */
} glob_pat;

typedef struct {
    const char *base_dir; /* NULL = cwd */
    glob_pat *pats;
    size_t npat;
    uint64_t *states; /* (STOW_KEY_GLOB_MAX_DEPTH + 2) levels of npat state sets */
    char path[PATH_CAP];
    size_t prefix_len; /* path[0..prefix_len) is "base_dir/" (or empty) */
    size_t len;
    char **files; /* relative paths of the selected files */
    size_t nfiles, files_cap;
    size_t visits;
    stow_error *err;
} walk_ctx;

static const char *base_name(const walk_ctx *c)
{
    return c->base_dir ? c->base_dir : "the current directory";
}

static void pats_free(glob_pat *pats, size_t n)
{
    if (pats == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        free(pats[i].text);
        free(pats[i].buf);
    }
    free(pats);
}

/* Compiles one trimmed glob (len bytes at s) into p. */
static int pat_compile(glob_pat *p, const char *s, size_t len, stow_error *err)
{
    char q[QUOTE_MAX];
    if (len > 0 && s[0] == '!') {
        p->negate = 1;
        s++;
        len--;
    }
    if (len == 0)
        return stow_error_set(err, STOW_EUSAGE, "empty glob%s", p->negate ? " after '!'" : "");
    p->text = strndup(s, len);
    p->buf = strndup(s, len);
    if (p->text == NULL || p->buf == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    if (p->buf[0] == '/')
        return stow_error_set(err, STOW_EUSAGE,
                              "glob \"%s\" is absolute; globs are relative to the base directory",
                              stow_key_quote(q, sizeof(q), s, len));
    char *seg = p->buf;
    for (;;) {
        char *slash = strchr(seg, '/');
        if (slash != NULL)
            *slash = '\0';
        if (strcmp(seg, "..") == 0)
            return stow_error_set(err, STOW_EUSAGE, "glob \"%s\": \"..\" is not allowed",
                                  stow_key_quote(q, sizeof(q), s, len));
        int star = strcmp(seg, "**") == 0;
        int skip = seg[0] == '\0' || strcmp(seg, ".") == 0 ||
                   (star && p->nseg > 0 && p->globstar[p->nseg - 1]); /* "**" / "**" = "**" */
        if (!skip) {
            if (p->nseg == MAX_SEGS)
                return stow_error_set(err, STOW_EUSAGE, "glob \"%s\" has more than %d segments",
                                      stow_key_quote(q, sizeof(q), s, len), MAX_SEGS);
            p->globstar[p->nseg] = (unsigned char)star;
            p->segs[p->nseg++] = seg;
        }
        if (slash == NULL)
            break;
        seg = slash + 1;
    }
    return STOW_OK;
}

/* Splits the comma-separated list and compiles every glob. */
static int pats_parse(glob_pat **out, size_t *count, const char *globs, stow_error *err)
{
    char q[QUOTE_MAX];
    size_t n = 1;
    for (const char *s = globs; *s != '\0'; s++)
        n += *s == ',';
    if (n > MAX_GLOBS)
        return stow_error_set(err, STOW_EUSAGE, "more than %d globs in \"%s\"", MAX_GLOBS,
                              stow_key_quote(q, sizeof(q), globs, strlen(globs)));
    glob_pat *pats = calloc(n, sizeof(*pats));
    if (pats == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    int rc = STOW_OK;
    int includes = 0;
    const char *s = globs;
    for (size_t i = 0; i < n; i++) {
        const char *end = strchr(s, ',');
        if (end == NULL)
            end = s + strlen(s);
        const char *a = s, *b = end;
        while (a < b && is_space(*a))
            a++;
        while (b > a && is_space(b[-1]))
            b--;
        rc = pat_compile(&pats[i], a, (size_t)(b - a), err);
        if (rc != STOW_OK) {
            stow_error_wrap(err, "glob list \"%s\"",
                            stow_key_quote(q, sizeof(q), globs, strlen(globs)));
            goto done;
        }
        includes += !pats[i].negate;
        s = *end == ',' ? end + 1 : end;
    }
    if (includes == 0) {
        rc = stow_error_set(err, STOW_EUSAGE, "glob list \"%s\" has only exclusions ('!')",
                            stow_key_quote(q, sizeof(q), globs, strlen(globs)));
        goto done;
    }
done:
    if (rc != STOW_OK) {
        pats_free(pats, n);
        return rc;
    }
    *out = pats;
    *count = n;
    return STOW_OK;
}

static uint64_t bit(size_t pos) { return (uint64_t)1 << pos; }

/* A "**" position also reaches the position after it without consuming a segment. */
static uint64_t closure(const glob_pat *p, uint64_t set)
{
    for (size_t i = 0; i < p->nseg; i++) {
        if ((set & bit(i)) && p->globstar[i])
            set |= bit(i + 1);
    }
    return set;
}

/* Advances p's state set over one path segment. For include globs "**" and the implicit
 * descendants of a match neither pass ".git" nor a symlinked directory (no_follow); naming
 * such an entry literally still works. Exclusions match the path lexically. */
static uint64_t step(const glob_pat *p, uint64_t set, const char *name, int is_git, int no_follow)
{
    int restricted = !p->negate;
    int may_recurse = !restricted || (!is_git && !no_follow);
    uint64_t next = 0;
    for (size_t i = 0; i <= p->nseg; i++) {
        if (!(set & bit(i)))
            continue;
        if (i == p->nseg || p->globstar[i]) {
            if (may_recurse)
                next |= bit(i);
            continue;
        }
        if (restricted && is_git && strcmp(p->segs[i], ".git") != 0)
            continue;
        if (fnmatch(p->segs[i], name, 0) == 0)
            next |= bit(i + 1);
    }
    return closure(p, next);
}

/* Whether walking further below a directory in state st can still select a file: some include
 * glob is alive and no later exclusion already matched the directory (which would exclude
 * everything below it). */
static int worth_walking(const walk_ctx *c, const uint64_t *st)
{
    size_t last_excl = 0; /* 1 + index of the last exclusion that matched, 0 = none */
    for (size_t k = 0; k < c->npat; k++) {
        if (c->pats[k].negate && (st[k] & bit(c->pats[k].nseg)))
            last_excl = k + 1;
    }
    for (size_t k = last_excl; k < c->npat; k++) {
        if (!c->pats[k].negate && st[k] != 0)
            return 1;
    }
    return 0;
}

/* Advances every glob over name; returns whether some include glob is still alive. */
static int step_all(const walk_ctx *c, const uint64_t *cur, uint64_t *next, const char *name,
                    int no_follow)
{
    int is_git = strcmp(name, ".git") == 0;
    int alive = 0;
    for (size_t k = 0; k < c->npat; k++) {
        next[k] = cur[k] ? step(&c->pats[k], cur[k], name, is_git, no_follow) : 0;
        alive |= !c->pats[k].negate && next[k] != 0;
    }
    return alive;
}

/* The path to hand to the file system for the entry currently in c->path. */
static const char *cur_path(const walk_ctx *c)
{
    if (c->len == c->prefix_len)
        return c->base_dir ? c->base_dir : ".";
    return c->path;
}

static int path_push(walk_ctx *c, const char *name, size_t *mark)
{
    size_t n = strlen(name);
    int sep = c->len > c->prefix_len;
    *mark = c->len;
    if (c->len + (size_t)sep + n >= sizeof(c->path)) {
        c->path[c->len] = '\0';
        return stow_error_set(c->err, STOW_EUSAGE, "path too long below %s: %s/%s", base_name(c),
                              c->path + c->prefix_len, name);
    }
    if (sep)
        c->path[c->len++] = '/';
    memcpy(c->path + c->len, name, n + 1);
    c->len += n;
    return STOW_OK;
}

static void path_pop(walk_ctx *c, size_t mark)
{
    c->len = mark;
    c->path[mark] = '\0';
}

/* A regular file (or a symlink to one) reached with state st: the last glob that matches it
 * decides whether it is selected. */
static int take_file(walk_ctx *c, const uint64_t *st)
{
    int selected = 0;
    for (size_t k = 0; k < c->npat; k++) {
        glob_pat *p = &c->pats[k];
        if (!(st[k] & bit(p->nseg)))
            continue;
        if (!p->negate)
            p->matches++;
        selected = !p->negate;
    }
    if (!selected)
        return STOW_OK;
    if (c->nfiles == c->files_cap) {
        size_t cap = c->files_cap ? c->files_cap * 2 : 64;
        if (cap > SIZE_MAX / sizeof(*c->files))
            return stow_error_set(c->err, STOW_ERR, "out of memory");
        char **f = realloc(c->files, cap * sizeof(*f));
        if (f == NULL)
            return stow_error_set(c->err, STOW_ERR, "out of memory");
        c->files = f;
        c->files_cap = cap;
    }
    c->files[c->nfiles] = strdup(c->path + c->prefix_len);
    if (c->files[c->nfiles] == NULL)
        return stow_error_set(c->err, STOW_ERR, "out of memory");
    c->nfiles++;
    return STOW_OK;
}

/* Reads the directory in c->path (level levels below the base) whose state sets are at level. */
static int walk_dir(walk_ctx *c, int level)
{
    int rc = STOW_OK;
    DIR *d = NULL;
    const uint64_t *cur = c->states + (size_t)level * c->npat;
    uint64_t *next = c->states + (size_t)(level + 1) * c->npat;

    d = opendir(cur_path(c));
    if (d == NULL) {
        rc = stow_error_set(c->err, STOW_ERR, "cannot read directory %s: %s", cur_path(c),
                            strerror(errno));
        goto done;
    }
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (e == NULL) {
            if (errno != 0)
                rc = stow_error_set(c->err, STOW_ERR, "cannot read directory %s: %s", cur_path(c),
                                    strerror(errno));
            break;
        }
        const char *name = e->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
            continue;
        if (++c->visits > STOW_KEY_GLOB_MAX_VISITS) {
            rc = stow_error_set(c->err, STOW_EUSAGE,
                                "more than %d directory entries visited below %s; "
                                "use narrower globs",
                                STOW_KEY_GLOB_MAX_VISITS, base_name(c));
            break;
        }
        if (!step_all(c, cur, next, name, 0))
            continue; /* no include glob can match this entry or anything below it */

        size_t mark;
        rc = path_push(c, name, &mark);
        if (rc != STOW_OK)
            break;
        struct stat st;
        if (lstat(c->path, &st) != 0) {
            if (errno != ENOENT) /* ENOENT: removed while we walk */
                rc = stow_error_set(c->err, STOW_ERR, "%s: %s", c->path, strerror(errno));
            path_pop(c, mark);
            if (rc != STOW_OK)
                break;
            continue;
        }
        int is_reg = S_ISREG(st.st_mode), is_dir = S_ISDIR(st.st_mode);
        if (S_ISLNK(st.st_mode)) {
            struct stat target;
            if (stat(c->path, &target) == 0) { /* dangling links are neither */
                is_reg = S_ISREG(target.st_mode);
                is_dir = S_ISDIR(target.st_mode);
                if (is_dir)
                    (void)step_all(c, cur, next, name, 1);
            }
        }
        if (is_reg) {
            rc = take_file(c, next);
        } else if (is_dir && worth_walking(c, next)) {
            if (level + 1 > STOW_KEY_GLOB_MAX_DEPTH)
                rc = stow_error_set(c->err, STOW_EUSAGE,
                                    "directory tree deeper than %d levels below %s at %s",
                                    STOW_KEY_GLOB_MAX_DEPTH, base_name(c), c->path + c->prefix_len);
            else
                rc = walk_dir(c, level + 1);
        }
        path_pop(c, mark);
        if (rc != STOW_OK)
            break;
    }
done:
    if (d != NULL)
        closedir(d);
    return rc;
}

static int cmp_path(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b); /* bytewise: strcmp compares unsigned */
}

int stow_key_hash_files(char out[65], const char *globs, const char *base_dir, stow_error *err)
{
    int rc = STOW_ERR;
    walk_ctx *c = NULL;
    stow_sha256 *h = NULL;
    char q[QUOTE_MAX];

    out[0] = '\0';
    if (globs == NULL)
        return stow_error_set(err, STOW_EUSAGE, "no glob given");
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    c->base_dir = base_dir;
    c->err = err;
    rc = pats_parse(&c->pats, &c->npat, globs, err);
    if (rc != STOW_OK)
        goto done;

    if (base_dir != NULL) {
        size_t n = strlen(base_dir);
        int sep = n > 0 && base_dir[n - 1] != '/';
        if (n == 0 || n + 2 >= sizeof(c->path)) {
            rc = stow_error_set(err, STOW_EUSAGE, "bad base directory \"%s\"",
                                stow_key_quote(q, sizeof(q), base_dir, n));
            goto done;
        }
        memcpy(c->path, base_dir, n);
        if (sep)
            c->path[n++] = '/';
        c->path[n] = '\0';
        c->prefix_len = c->len = n;
    }
    struct stat st;
    if (stat(cur_path(c), &st) != 0) {
        rc = stow_error_set(err, STOW_EUSAGE, "base directory %s: %s", cur_path(c),
                            strerror(errno));
        goto done;
    }
    if (!S_ISDIR(st.st_mode)) {
        rc = stow_error_set(err, STOW_EUSAGE, "base directory %s is not a directory", cur_path(c));
        goto done;
    }

    c->states = calloc((size_t)(STOW_KEY_GLOB_MAX_DEPTH + 2) * c->npat, sizeof(uint64_t));
    if (c->states == NULL) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    for (size_t k = 0; k < c->npat; k++)
        c->states[k] = closure(&c->pats[k], bit(0));
    if (worth_walking(c, c->states)) {
        rc = walk_dir(c, 0);
        if (rc != STOW_OK)
            goto done;
    }

    for (size_t k = 0; k < c->npat; k++) {
        if (c->pats[k].negate || c->pats[k].matches > 0)
            continue;
        /* Directories a later exclusion covers are not walked, so their files are not
         * counted: say so when that can be the reason. */
        int later_excl = 0;
        for (size_t j = k + 1; j < c->npat; j++)
            later_excl |= c->pats[j].negate;
        rc = stow_error_set(err, STOW_EUSAGE, "no file matches glob \"%s\" in %s%s",
                            stow_key_quote(q, sizeof(q), c->pats[k].text, strlen(c->pats[k].text)),
                            base_name(c),
                            later_excl ? " (or every match is excluded by a later '!' glob)" : "");
        goto done;
    }
    if (c->nfiles == 0) {
        rc = stow_error_set(err, STOW_EUSAGE, "every file matched by \"%s\" in %s is excluded",
                            stow_key_quote(q, sizeof(q), globs, strlen(globs)), base_name(c));
        goto done;
    }

    qsort(c->files, c->nfiles, sizeof(*c->files), cmp_path);
    h = stow_sha256_new();
    if (h == NULL) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < c->nfiles; i++) {
        uint8_t digest[STOW_SHA256_LEN];
        size_t mark = c->prefix_len;
        c->len = c->prefix_len;
        rc = path_push(c, c->files[i], &mark);
        if (rc == STOW_OK)
            rc = stow_sha256_file(digest, c->path, err);
        if (rc != STOW_OK)
            goto done;
        stow_sha256_update(h, digest, sizeof(digest));
    }
    uint8_t sum[STOW_SHA256_LEN];
    stow_sha256_final(h, sum);
    stow_hex(out, sum, sizeof(sum));
    rc = STOW_OK;
done:
    stow_sha256_free(h);
    if (c != NULL) {
        for (size_t i = 0; i < c->nfiles; i++)
            free(c->files[i]);
        free(c->files);
        free(c->states);
        pats_free(c->pats, c->npat);
        free(c);
    }
    return rc;
}
