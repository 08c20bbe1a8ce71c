/* The host side of a cache-mount transfer: a host directory packed into a tar with the
 * recorded numeric owners, and a tar from the builder unpacked beside the host directory and
 * swapped in place of it (see mounts_tar.h). */
#include "mounts_tar.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "paths.h"

#define MAX_META (64u << 20) /* bytes of a .stowage-mount.json read */

int stow_mounts_read_file(stow_buf *b, const char *path, size_t max, stow_error *err)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return stow_error_set(err, errno == ENOENT ? STOW_EUSAGE : STOW_ERR, "%s: %s", path,
                              strerror(errno));
    stow_buf_init(b, max);
    char chunk[16384];
    size_t n;
    int rc = STOW_OK;
    while (rc == STOW_OK && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        rc = stow_buf_add(b, chunk, n, err);
    if (rc == STOW_OK && ferror(f))
        rc = stow_error_set(err, STOW_ERR, "%s: read error", path);
    fclose(f);
    if (rc != STOW_OK)
        stow_error_wrap(err, "%s", path);
    return rc;
}

/* ---- host side: tar <-> directory ---- */

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if ((flag == FTW_DP ? rmdir(path) : unlink(path)) != 0 && errno != ENOENT)
        stow_warn("cannot remove %s: %s", path, strerror(errno));
    return 0;
}

void stow_mounts_remove_tree(const char *dir)
{
    struct stat st;
    if (dir != NULL && lstat(dir, &st) == 0)
        nftw(dir, remove_one, 32, FTW_DEPTH | FTW_PHYS);
}

/* Owners recorded by the last extract: {"owners": {"rel/path": [uid, gid], ...}} (root ".").
 * Returns NULL when there is none or it cannot be read (owners then default to 0:0). */
static json_t *load_meta(const char *host)
{
    char path[4200];
    if (snprintf(path, sizeof(path), "%s/%s", host, STOW_MOUNTS_META) >= (int)sizeof(path))
        return NULL;
    struct stat st;
    if (stat(path, &st) != 0 || st.st_size > (off_t)MAX_META)
        return NULL;
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (j == NULL)
        stow_warn("%s: %s (line %d); owners inside the mount default to 0:0", path, je.text,
                  je.line);
    return j;
}

static void owner_of(json_t *owners, const char *rel, long *uid, long *gid)
{
    json_t *o = owners ? json_object_get(owners, rel) : NULL;
    if (json_is_array(o) && json_array_size(o) == 2 && json_is_integer(json_array_get(o, 0)) &&
        json_is_integer(json_array_get(o, 1))) {
        json_int_t u = json_integer_value(json_array_get(o, 0)),
                   g = json_integer_value(json_array_get(o, 1));
        if (u >= 0 && u <= 0x7fffffff && g >= 0 && g <= 0x7fffffff) {
            *uid = (long)u;
            *gid = (long)g;
        }
    }
}

/* Packs host (a directory) into a tar at tarpath: numeric owners from the recorded metadata
 * (else 0:0, and the root as the mount declares), no names, xattrs or ACLs. */
