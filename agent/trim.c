#include "trim.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buildx.h"
#include "cache_int.h"
#include "hash.h"
#include "log.h"
#include "paths.h"
#include "progress.h"
#include "safedir.h"
#include "scan.h"
#include "util.h"

#define STATE_MAX_BYTES (1u << 20)

struct stow_trim_dropped {
    size_t n, cap;
    uint32_t *root;
    char **path;
};

/* ------------------------------------------------------------------------------------------
 * Markers and the canary
 * ------------------------------------------------------------------------------------------ */

int stow_trim_is_marked(const struct stat *st)
{
    return (int64_t)st->st_atim.tv_sec == (int64_t)st->st_mtim.tv_sec - STOW_TRIM_MARK_OFFSET &&
           st->st_atim.tv_nsec == st->st_mtim.tv_nsec;
}

static int mark_at(int dirfd, const char *path, const struct stat *st)
{
    struct timespec t[2];
    t[0] = stow_trim_marker_atime((int64_t)st->st_mtim.tv_sec, st->st_mtim.tv_nsec);
    t[1].tv_sec = 0;
    t[1].tv_nsec = UTIME_OMIT;
    return utimensat(dirfd, path, t, AT_SYMLINK_NOFOLLOW);
}

int stow_trim_mark_path(const char *path, stow_error *err)
{
    struct stat st;
    if (lstat(path, &st) != 0 || mark_at(AT_FDCWD, path, &st) != 0)
        return stow_error_set(err, STOW_ERR, "%s: %s", path, strerror(errno));
    return STOW_OK;
}

int stow_trim_canary(const char *dir, char *why, size_t whysz)
{
    char hex[17], path[PATH_MAX];
    int fd = -1, rc = -1;
    struct stat before, after;
    char c;
    if (stow_random_hex(hex, 8) != STOW_OK ||
        /* named like a restore's temporary file, so that the next restore's sweep removes a
         * canary that a kill left behind */
        snprintf(path, sizeof(path), "%s/%s%s%s", dir, STOW_TEMP_PREFIX, hex, STOW_TEMP_SUFFIX) >=
            (int)sizeof(path)) {
        snprintf(why, whysz, "%s: no canary name", dir);
        return -1;
    }
    fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        snprintf(why, whysz, "%s: cannot write a canary file: %s", dir, strerror(errno));
        return -1;
    }
    if (write(fd, "x", 1) != 1 || fstat(fd, &before) != 0 ||
        mark_at(AT_FDCWD, path, &before) != 0 || fstat(fd, &before) != 0 ||
        !stow_trim_is_marked(&before)) {
        snprintf(why, whysz, "%s: cannot set a canary's atime: %s", dir, strerror(errno));
        goto done;
    }
    if (pread(fd, &c, 1, 0) != 1 || fstat(fd, &after) != 0) {
        snprintf(why, whysz, "%s: cannot read the canary: %s", dir, strerror(errno));
        goto done;
    }
    if (stow_trim_is_marked(&after)) {
        snprintf(why, whysz,
                 "atime does not change when a file is read on the mount of %s (noatime?)", dir);
        rc = 0;
    } else {
        rc = 1;
    }
done:
    close(fd);
    unlink(path);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * The state restore leaves for save: the entry whose files were marked, and per root whether
 * its mount tracks reads
 * ------------------------------------------------------------------------------------------ */

static int state_path(char *out, size_t outsz, const stow_cache_params *p)
{
    return stow_cache_state_path(out, outsz, p, ".trim.json");
}

static void write_state(const stow_cache_params *p, json_t *o)
{
    char path[PATH_MAX], tmp[PATH_MAX];
    stow_error err = {0};
    char *s = json_dumps(o, JSON_COMPACT);
    if (s == NULL || stow_path_mkdirs(p->state_dir, 0700, &err) != STOW_OK ||
        state_path(path, sizeof(path), p) != STOW_OK ||
        snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
        stow_warn("cannot record use tracking in %s: %s", p->state_dir,
                  s ? err.msg : "out of memory");
        free(s);
        return;
    }
    FILE *f = fopen(tmp, "w");
    int ok = f != NULL && fputs(s, f) >= 0;
    if (f != NULL && fclose(f) != 0)
        ok = 0;
    if (!ok || rename(tmp, path) != 0) {
        stow_warn("cannot record use tracking in %s: %s", path, strerror(errno));
        unlink(tmp);
    }
    free(s);
}

