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
    int oom; /* a created directory could not be recorded */
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

size_t stow_stage_nroots(const stow_stage *s) { return s->nroots; }

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

size_t stow_stage_count(const stow_stage *s) { return s->nfiles; }

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
    for (; *committed < s->nfiles; (*committed)++) {
        staged_file *f = &s->files[*committed];
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
done:
    stow_safedir_cache_close(&dc);
    if (*committed > 0 && s->files != NULL) {
        /* Renamed files are in place: only the rest stays staged for discard (their names
         * stay in the chunks until the stage is freed). */
        memmove(s->files, s->files + *committed, (s->nfiles - *committed) * sizeof(*s->files));
        s->nfiles -= *committed;
    }
    if (rc == STOW_OK) {
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
            if (fstatat(dirfd(d), n, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                (S_ISREG(st.st_mode) || S_ISLNK(st.st_mode)) && unlinkat(dirfd(d), n, 0) == 0)
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