int stow_mounts_pack(uint64_t *files, const stow_mount *m, const char *tarpath, stow_error *err)
{
    struct archive *rd = archive_read_disk_new(), *wr = archive_write_new();
    struct archive_entry *e = archive_entry_new();
    json_t *meta = load_meta(m->host);
    json_t *owners = meta ? json_object_get(meta, "owners") : NULL;
    int rc = STOW_OK;
    char buf[65536];
    size_t hl = strlen(m->host);
    if (rd == NULL || wr == NULL || e == NULL) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    archive_read_disk_set_symlink_physical(rd);
    archive_read_disk_set_behavior(rd, ARCHIVE_READDISK_NO_XATTR | ARCHIVE_READDISK_NO_ACL |
                                           ARCHIVE_READDISK_NO_FFLAGS |
                                           ARCHIVE_READDISK_NO_TRAVERSE_MOUNTS);
    archive_write_set_format_gnutar(wr);
    archive_write_add_filter_none(wr);
    archive_write_set_bytes_in_last_block(wr, 1);
    if (archive_write_open_filename(wr, tarpath) != ARCHIVE_OK) {
        rc = stow_error_set(err, STOW_ERR, "%s: %s", tarpath, archive_error_string(wr));
        goto done;
    }
    if (archive_read_disk_open(rd, m->host) != ARCHIVE_OK) {
        rc = stow_error_set(err, STOW_ERR, "%s: %s", m->host, archive_error_string(rd));
        goto done;
    }
    for (;;) {
        archive_entry_clear(e);
        int r = archive_read_next_header2(rd, e);
        if (r == ARCHIVE_EOF)
            break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            rc = stow_error_set(err, STOW_ERR, "%s: %s", m->host, archive_error_string(rd));
            goto done;
        }
        const char *path = archive_entry_pathname(e);
        const char *rel = strncmp(path, m->host, hl) == 0 ? path + hl : "";
        while (*rel == '/')
            rel++;
        mode_t type = archive_entry_filetype(e);
        if (type == AE_IFDIR)
            archive_read_disk_descend(rd);
        if (strcmp(rel, STOW_MOUNTS_META) == 0)
            continue;
        if (type != AE_IFDIR && type != AE_IFREG && type != AE_IFLNK) {
            stow_debug("%s/%s: not a file, directory or link; skipped", m->host, rel);
            continue;
        }
        char name[4200];
        if (snprintf(name, sizeof(name), "./%s", rel) >= (int)sizeof(name)) {
            rc = stow_error_set(err, STOW_ERR, "%s/%s: path too long", m->host, rel);
            goto done;
        }
        long uid = 0, gid = 0;
        if (rel[0] == '\0') {
            uid = m->uid > 0 ? m->uid : 0;
            gid = m->gid > 0 ? m->gid : 0;
        }
        owner_of(owners, rel[0] ? rel : ".", &uid, &gid);
        archive_entry_set_pathname(e, name);
        archive_entry_set_uid(e, uid);
        archive_entry_set_gid(e, gid);
        archive_entry_set_uname(e, NULL);
        archive_entry_set_gname(e, NULL);
        if (archive_write_header(wr, e) != ARCHIVE_OK) {
            rc = stow_error_set(err, STOW_ERR, "%s: %s", name, archive_error_string(wr));
            goto done;
        }
        if (type == AE_IFREG && archive_entry_size(e) > 0) {
            ssize_t n;
            while ((n = archive_read_data(rd, buf, sizeof(buf))) > 0) {
                if (archive_write_data(wr, buf, (size_t)n) != n) {
                    rc = stow_error_set(err, STOW_ERR, "%s: %s", tarpath, archive_error_string(wr));
                    goto done;
                }
            }
            if (n < 0) {
                rc = stow_error_set(err, STOW_ERR, "%s/%s: %s", m->host, rel,
                                    archive_error_string(rd));
                goto done;
            }
        }
        (*files)++;
    }
    if (archive_write_close(wr) != ARCHIVE_OK)
        rc = stow_error_set(err, STOW_ERR, "%s: %s", tarpath, archive_error_string(wr));
done:
    json_decref(meta);
    archive_entry_free(e);
    if (rd)
        archive_read_free(rd);
    if (wr)
        archive_write_free(wr);
    return rc;
}

/* "./a/b" -> "a/b" in tmp; "." and "./" -> "" (the mount's root). NULL when unsafe. */
static const char *tar_rel(char *tmp, size_t tmpsz, const char *p)
{
    while (p[0] == '.' && p[1] == '/')
        p += 2;
    if (p[0] == '/')
        return NULL;
    if (strcmp(p, ".") == 0 || p[0] == '\0')
        return "";
    size_t n = strlen(p);
    if (n >= tmpsz)
        return NULL;
    memcpy(tmp, p, n + 1);
    while (n > 0 && tmp[n - 1] == '/')
        tmp[--n] = '\0';
    return stow_path_rel_ok(tmp) ? tmp : NULL;
}

/* Writes the owners file into dir; keeps the mtime of an identical previous one (old may be
 * NULL) so that an unchanged mount leaves nothing for save to upload. */
static int write_meta(const char *dir, const char *old_dir, const stow_mount *m, json_t *owners,
                      stow_error *err)
{
    char path[4200], old[4200];
    snprintf(path, sizeof(path), "%s/%s", dir, STOW_MOUNTS_META);
    json_t *j = json_pack("{s:i, s:s, s:s, s:O}", "version", 1, "id", m->id, "target",
                          m->target ? m->target : "", "owners", owners);
    if (j == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    int r = json_dump_file(j, path, JSON_SORT_KEYS | JSON_INDENT(1));
    json_decref(j);
    if (r != 0)
        return stow_error_set(err, STOW_ERR, "%s: cannot write", path);
    if (old_dir == NULL ||
        snprintf(old, sizeof(old), "%s/%s", old_dir, STOW_MOUNTS_META) >= (int)sizeof(old))
        return STOW_OK;
    stow_buf a = {0}, b = {0};
    struct stat st;
    if (stat(old, &st) == 0 && stow_mounts_read_file(&a, path, MAX_META, NULL) == STOW_OK &&
        stow_mounts_read_file(&b, old, MAX_META, NULL) == STOW_OK && a.len == b.len &&
        memcmp(stow_buf_str(&a), stow_buf_str(&b), a.len) == 0) {
        struct timespec ts[2] = {st.st_atim, st.st_mtim};
        utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW);
    }
    stow_buf_free(&a);
    stow_buf_free(&b);
    return STOW_OK;
}

