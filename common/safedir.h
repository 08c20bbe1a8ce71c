/* Directories below a root opened one component at a time, never through a symlink, and
 * symlink targets judged by resolving the links they pass through (bsdtar's secure-symlinks
 * idea). Every write of a restore goes through a directory fd obtained here, so no write
 * follows a symlink component, whatever the store holds. No agent dependency: paths are
 * "a/b/c" relative to a root fd; "" is the root itself. */
#ifndef STOW_SAFEDIR_H
#define STOW_SAFEDIR_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* Called with each directory stow_safedir_open created (its path below the root). */
typedef void (*stow_safedir_created_fn)(void *ud, const char *dirrel);

/* Opens dirrel below rootfd without following a symlink in any component, creating missing
 * directories (mode 0755) when create is set and reporting each one to created (may be
 * NULL). Returns an fd, or -1 with err set: STOW_ECORRUPT when a component is a symlink or
 * not a directory, STOW_ENOTFOUND when one is missing and create is 0. */
int stow_safedir_open(int rootfd, const char *dirrel, int create, stow_safedir_created_fn created,
                      void *ud, stow_error *err);

/* A one-entry cache of the last directory opened: sorted input almost always shares its
 * directory with the entry before. Initialise with STOW_SAFEDIR_CACHE_INIT. The fd returned
 * belongs to the cache. */
typedef struct stow_safedir_cache {
    int fd;
    int rootfd;
    char rel[PATH_MAX];
} stow_safedir_cache;
#define STOW_SAFEDIR_CACHE_INIT                                                                    \
    {                                                                                              \
        .fd = -1, .rootfd = -1, .rel = ""                                                          \
    }

int stow_safedir_cache_get(stow_safedir_cache *c, int rootfd, const char *dirrel, int create,
                           stow_safedir_created_fn created, void *ud, stow_error *err);
void stow_safedir_cache_close(stow_safedir_cache *c);

/* The directories along the path of the last one looked up, one fd per component (read
 * only: nothing is created), so walking sorted paths costs one openat per component that
 * changes and none per file; no allocation. Deeper than STOW_SAFEDIR_WALK_DEPTH components,
 * the rest is opened from the deepest kept one. Initialise with STOW_SAFEDIR_WALK_INIT. */
#define STOW_SAFEDIR_WALK_DEPTH 64
typedef struct stow_safedir_walk {
    int rootfd;
    size_t depth;                     /* components held in fds */
    int fds[STOW_SAFEDIR_WALK_DEPTH]; /* fds[i] is rel[0, ends[i]) */
    size_t ends[STOW_SAFEDIR_WALK_DEPTH];
    int deep_fd; /* the directory itself when deeper than the stack */
    size_t len;  /* rel[0, len) is the last directory looked up */
    char rel[PATH_MAX];
} stow_safedir_walk;
#define STOW_SAFEDIR_WALK_INIT                                                                     \
    {                                                                                              \
        .rootfd = -1, .depth = 0, .deep_fd = -1, .len = 0                                          \
    }

/* The fd of the directory dir[0, dirlen) below rootfd ("" is rootfd itself), opened without
 * following a symlink in any component; it belongs to w and stays valid until the next call.
 * -1 with err set as stow_safedir_open (create 0) does. */
int stow_safedir_walk_get(stow_safedir_walk *w, int rootfd, const char *dir, size_t dirlen,
                          stow_error *err);
void stow_safedir_walk_close(stow_safedir_walk *w);

/* Splits rel into its directory ("" for the root; dirsz bytes at most, 0 when it does not
 * fit) and its leaf name (a pointer into rel). Returns 0, or -1 when the directory is too
 * long. */
int stow_safedir_split(char *dir, size_t dirsz, const char **leaf, const char *rel);

/* What a path below the root will be once the restore is done, as far as the caller knows:
 * the caller's own view (e.g. the index being restored) wins over the disk. */
typedef enum {
    STOW_SAFEDIR_UNKNOWN = 0, /* not in the caller's view: look at the disk */
    STOW_SAFEDIR_NOT_LINK,    /* a file or directory (or nothing) */
    STOW_SAFEDIR_LINK,        /* a symlink; *target is set (owned by the caller's view) */
} stow_safedir_kind;
typedef stow_safedir_kind (*stow_safedir_lookup_fn)(void *ud, const char *rel, const char **target);

#define STOW_SAFEDIR_MAX_HOPS 40 /* like the kernel's limit on nested symlinks */

/* 1 when a symlink at rel (below the root) pointing to target resolves inside the root:
 * the target is relative, and following it component by component, where every component
 * that is (or will be) a symlink is replaced by its own target, never climbs above the root
 * and needs at most STOW_SAFEDIR_MAX_HOPS links. lookup (may be NULL) answers first; for
 * what it leaves UNKNOWN the disk below rootfd is read (rootfd -1: nothing on disk).
 * Missing components count as directories still to come (a dangling link is fine). 0 when
 * it escapes, loops or is malformed; why (may be NULL, whysz bytes) then says how. */
int stow_safedir_link_inside(int rootfd, const char *rel, const char *target,
                             stow_safedir_lookup_fn lookup, void *ud, char *why, size_t whysz);

#endif
