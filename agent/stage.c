#include "stage.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hash.h"
#include "log.h"
#include "paths.h"
#include "scan.h"
#include "util.h"

#define SWEEP_MAX_DEPTH 256

/* Names of staged files live in chunks freed with the stage (a million small files cost their
 * bytes, not two allocations each); a file's directory is shared with the previous one's when
 * they are equal, which they mostly are (layers list files directory by directory). */
#define NAME_CHUNK (256u << 10)
typedef struct name_chunk {
    struct name_chunk *next;
    size_t used, cap;
    char data[];
} name_chunk;

typedef struct {
    uint32_t root;
    char *dir;
    char *name;
    char tmp[48];
} staged_file;

typedef struct {
    uint32_t root;
    char *dir;
} created_dir;

/* A directory that did not exist before the restore: made under a temporary name beside its
 * final one (its parent did exist), everything below it is written under final names, and
 * commit renames the whole tree into place with one rename. */
typedef struct {
    uint32_t root;
    char *path; /* final path below the root, in the name chunks */
    char tmp[48];
} new_top;

struct stow_stage {
    char *const *roots;
    size_t nroots;
    int *rootfds;
    unsigned char *root_created; /* the root itself did not exist before */
    pthread_mutex_t lock;
    staged_file *files;
    size_t nfiles, capfiles;
    name_chunk *names; /* dir and name of files */
    const char *last_dir;
    created_dir *dirs;
    size_t ndirs, capdirs;
    int oom;       /* a created directory could not be recorded */
    new_top *tops; /* added by stow_stage_make_dir only (one thread), then read-only */
    size_t ntops, captops;
    uint32_t *top_slots; /* open addressing over tops: index + 1, 0 is empty */
    size_t nslots;
    size_t tops_done; /* tops[0, tops_done) are renamed into place */
    mode_t cmask;     /* the process's umask */
};