/* 1 when dir holds nothing but the owners file (or cannot be read). */
static int dir_empty(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return 1;
    struct dirent *de;
    int empty = 1;
    while (empty && (de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0 &&
            strcmp(de->d_name, STOW_MOUNTS_META) != 0)
            empty = 0;
    closedir(d);
    return empty;
}

/* Unpacks tarpath into a new directory beside m->host, then swaps it in place of m->host. */
int stow_mounts_unpack(uint64_t *files, const stow_mount *m, const char *tarpath, stow_error *err)
{
    struct archive *rd = archive_read_new(), *wr = archive_write_disk_new();
    json_t *owners = json_object();
    char *stage = NULL, *old = NULL, *parent = NULL;
    int rc = STOW_OK, swapped = 0;
    uint64_t count = 0;
    size_t n = strlen(m->host) + 40;
    stage = malloc(n);
    old = malloc(n);
    parent = strdup(m->host);
    if (rd == NULL || wr == NULL || owners == NULL || stage == NULL || old == NULL ||
        parent == NULL) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    snprintf(stage, n, "%s.stowage-new-%ld", m->host, (long)getpid());
    snprintf(old, n, "%s.stowage-old-%ld", m->host, (long)getpid());
    char *slash = strrchr(parent, '/');
    if (slash != NULL && slash != parent) {
        *slash = '\0';
        if ((rc = stow_path_mkdirs(parent, 0755, err)) != STOW_OK)
            goto done;
    }
    stow_mounts_remove_tree(stage);
    if (mkdir(stage, 0755) != 0) {
        rc = stow_error_set(err, STOW_ERR, "mkdir %s: %s", stage, strerror(errno));
        goto done;
    }
    archive_read_support_format_tar(rd);
    archive_read_support_format_gnutar(rd);
    archive_write_disk_set_options(wr, ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_PERM |
                                           ARCHIVE_EXTRACT_SECURE_SYMLINKS |
                                           ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                                           ARCHIVE_EXTRACT_UNLINK);
    if (archive_read_open_filename(rd, tarpath, 65536) != ARCHIVE_OK) {
        rc = stow_error_set(err, STOW_ERR, "%s: %s", tarpath, archive_error_string(rd));
        goto done;
    }
    struct archive_entry *e;
    char full[8400], hlpath[8400], relbuf[4200], hlbuf[4200], prev[8400];
    struct stat st;
    int had = lstat(m->host, &st) == 0;
    uint64_t reused = 0;
    struct timespec root_times[2] = {{0, UTIME_OMIT}, {0, UTIME_OMIT}};
    for (;;) {
        int r = archive_read_next_header(rd, &e);
        if (r == ARCHIVE_EOF)
            break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            rc = stow_error_set(err, STOW_ECORRUPT, "%s: %s", tarpath, archive_error_string(rd));
            goto done;
        }
        const char *rel = tar_rel(relbuf, sizeof(relbuf), archive_entry_pathname(e));
        if (rel == NULL) {
            rc = stow_error_set(err, STOW_ECORRUPT, "%s: unsafe path \"%s\"", tarpath,
                                archive_entry_pathname(e));
            goto done;
        }
        mode_t type = archive_entry_filetype(e);
        if (type != AE_IFDIR && type != AE_IFREG && type != AE_IFLNK) {
            stow_debug("%s: %s is not a file, directory or link; skipped", m->id, rel);
            continue;
        }
        if (strcmp(rel, STOW_MOUNTS_META) == 0)
            continue;
        if (rel[0] == '\0' && archive_entry_mtime_is_set(e)) {
            root_times[0].tv_nsec = UTIME_NOW;
            root_times[1].tv_sec = archive_entry_mtime(e);
            root_times[1].tv_nsec = archive_entry_mtime_nsec(e);
        }
        la_int64_t uid = archive_entry_uid(e), gid = archive_entry_gid(e);
        if (uid != 0 || gid != 0) {
            json_t *pair = json_pack("[I, I]", (json_int_t)uid, (json_int_t)gid);
            if (pair == NULL || json_object_set_new(owners, rel[0] ? rel : ".", pair) != 0) {
                rc = stow_error_set(err, STOW_ERR, "out of memory");
                goto done;
            }
        }
        snprintf(full, sizeof(full), rel[0] ? "%s/%s" : "%s%s", stage, rel);
        const char *hl = archive_entry_hardlink(e);
        /* A file the host directory already has with the same size, mtime and mode (what save
         * compares too) is linked into the new tree instead of written again: an unchanged
         * mount costs no host writes. */
        if (had && type == AE_IFREG && hl == NULL && rel[0] &&
            snprintf(prev, sizeof(prev), "%s/%s", m->host, rel) < (int)sizeof(prev) &&
            lstat(prev, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == archive_entry_size(e) &&
            st.st_mtim.tv_sec == archive_entry_mtime(e) &&
            st.st_mtim.tv_nsec == archive_entry_mtime_nsec(e) &&
            (st.st_mode & 07777) == (archive_entry_perm(e) & 07777) && link(prev, full) == 0) {
            count++;
            reused++;
            continue;
        }
        archive_entry_set_pathname(e, full);
        if (hl != NULL) {
            const char *hrel = tar_rel(hlbuf, sizeof(hlbuf), hl);
            if (hrel == NULL || hrel[0] == '\0') {
                rc = stow_error_set(err, STOW_ECORRUPT, "%s: unsafe hard link \"%s\"", tarpath, hl);
                goto done;
            }
            snprintf(hlpath, sizeof(hlpath), "%s/%s", stage, hrel);
            archive_entry_set_hardlink(e, hlpath);
        }
        if (archive_write_header(wr, e) != ARCHIVE_OK) {
            rc = stow_error_set(err, STOW_ERR, "%s: %s", full, archive_error_string(wr));
            goto done;
        }
        if (type == AE_IFREG && archive_entry_size(e) > 0) {
            const void *blk;
            size_t sz;
            la_int64_t off;
            while ((r = archive_read_data_block(rd, &blk, &sz, &off)) == ARCHIVE_OK) {
                if (archive_write_data_block(wr, blk, sz, off) != ARCHIVE_OK) {
                    rc = stow_error_set(err, STOW_ERR, "%s: %s", full, archive_error_string(wr));
                    goto done;
                }
            }
            if (r != ARCHIVE_EOF) {
                rc = stow_error_set(err, STOW_ECORRUPT, "%s: %s", tarpath,
                                    archive_error_string(rd));
                goto done;
            }
        }
        if (archive_write_finish_entry(wr) != ARCHIVE_OK) {
            rc = stow_error_set(err, STOW_ERR, "%s: %s", full, archive_error_string(wr));
            goto done;
        }
        count++;
    }
    if (archive_write_close(wr) != ARCHIVE_OK) {
        rc = stow_error_set(err, STOW_ERR, "%s: %s", stage, archive_error_string(wr));
        goto done;
    }
    if ((rc = write_meta(stage, had ? m->host : NULL, m, owners, err)) != STOW_OK)
        goto done;
    /* The root's own time last: writing the owners file changed it. */
    utimensat(AT_FDCWD, stage, root_times, 0);
    *files += count;
    if (reused)
        stow_debug("%s: %llu unchanged files linked from the previous tree", m->host,
                   (unsigned long long)reused);
    if (count <= 1 && had && !dir_empty(m->host)) {
        /* An empty mount (a builder that never ran the step, or lost the injected data)
         * never replaces a cache that has content: a save would delete it from the store. */
        stow_warn("cache mount %s is empty; %s keeps its contents", m->id, m->host);
        goto done;
    }
    stow_mounts_remove_tree(old);
    if (had && rename(m->host, old) != 0) {
        rc = stow_error_set(err, STOW_ERR, "rename %s: %s", m->host, strerror(errno));
        goto done;
    }
    if (rename(stage, m->host) != 0) {
        rc = stow_error_set(err, STOW_ERR, "rename %s to %s: %s", stage, m->host, strerror(errno));
        if (had)
            rename(old, m->host);
        goto done;
    }
    swapped = 1;
    if (had)
        stow_mounts_remove_tree(old);
done:
    if (!swapped && stage != NULL)
        stow_mounts_remove_tree(stage);
    json_decref(owners);
    if (rd)
        archive_read_free(rd);
    if (wr)
        archive_write_free(wr);
    free(stage);
    free(old);
    free(parent);
    return rc;
}