static void clear_state(const stow_cache_params *p)
{
    char path[PATH_MAX];
    if (state_path(path, sizeof(path), p) == STOW_OK)
        unlink(path);
}

/* NULL when there is none or it cannot be read. */
static json_t *read_state(const stow_cache_params *p)
{
    char path[PATH_MAX];
    json_error_t jerr;
    if (state_path(path, sizeof(path), p) != STOW_OK)
        return NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = malloc(STATE_MAX_BYTES);
    size_t n = buf ? fread(buf, 1, STATE_MAX_BYTES, f) : 0;
    fclose(f);
    json_t *o = (buf && n < STATE_MAX_BYTES) ? json_loadb(buf, n, 0, &jerr) : NULL;
    free(buf);
    if (o == NULL)
        stow_warn("ignoring unreadable use-tracking state %s", path);
    return o;
}

void stow_trim_mark_restored(const stow_manifest *m, char *const *roots, const stow_cache_params *p,
                             const unsigned char *known)
{
    json_t *o = NULL, *jroots = NULL;
    uint64_t marked = 0, failed = 0, already = 0;
    int64_t t0 = stow_now_ms();

    clear_state(p); /* marks from an earlier restore do not describe this one */
    o = json_pack("{s:s, s:s, s:I}", "key", m->key ? m->key : "", "scope", m->scope ? m->scope : "",
                  "time", (json_int_t)stow_unix_time());
    jroots = json_array();
    if (o == NULL || jroots == NULL)
        goto done;
    unsigned char *tracked = calloc(m->nroots ? m->nroots : 1, 1);
    if (tracked == NULL)
        goto done;
    for (size_t r = 0; r < m->nroots; r++) {
        char why[512] = "";
        struct stat rst;
        if (roots[r] == NULL || stat(roots[r], &rst) != 0)
            continue;
        int c = stow_trim_canary(roots[r], why, sizeof(why));
        tracked[r] = c == 1;
        if (c != 1)
            stow_info("use tracking off for %s: %s; files there will not be trimmed", roots[r],
                      why);
        json_array_append_new(jroots, json_pack("{s:s, s:b, s:I, s:s}", "path", roots[r], "tracked",
                                                c == 1, "dev", (json_int_t)rst.st_dev, "why", why));
    }
    /* Directory-relative in index order (sorted): one utimensat per file, each directory
     * opened once, no path built per file. */
    stow_safedir_walk w = STOW_SAFEDIR_WALK_INIT;
    int *rootfd = malloc((m->nroots ? m->nroots : 1) * sizeof(*rootfd));
    for (size_t r = 0; rootfd != NULL && r < m->nroots; r++)
        rootfd[r] = roots[r] != NULL && tracked[r]
                        ? open(roots[r], O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                        : -1;
    for (size_t i = 0; rootfd != NULL && i < m->nfiles; i++) {
        const stow_file_entry *e = &m->files[i];
        if (e->type != STOW_FT_FILE || rootfd[e->root] < 0)
            continue;
        if (known != NULL && stow_trim_known_has(known, i)) {
            already++; /* carries the marker: no syscall, no directory opened */
            continue;
        }
        /* The marker comes from the index's mtime, without a stat: a local file that is not
         * the entry's (another mtime) does not look marked afterwards and counts as read. */
        struct stat st;
        stow_error ignored;
        st.st_mtim.tv_sec = (time_t)e->mtime;
        st.st_mtim.tv_nsec = e->mtime_ns;
        const char *slash = strrchr(e->path, '/');
        int dfd = stow_safedir_walk_get(&w, rootfd[e->root], e->path,
                                        slash ? (size_t)(slash - e->path) : 0, &ignored);
        if (dfd >= 0 && mark_at(dfd, slash ? slash + 1 : e->path, &st) == 0)
            marked++;
        else if (dfd >= 0 && errno != ENOENT)
            failed++; /* a directory gone or unreadable: not marked, so it counts as read */
    }
    stow_safedir_walk_close(&w);
    for (size_t r = 0; rootfd != NULL && r < m->nroots; r++)
        if (rootfd[r] >= 0)
            close(rootfd[r]);
    if (rootfd == NULL)
        failed = m->nfiles;
    free(rootfd);
    free(tracked);
    json_object_set_new(o, "roots", jroots);
    jroots = NULL;
    write_state(p, o);
    stow_debug("use tracking: marked %llu files (%llu already were) in %lld ms%s",
               (unsigned long long)marked, (unsigned long long)already,
               (long long)(stow_now_ms() - t0), failed ? " (some could not be marked)" : "");
    if (failed)
        stow_warn("use tracking: %llu files could not be marked; they count as read",
                  (unsigned long long)failed);
done:
    json_decref(jroots);
    json_decref(o);
}

/* ------------------------------------------------------------------------------------------
 * The policy
 * ------------------------------------------------------------------------------------------ */

void stow_trim_dropped_free(stow_trim_dropped *d)
{
    if (d == NULL)
        return;
    for (size_t i = 0; i < d->n; i++)
        free(d->path[i]);
    free(d->path);
    free(d->root);
    free(d);
}

static int dropped_add(stow_trim_dropped *d, uint32_t root, const char *path, stow_error *err)
{
    if (d->n == d->cap) {
        size_t ncap = d->cap ? d->cap * 2 : 64;
        uint32_t *nr = realloc(d->root, ncap * sizeof(*nr));
        if (nr == NULL)
            return stow_error_set(err, STOW_ERR, "out of memory");
        d->root = nr;
        char **np = realloc(d->path, ncap * sizeof(*np));
        if (np == NULL)
            return stow_error_set(err, STOW_ERR, "out of memory");
        d->path = np;
        d->cap = ncap;
    }
    if ((d->path[d->n] = strdup(path)) == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    d->root[d->n++] = root;
    return STOW_OK;
}

static int same_data(const stow_file_entry *a, const stow_file_entry *b)
{
    return a->type == STOW_FT_FILE && b->type == STOW_FT_FILE && a->size == b->size &&
           a->mtime == b->mtime && a->mtime_ns == b->mtime_ns;
}

int stow_trim_plan(stow_trim_stats *st, stow_trim_dropped **dropped, stow_manifest *m,
                   const stow_manifest *parent, const stow_trim_use *use,
                   const stow_trim_policy *pol, stow_error *err)
{
    int rc = STOW_OK;
    int32_t *proot = NULL;
    unsigned char *drop = NULL;
    stow_trim_dropped *d = NULL;
    int active = pol->after > 0 && pol->enabled && !pol->build_failed;

    st->trimming = active;
    if (dropped != NULL)
        *dropped = NULL;
    proot = malloc((m->nroots ? m->nroots : 1) * sizeof(*proot));
    drop = calloc(m->nfiles ? m->nfiles : 1, 1);
    d = calloc(1, sizeof(*d));
    if (proot == NULL || drop == NULL || d == NULL) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    stow_manifest_map_roots(proot, m, parent);
    for (size_t i = 0; i < m->nfiles; i++) {
        stow_file_entry *e = &m->files[i];
        const stow_file_entry *pe = stow_manifest_find_mapped(parent, proot, e);
        uint32_t before = (pe != NULL && same_data(e, pe)) ? pe->unread : 0;
        e->unread = 0;
        if (e->type != STOW_FT_FILE)
            continue;
        switch (use[i]) {
        case STOW_USE_UNREAD:
            if (pe == NULL || !same_data(e, pe))
                break; /* changed since the parent: written in this build */
            e->unread = before;
            if (!pol->build_failed && e->unread < STOW_MAX_UNREAD)
                e->unread++; /* a failed build may have stopped before it read the file */
            if (active && e->unread >= pol->after) {
                drop[i] = 1;
                st->files_trimmed++;
                st->bytes_trimmed += e->size;
            } else {
                st->files_unread++;
                st->bytes_unread += e->size;
            }
            break;
        case STOW_USE_UNKNOWN: e->unread = before; break;
        case STOW_USE_LEFTOVER:
            if (active) {
                drop[i] = 1;
                st->files_kept_out++;
                st->bytes_kept_out += e->size;
            }
            break;
        case STOW_USE_NONE:
        case STOW_USE_READ: break;
        }
        if (pe != NULL && pe->type == STOW_FT_FILE && !drop[i] && e->unread != pe->unread)
            st->counts_changed = 1;
    }
    /* Remove the dropped files from m, keeping the order. */
    size_t w = 0;
    for (size_t i = 0; i < m->nfiles; i++) {
        if (!drop[i]) {
            m->files[w++] = m->files[i];
            continue;
        }
        if (rc == STOW_OK)
            rc = dropped_add(d, m->files[i].root, m->files[i].path, err);
        free(m->files[i].sha256); /* path and target live in m's arena */
    }
    m->nfiles = w;
    if (rc == STOW_OK && dropped != NULL) {
        *dropped = d;
        d = NULL;
    }
done:
    stow_trim_dropped_free(d);
    free(drop);
    free(proot);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Observing a build, and the save's trim step
 * ------------------------------------------------------------------------------------------ */

/* 1 when the file root/path lies in a buildx cache: a root that holds an OCI layout, or a
 * directory named in buildx_dirs. */
static int in_buildx(const stow_cache_params *p, const unsigned char *root_is_buildx, uint32_t root,
                     const char *path)
{
    if (root_is_buildx[root])
        return 1;
    char full[PATH_MAX];
    if (snprintf(full, sizeof(full), "%s/%s", p->abs_paths[root], path) >= (int)sizeof(full))
        return 1;
    for (size_t i = 0; i < p->nbuildx_dirs; i++) {
        size_t n = strlen(p->buildx_dirs[i]);
        while (n > 1 && p->buildx_dirs[i][n - 1] == '/')
            n--;
        if (strncmp(full, p->buildx_dirs[i], n) == 0 && (full[n] == '/' || full[n] == '\0'))
            return 1;
    }
    return 0;
}

/* Per root of m: 1 when the state says its mount tracks reads (dev filled in). */
static void tracked_roots(unsigned char *tracked, dev_t *dev, const stow_manifest *m,
                          const stow_cache_params *p, const json_t *state, char *why, size_t whysz)
{
    json_t *roots = json_object_get(state, "roots");
    for (size_t r = 0; r < m->nroots; r++) {
        size_t i;
        json_t *v;
        json_array_foreach(roots, i, v)
        {
            const char *path = json_string_value(json_object_get(v, "path"));
            if (path == NULL || strcmp(path, p->abs_paths[r]) != 0)
                continue;
            tracked[r] = json_is_true(json_object_get(v, "tracked"));
            dev[r] = (dev_t)json_integer_value(json_object_get(v, "dev"));
            const char *w = json_string_value(json_object_get(v, "why"));
            if (!tracked[r] && w != NULL && w[0] != '\0' && why[0] == '\0')
                snprintf(why, whysz, "%s", w);
        }
    }
}

int stow_trim_apply(stow_trim_stats *st, stow_trim_dropped **dropped, stow_manifest *m,
                    const stow_manifest *parent, const stow_cache_params *p, stow_error *err)
{
    int rc;
    stow_trim_use *use = NULL;
    unsigned char *tracked = NULL, *bx = NULL;
    dev_t *dev = NULL;
    json_t *state = NULL;
    int32_t *proot = NULL;

    memset(st, 0, sizeof(*st));
    *dropped = NULL;
    use = calloc(m->nfiles ? m->nfiles : 1, sizeof(*use));
    tracked = calloc(m->nroots ? m->nroots : 1, 1);
    bx = calloc(m->nroots ? m->nroots : 1, 1);
    dev = calloc(m->nroots ? m->nroots : 1, sizeof(*dev));
    proot = malloc((m->nroots ? m->nroots : 1) * sizeof(*proot));
    if (use == NULL || tracked == NULL || bx == NULL || dev == NULL || proot == NULL) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    state = read_state(p);
    const char *skey = json_string_value(json_object_get(state, "key"));
    const char *sscope = json_string_value(json_object_get(state, "scope"));
    if (state == NULL || skey == NULL || sscope == NULL)
        snprintf(st->why, sizeof(st->why), "no restore marked the files on this runner");
    else if (parent == NULL || strcmp(skey, parent->key) != 0 || strcmp(sscope, parent->scope) != 0)
        snprintf(st->why, sizeof(st->why), "the files were marked for %s, not for the parent %s",
                 skey, parent ? parent->key : "(none)");
    else
        tracked_roots(tracked, dev, m, p, state, st->why, sizeof(st->why));
    for (size_t r = 0; r < m->nroots; r++) {
        bx[r] = stow_buildx_detect(p->abs_paths[r]);
        st->tracked |= tracked[r];
        proot[r] = -1;
        for (size_t q = 0; parent != NULL && q < parent->nroots; q++)
            if (strcmp(m->roots[r], parent->roots[q]) == 0)
                proot[r] = (int32_t)q;
    }
    for (size_t i = 0; i < m->nfiles; i++) {
        const stow_file_entry *e = &m->files[i];
        if (e->type != STOW_FT_FILE || in_buildx(p, bx, e->root, e->path)) {
            use[i] = STOW_USE_NONE;
            continue;
        }
        if (!tracked[e->root]) {
            use[i] = STOW_USE_UNKNOWN;
            continue;
        }
        char path[PATH_MAX];
        struct stat fs;
        if (snprintf(path, sizeof(path), "%s/%s", p->abs_paths[e->root], e->path) >=
                (int)sizeof(path) ||
            lstat(path, &fs) != 0 || fs.st_dev != dev[e->root]) {
            use[i] = STOW_USE_UNKNOWN;
            continue;
        }
        const stow_file_entry *pe = stow_manifest_find_mapped(parent, proot, e);
        if (!stow_trim_is_marked(&fs))
            use[i] = STOW_USE_READ;
        else
            use[i] = pe != NULL ? STOW_USE_UNREAD : STOW_USE_LEFTOVER;
    }
    stow_trim_policy pol = {.after = p->trim_unused_after > 0 ? (uint32_t)p->trim_unused_after : 0,
                            .enabled = p->trim,
                            .build_failed = p->build_failed};
    if (!st->tracked)
        pol.enabled = 0;
    rc = stow_trim_plan(st, dropped, m, parent, use, &pol, err);
    if (rc != STOW_OK)
        goto done;
    if (!st->tracked) {
        if (p->trim_unused_after > 0)
            stow_info("trimming unavailable: %s; every file is kept", st->why);
        else
            stow_debug("use tracking unavailable: %s", st->why);
    } else if (p->trim_unused_after > 0 && p->build_failed) {
        snprintf(st->why, sizeof(st->why), "the build failed");
        stow_info(
            "not trimming: the build failed (its reads are incomplete); unread counts are kept");
    } else if (p->trim_unused_after > 0 && !p->trim) {
        snprintf(st->why, sizeof(st->why), "--no-trim");
        stow_info("not trimming on this save (--no-trim)");
    } else if (st->why[0] != '\0') {
        stow_info("use tracking partly unavailable: %s; files there are kept", st->why);
    }
    if (st->files_kept_out > 0) {
        char b[32];
        stow_format_bytes(b, sizeof(b), st->bytes_kept_out);
        stow_info("trim: %llu files (%s) trimmed earlier and still unread stay out of the entry",
                  (unsigned long long)st->files_kept_out, b);
    }
done:
    json_decref(state);
    free(proot);
    free(dev);
    free(bx);
    free(tracked);
    free(use);
    return rc;
}

void stow_trim_remove_local(const stow_trim_dropped *d, const stow_cache_params *p)
{
    for (size_t i = 0; d != NULL && i < d->n; i++) {
        char path[PATH_MAX];
        if (snprintf(path, sizeof(path), "%s/%s", p->abs_paths[d->root[i]], d->path[i]) >=
            (int)sizeof(path))
            continue;
        /* Only if it still carries the marker: a file read since the save looked is kept. */
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) && stow_trim_is_marked(&st) &&
            unlink(path) != 0)
            stow_warn("trim_local: cannot remove %s: %s", path, strerror(errno));
    }
}

/* ------------------------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------------------------ */

int stow_trim_parse_build_status(const char *s)
{
    static const char *const ok[] = {"success", "succeeded", "successful", "passed", "ok", "true"};
    static const char *const bad[] = {"failed", "failure", "canceled", "cancelled",
                                      "error",  "errored", "false"};
    if (s == NULL || s[0] == '\0')
        return 0;
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (strcasecmp(s, ok[i]) == 0)
            return 0;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (strcasecmp(s, bad[i]) == 0)
            return 1;
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end != s && *end == '\0' && errno == 0 && v >= 0 && v <= 255)
        return v != 0;
    return -1;
}

void stow_trim_dead_weight(uint64_t *files, uint64_t *bytes, const stow_manifest *m, uint32_t after)
{
    *files = *bytes = 0;
    if (after == 0)
        after = 1;
    for (size_t i = 0; i < m->nfiles; i++) {
        if (m->files[i].type == STOW_FT_FILE && m->files[i].unread >= after) {
            (*files)++;
            *bytes += m->files[i].size;
        }
    }
}