int stow_stage_new(stow_stage **out, char *const *roots, size_t nroots, stow_error *err)
{
    *out = NULL;
    stow_stage *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    pthread_mutex_init(&s->lock, NULL);
    s->roots = roots;
    s->nroots = nroots;
    s->cmask = umask(022); /* read it: no other thread creates files while a stage is made */
    umask(s->cmask);
    s->rootfds = malloc((nroots ? nroots : 1) * sizeof(int));
    s->root_created = calloc(nroots ? nroots : 1, 1);
    if (s->rootfds == NULL || s->root_created == NULL) {
        stow_stage_free(s);
        return stow_error_set(err, STOW_ERR, "out of memory");
    }
    for (size_t i = 0; i < nroots; i++)
        s->rootfds[i] = -1;
    for (size_t i = 0; i < nroots; i++) {
        if (roots[i] == NULL)
            continue;
        struct stat st;
        s->root_created[i] = lstat(roots[i], &st) != 0 && errno == ENOENT;
        int rc = stow_path_mkdirs(roots[i], 0755, err);
        if (rc == STOW_OK &&
            (s->rootfds[i] = open(roots[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
            rc = stow_error_set(err, STOW_ERR, "%s: %s", roots[i], strerror(errno));
        if (rc != STOW_OK) {
            stow_stage_free(s);
            return rc;
        }
        /* Shared: restores may run side by side; a sweep needs the root to itself. */
        while (flock(s->rootfds[i], LOCK_SH) != 0 && errno == EINTR)
            ;
    }
    *out = s;
    return STOW_OK;
}

void stow_stage_free(stow_stage *s)
{
    if (s == NULL)
        return;
    for (name_chunk *c = s->names, *next; c != NULL; c = next) {
        next = c->next;
        free(c);
    }
    free(s->files);
    for (size_t i = 0; i < s->ndirs; i++)
        free(s->dirs[i].dir);
    free(s->dirs);
    free(s->tops);
    free(s->top_slots);
    if (s->rootfds != NULL)
        for (size_t i = 0; i < s->nroots; i++)
            if (s->rootfds[i] >= 0)
                close(s->rootfds[i]);
    free(s->rootfds);
    free(s->root_created);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

int stow_stage_rootfd(const stow_stage *s, uint32_t root)
{
    return root < s->nroots ? s->rootfds[root] : -1;
}

const char *stow_stage_root(const stow_stage *s, uint32_t root)
{
    return root < s->nroots && s->roots[root] != NULL ? s->roots[root] : "";
}

typedef struct {
    stow_stage *s;
    uint32_t root;
} created_ctx;

static void on_created(void *ud, const char *dirrel)
{
    created_ctx *c = ud;
    stow_stage *s = c->s;
    pthread_mutex_lock(&s->lock);
    if (s->ndirs == s->capdirs) {
        size_t ncap = s->capdirs ? s->capdirs * 2 : 64;
        created_dir *nd = realloc(s->dirs, ncap * sizeof(*nd));
        if (nd == NULL) {
            s->oom = 1;
            goto done;
        }
        s->dirs = nd;
        s->capdirs = ncap;
    }
    if ((s->dirs[s->ndirs].dir = strdup(dirrel)) == NULL) {
        s->oom = 1;
        goto done;
    }
    s->dirs[s->ndirs++].root = c->root;
done:
    pthread_mutex_unlock(&s->lock);
}

int stow_stage_dir(stow_stage *s, stow_safedir_cache *c, uint32_t root, const char *dir,
                   stow_error *err)
{
    int rootfd = stow_stage_rootfd(s, root);
    if (rootfd < 0)
        return stow_error_set(err, STOW_ERR, "root %u is not being restored", (unsigned)root), -1;
    created_ctx cc = {s, root};
    return stow_safedir_cache_get(c, rootfd, dir, 1, on_created, &cc, err);
}

/* ------------------------------------------------------------------------------------------
 * New directories, staged whole
 * ------------------------------------------------------------------------------------------ */

static char *names_dup(stow_stage *st, const char *s, size_t n);

static uint32_t top_hash(uint32_t root, const char *path, size_t len)
{
    uint32_t h = (2166136261u ^ root) * 16777619u; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)path[i]) * 16777619u;
    return h;
}

static const new_top *top_find(const stow_stage *s, uint32_t root, const char *path, size_t len)
{
    if (s->nslots == 0)
        return NULL;
    size_t mask = s->nslots - 1;
    for (size_t i = top_hash(root, path, len) & mask;; i = (i + 1) & mask) {
        uint32_t v = s->top_slots[i];
        if (v == 0)
            return NULL;
        const new_top *t = &s->tops[v - 1];
        if (t->root == root && strncmp(t->path, path, len) == 0 && t->path[len] == '\0')
            return t;
    }
}

static void slot_put(uint32_t *slots, size_t nslots, const new_top *t, uint32_t idx)
{
    size_t mask = nslots - 1, i = top_hash(t->root, t->path, strlen(t->path)) & mask;
    while (slots[i] != 0)
        i = (i + 1) & mask;
    slots[i] = idx + 1;
}

static int top_add(stow_stage *s, uint32_t root, const char *path, const char *tmp)
{
    if (s->ntops >= UINT32_MAX - 1)
        return -1;
    if (s->ntops == s->captops) {
        size_t ncap = s->captops ? s->captops * 2 : 64;
        new_top *nt = realloc(s->tops, ncap * sizeof(*nt));
        if (nt == NULL)
            return -1;
        s->tops = nt;
        s->captops = ncap;
    }
    if ((s->ntops + 1) * 2 > s->nslots) { /* at most half full */
        size_t n = s->nslots ? s->nslots * 2 : 128;
        uint32_t *slots = calloc(n, sizeof(*slots));
        if (slots == NULL)
            return -1;
        for (size_t i = 0; i < s->ntops; i++)
            slot_put(slots, n, &s->tops[i], (uint32_t)i);
        free(s->top_slots);
        s->top_slots = slots;
        s->nslots = n;
    }
    pthread_mutex_lock(&s->lock);
    char *copy = names_dup(s, path, strlen(path));
    pthread_mutex_unlock(&s->lock);
    if (copy == NULL)
        return -1;
    new_top *t = &s->tops[s->ntops];
    t->root = root;
    t->path = copy;
    stow_strlcpy(t->tmp, tmp, sizeof(t->tmp));
    slot_put(s->top_slots, s->nslots, t, (uint32_t)s->ntops);
    s->ntops++;
    return 0;
}

/* 1 when dir (below root) is a new directory or inside one: out is then where it is staged
 * (the top's temporary name in place of the top); 0 when it is not; -1 when out is too small. */
static int staged_path(const stow_stage *s, uint32_t root, const char *dir, char *out, size_t outsz)
{
    if (s->ntops == s->tops_done || dir[0] == '\0')
        return 0;
    for (const char *p = dir;;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - dir) : strlen(dir);
        const new_top *t = top_find(s, root, dir, len);
        if (t != NULL) {
            int n = snprintf(out, outsz, "%.*s%s%s", (int)(p - dir), dir, t->tmp, dir + len);
            return n < 0 || (size_t)n >= outsz ? -1 : 1;
        }
        if (slash == NULL)
            return 0;
        p = slash + 1;
    }
}

static int too_long(stow_error *err, const char *dir)
{
    return stow_error_set(err, STOW_ECORRUPT, "path too long: %.200s...", dir);
}

int stow_stage_make_dir(stow_stage *s, stow_safedir_cache *c, uint32_t root, const char *dir,
                        stow_error *err)
{
    int rootfd = stow_stage_rootfd(s, root);
    if (rootfd < 0)
        return stow_error_set(err, STOW_ERR, "root %u is not being restored", (unsigned)root);
    char staged[PATH_MAX], parent[PATH_MAX];
    const char *leaf;
    int in = staged_path(s, root, dir, staged, sizeof(staged));
    if (in < 0)
        return too_long(err, dir);
    if (in == 1) /* inside a new directory: made there, removed with it */
        return stow_safedir_cache_get(c, rootfd, staged, 1, NULL, NULL, err) < 0 ? err->code
                                                                                 : STOW_OK;
    if (stow_safedir_cache_get(c, rootfd, dir, 0, NULL, NULL, err) >= 0)
        return STOW_OK; /* already there */
    if (err->code != STOW_ENOTFOUND || dir[0] == '\0')
        return err->code;
    if (stow_safedir_split(parent, sizeof(parent), &leaf, dir) != 0)
        return too_long(err, dir);
    int pfd = stow_safedir_cache_get(c, rootfd, parent, 0, NULL, NULL, err);
    if (pfd < 0) {
        if (err->code != STOW_ENOTFOUND)
            return err->code;
        /* The parent is not in the entry (an older entry may list no directories): made in
         * place, recorded, removed by discard when empty. */
        stow_error_clear(err);
        return stow_stage_dir(s, c, root, dir, err) < 0 ? err->code : STOW_OK;
    }
    char tmp[48];
    stow_stage_temp_name(tmp, sizeof(tmp));
    if (mkdirat(pfd, tmp, 0700) != 0)
        return stow_error_set(err, STOW_ERR, "%s/%s: cannot create directory: %s",
                              stow_stage_root(s, root), dir, strerror(errno));
    if (top_add(s, root, dir, tmp) != 0) {
        unlinkat(pfd, tmp, AT_REMOVEDIR);
        return stow_error_set(err, STOW_ERR, "out of memory");
    }
    return STOW_OK;
}

int stow_stage_file_dir(stow_stage *s, stow_stage_cursor *cur, uint32_t root, const char *dir,
                        stow_error *err)
{
    if (cur->valid && cur->root == root && cur->dc.fd >= 0 && strcmp(cur->dir, dir) == 0)
        return cur->dc.fd;
    cur->valid = 0;
    char staged[PATH_MAX];
    int rootfd = stow_stage_rootfd(s, root), in;
    if (rootfd < 0)
        return stow_error_set(err, STOW_ERR, "root %u is not being restored", (unsigned)root), -1;
    if (stow_strlcpy(cur->dir, dir, sizeof(cur->dir)) != 0 ||
        (in = staged_path(s, root, dir, staged, sizeof(staged))) < 0)
        return too_long(err, dir), -1;
    int fd = in == 1 ? stow_safedir_cache_get(&cur->dc, rootfd, staged, 1, NULL, NULL, err)
                     : stow_stage_dir(s, &cur->dc, root, dir, err);
    if (fd >= 0) {
        cur->valid = 1;
        cur->root = root;
        cur->direct = in == 1;
    }
    return fd;
}

void stow_stage_cursor_close(stow_stage_cursor *cur)
{
    stow_safedir_cache_close(&cur->dc);
    cur->valid = 0;
}

int stow_stage_needs_chmod(const stow_stage *s, unsigned mode)
{
    return (mode & ~0777u) != 0 || (mode & (unsigned)s->cmask) != 0;
}

/* Removes name below pfd and everything in it, never following a symlink; counts removed
 * files and links in *removed (may be NULL). */
static void remove_tree(int pfd, const char *name, int depth, uint64_t *removed)
{
    int fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return;
    DIR *d = depth > SWEEP_MAX_DEPTH ? NULL : fdopendir(fd);
    if (d == NULL) {
        close(fd);
        return;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        struct stat st;
        if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0)
            continue;
        if (de->d_type == DT_DIR ||
            (de->d_type == DT_UNKNOWN && fstatat(dirfd(d), n, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
             S_ISDIR(st.st_mode)))
            remove_tree(dirfd(d), n, depth + 1, removed);
        else if (unlinkat(dirfd(d), n, 0) == 0 && removed != NULL)
            (*removed)++;
    }
    closedir(d);
    unlinkat(pfd, name, AT_REMOVEDIR);
}

/* Moves everything in src (below sparent) into the existing directory dst (below dparent),
 * merging directories present on both sides (files replace files, as a staged file's rename
 * does), then removes src. For a new directory that appeared during the restore (another
 * restore of the same entry, say). */
static int merge_dir(int sparent, const char *src, int dparent, const char *dst, const char *what,
                     int depth, stow_error *err)
{
    int rc = STOW_OK;
    int sfd = openat(sparent, src, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int dfd = openat(dparent, dst, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d = sfd >= 0 && dfd >= 0 && depth <= SWEEP_MAX_DEPTH ? fdopendir(sfd) : NULL;
    if (d == NULL) {
        rc = stow_error_set(err, STOW_ERR,
                            "%s: appeared during the restore and cannot be merged: %s", what,
                            strerror(errno));
        if (sfd >= 0)
            close(sfd);
        goto done;
    }
    struct dirent *de;
    while (rc == STOW_OK && (de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0 || renameat(dirfd(d), n, dfd, n) == 0)
            continue;
        if (errno == ENOTEMPTY || errno == EEXIST)
            rc = merge_dir(dirfd(d), n, dfd, n, what, depth + 1, err);
        else
            rc = stow_error_set(err, STOW_ERR, "%s: cannot move %s into place: %s", what, n,
                                strerror(errno));
    }
    closedir(d);
    if (rc == STOW_OK)
        unlinkat(sparent, src, AT_REMOVEDIR);
done:
    if (dfd >= 0)
        close(dfd);
    return rc;
}

/* The parent of a new directory, in place (it existed before the restore). */
static int top_parent(const stow_stage *s, stow_safedir_cache *dc, const new_top *t,
                      const char **leaf, stow_error *err)
{
    char parent[PATH_MAX];
    if (stow_safedir_split(parent, sizeof(parent), leaf, t->path) != 0)
        return too_long(err, t->path), -1;
    return stow_safedir_cache_get(dc, stow_stage_rootfd(s, t->root), parent, 0, NULL, NULL, err);
}

void stow_stage_temp_name(char *out, size_t outsz)
{
    char rnd[17];
    stow_random_hex(rnd, 8);
    snprintf(out, outsz, STOW_TEMP_PREFIX "%s" STOW_TEMP_SUFFIX, rnd);
}

/* A copy of s[0, n) in the stage's chunks (lock held); NULL when out of memory. */
static char *names_dup(stow_stage *st, const char *s, size_t n)
{
    name_chunk *c = st->names;
    if (c == NULL || c->cap - c->used < n + 1) {
        size_t cap = n + 1 > NAME_CHUNK ? n + 1 : NAME_CHUNK;
        if ((c = malloc(sizeof(*c) + cap)) == NULL)
            return NULL;
        c->used = 0;
        c->cap = cap;
        c->next = st->names;
        st->names = c;
    }
    char *p = c->data + c->used;
    memcpy(p, s, n);
    p[n] = '\0';
    c->used += n + 1;
    return p;
}

int stow_stage_add(stow_stage *s, uint32_t root, const char *dir, const char *name, const char *tmp,
                   stow_error *err)
{
    int rc = STOW_OK;
    char *d = NULL, *n = NULL;
    pthread_mutex_lock(&s->lock);
    if (s->last_dir != NULL && strcmp(s->last_dir, dir) == 0)
        d = (char *)s->last_dir;
    else if ((d = names_dup(s, dir, strlen(dir))) != NULL)
        s->last_dir = d;
    n = names_dup(s, name, strlen(name));
    if (d == NULL || n == NULL) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    if (s->nfiles == s->capfiles) {
        size_t ncap = s->capfiles ? s->capfiles * 2 : 256;
        staged_file *nf = realloc(s->files, ncap * sizeof(*nf));
        if (nf == NULL) {
            rc = stow_error_set(err, STOW_ERR, "out of memory");
            goto done;
        }
        s->files = nf;
        s->capfiles = ncap;
    }
    staged_file *f = &s->files[s->nfiles++];
    f->root = root;
    f->dir = d;
    f->name = n;
    stow_strlcpy(f->tmp, tmp, sizeof(f->tmp));
done:
    pthread_mutex_unlock(&s->lock);
    return rc;
}

size_t stow_stage_count(const stow_stage *s) { return s->nfiles + s->ntops - s->tops_done; }

static int cmp_staged(const void *a, const void *b)
{
    const staged_file *x = a, *y = b;
    if (x->root != y->root)
        return x->root < y->root ? -1 : 1;
    int c = strcmp(x->dir, y->dir);
    return c != 0 ? c : strcmp(x->name, y->name);
}

static void file_path(char *out, size_t outsz, const stow_stage *s, const staged_file *f)
{
    snprintf(out, outsz, "%s/%s%s%s", stow_stage_root(s, f->root), f->dir, f->dir[0] ? "/" : "",
             f->name);
}

int stow_stage_commit(stow_stage *s, size_t *committed, stow_error *err)
{
    stow_safedir_cache dc = STOW_SAFEDIR_CACHE_INIT;
    char path[PATH_MAX + 64];
    int rc = STOW_OK;
    *committed = 0;
    /* Sorted by directory, so each directory is opened once. */
    if (s->nfiles > 1)
        qsort(s->files, s->nfiles, sizeof(*s->files), cmp_staged);
    for (size_t i = s->tops_done; i < s->ntops; i++) {
        const new_top *t = &s->tops[i];
        const char *leaf;
        struct stat st;
        int pfd = top_parent(s, &dc, t, &leaf, err);
        if (pfd < 0) {
            rc = err->code;
            goto done;
        }
        if (fstatat(pfd, t->tmp, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode)) {
            rc = stow_error_set(err, STOW_ERR, "%s/%s: its staged directory is gone",
                                stow_stage_root(s, t->root), t->path);
            goto done;
        }
        if (fstatat(pfd, leaf, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode)) {
            rc = stow_error_set(
                err, STOW_ERR,
                "%s/%s is a file here and a directory in the entry; nothing was replaced",
                stow_stage_root(s, t->root), t->path);
            goto done;
        }
    }
    for (size_t i = 0; i < s->nfiles; i++) {
        staged_file *f = &s->files[i];
        int dfd = stow_safedir_cache_get(&dc, stow_stage_rootfd(s, f->root), f->dir, 0, NULL, NULL,
                                         err);
        if (dfd < 0) {
            rc = err->code;
            goto done;
        }
        struct stat st;
        if (fstatat(dfd, f->tmp, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            file_path(path, sizeof(path), s, f);
            rc = stow_error_set(err, STOW_ERR, "%s: its staged copy is gone: %s", path,
                                strerror(errno));
            goto done;
        }
        if (fstatat(dfd, f->name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
            file_path(path, sizeof(path), s, f);
            rc = stow_error_set(
                err, STOW_ERR,
                "%s is a directory here and a file in the entry; nothing was replaced", path);
            goto done;
        }
    }
    /* New directories first: one rename each puts a whole tree in place; they only add. */
    for (; s->tops_done < s->ntops; s->tops_done++, (*committed)++) {
        const new_top *t = &s->tops[s->tops_done];
        const char *leaf;
        int pfd = top_parent(s, &dc, t, &leaf, err);
        if (pfd < 0) {
            rc = err->code;
            goto done;
        }
        if (renameat(pfd, t->tmp, pfd, leaf) == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", stow_stage_root(s, t->root), t->path);
        if (errno != ENOTEMPTY && errno != EEXIST) {
            rc = stow_error_set(err, STOW_ERR, "%s: cannot move into place: %s", path,
                                strerror(errno));
            goto done;
        }
        /* It appeared meanwhile (another restore of the same entry): merge into it. */
        if ((rc = merge_dir(pfd, t->tmp, pfd, leaf, path, 0, err)) != STOW_OK)
            goto done;
    }
    size_t files_done = 0;
    for (; files_done < s->nfiles; files_done++, (*committed)++) {
        staged_file *f = &s->files[files_done];
        int dfd = stow_safedir_cache_get(&dc, stow_stage_rootfd(s, f->root), f->dir, 0, NULL, NULL,
                                         err);
        if (dfd < 0) {
            rc = err->code;
            break;
        }
        if (renameat(dfd, f->tmp, dfd, f->name) != 0) {
            file_path(path, sizeof(path), s, f);
            rc = stow_error_set(err, STOW_ERR, "%s: cannot replace: %s", path, strerror(errno));
            break;
        }
    }
    if (files_done > 0) {
        /* Renamed files are in place: only the rest stays staged for discard (their names
         * stay in the chunks until the stage is freed). */
        memmove(s->files, s->files + files_done, (s->nfiles - files_done) * sizeof(*s->files));
        s->nfiles -= files_done;
    }
done:
    stow_safedir_cache_close(&dc);
    if (rc == STOW_OK) {
        s->ntops = s->tops_done = 0;
        if (s->top_slots != NULL)
            memset(s->top_slots, 0, s->nslots * sizeof(*s->top_slots));
        /* Directories created for committed files stay. */
        for (size_t i = 0; i < s->ndirs; i++)
            free(s->dirs[i].dir);
        s->ndirs = 0;
        memset(s->root_created, 0, s->nroots ? s->nroots : 1);
    }
    return rc;
}

static int cmp_depth_desc(const void *a, const void *b)
{
    const created_dir *x = a, *y = b;
    size_t lx = strlen(x->dir), ly = strlen(y->dir);
    return lx < ly ? 1 : lx > ly ? -1 : strcmp(x->dir, y->dir);
}

void stow_stage_discard(stow_stage *s)
{
    stow_safedir_cache dc = STOW_SAFEDIR_CACHE_INIT;
    stow_error ignored;
    for (size_t i = 0; i < s->nfiles; i++) {
        staged_file *f = &s->files[i];
        int dfd = stow_safedir_cache_get(&dc, stow_stage_rootfd(s, f->root), f->dir, 0, NULL, NULL,
                                         &ignored);
        if (dfd >= 0)
            unlinkat(dfd, f->tmp, 0);
    }
    s->nfiles = 0;
    for (; s->tops_done < s->ntops; s->tops_done++) {
        const char *leaf;
        int pfd = top_parent(s, &dc, &s->tops[s->tops_done], &leaf, &ignored);
        if (pfd >= 0)
            remove_tree(pfd, s->tops[s->tops_done].tmp, 0, NULL);
    }
    s->ntops = s->tops_done = 0;
    /* A longer path is never the parent of a shorter one: longest first removes children
     * before their parents. rmdir only removes what is empty. */
    if (s->ndirs > 1)
        qsort(s->dirs, s->ndirs, sizeof(*s->dirs), cmp_depth_desc);
    for (size_t i = 0; i < s->ndirs; i++) {
        char dir[PATH_MAX];
        const char *leaf;
        if (stow_safedir_split(dir, sizeof(dir), &leaf, s->dirs[i].dir) == 0) {
            int dfd = stow_safedir_cache_get(&dc, stow_stage_rootfd(s, s->dirs[i].root), dir, 0,
                                             NULL, NULL, &ignored);
            if (dfd >= 0)
                unlinkat(dfd, leaf, AT_REMOVEDIR);
        }
        free(s->dirs[i].dir);
    }
    s->ndirs = 0;
    stow_safedir_cache_close(&dc);
    for (size_t i = 0; i < s->nroots; i++)
        if (s->root_created[i] && s->roots[i] != NULL)
            rmdir(s->roots[i]); /* only when still empty */
}

int stow_stage_is_temp_name(const char *name)
{
    size_t pl = strlen(STOW_TEMP_PREFIX), sl = strlen(STOW_TEMP_SUFFIX);
    if (strlen(name) != pl + 16 + sl || strncmp(name, STOW_TEMP_PREFIX, pl) != 0 ||
        strcmp(name + pl + 16, STOW_TEMP_SUFFIX) != 0)
        return 0;
    for (size_t i = pl; i < pl + 16; i++)
        if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
            return 0;
    return 1;
}

/* dfd is owned (closed here). */
static int sweep_dir(int dfd, int depth, uint64_t *removed)
{
    if (depth > SWEEP_MAX_DEPTH) {
        close(dfd);
        return 0;
    }
    DIR *d = fdopendir(dfd);
    if (d == NULL) {
        close(dfd);
        return 0;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0)
            continue;
        if (stow_stage_is_temp_name(n)) {
            struct stat st;
            if (fstatat(dirfd(d), n, &st, AT_SYMLINK_NOFOLLOW) != 0)
                continue;
            if (S_ISDIR(st.st_mode)) /* a new directory staged whole */
                remove_tree(dirfd(d), n, depth + 1, removed);
            else if ((S_ISREG(st.st_mode) || S_ISLNK(st.st_mode)) && unlinkat(dirfd(d), n, 0) == 0)
                (*removed)++;
            continue;
        }
        if (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN)
            continue;
        int sub = openat(dirfd(d), n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub >= 0)
            sweep_dir(sub, depth + 1, removed);
    }
    closedir(d);
    return 0;
}

int stow_stage_sweep(const char *abs_root, uint64_t *removed, stow_error *err)
{
    *removed = 0;
    int fd = open(abs_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return STOW_OK;
        return stow_error_set(err, STOW_ERR, "%s: %s", abs_root, strerror(errno));
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(fd);
        if (e == EWOULDBLOCK)
            stow_info("another restore is using %s; leaving its temporary files alone", abs_root);
        else /* a filesystem without flock: no way to tell whether another restore runs */
            stow_debug("%s: cannot lock (%s); not removing temporary files", abs_root, strerror(e));
        return STOW_OK;
    }
    int walk = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (walk >= 0)
        sweep_dir(walk, 0, removed);
    close(fd); /* releases the lock */
    return STOW_OK;
}
