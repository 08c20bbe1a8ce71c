/* libFuzzer harness: the restore path with a sandbox that follows symlinks.
 *
 * The input is a tar archive (zstd-compressed as is when it starts with the zstd magic, else
 * compressed here). It becomes the one layer of an entry in a fresh file store, with an index
 * derived from the archive's own entries (listed with libarchive: every entry whose name and
 * link target the manifest format accepts, plus its parent directories). Then
 * stow_cache_restore runs, as `stowage restore` does, into <sandbox>/root. Afterwards:
 *   - every entry under root, resolved with symlinks followed (realpath, and step by step for
 *     dangling links), must stay inside root;
 *   - <sandbox>/sentinel (a directory beside root) and the sandbox itself are unchanged.
 * Anything else abort()s. */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "backend.h"
#include "buf.h"
#include "cache.h"
#include "layout.h"
#include "config.h"
#include "fuzz_util.h"
#include "hash.h"
#include "log.h"
#include "manifest.h"
#include "paths.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_INPUT (1u << 20)
#define MAX_ENTRIES 512
#define LAYER_ID "0123456789abcdef0123456789abcdef"

static char base[512], sandbox[600], root[700], sentinel[700], store[600], state[600],
    store_url[700];

static void fail(const char *what, const char *detail)
{
    fprintf(stderr, "SANDBOX VIOLATION: %s: %s\n", what, detail);
    abort();
}

/* ---- the sandbox ------------------------------------------------------------------------ */

static void mkdir_or_die(const char *p)
{
    if (mkdir(p, 0755) != 0) {
        perror(p);
        abort();
    }
}

static void make_sandbox(void)
{
    char p[800];
    fuzz_rm_tree(sandbox);
    fuzz_rm_tree(store);
    fuzz_rm_tree(state);
    mkdir_or_die(sandbox);
    mkdir_or_die(root);
    mkdir_or_die(sentinel);
    mkdir_or_die(store);
    snprintf(p, sizeof(p), "%s/dir", sentinel);
    mkdir_or_die(p);
    snprintf(p, sizeof(p), "%s/canary", sentinel);
    fuzz_write_file(p, "canary\n", 7);
    snprintf(p, sizeof(p), "%s/dir/passwd", sentinel);
    fuzz_write_file(p, "root:x:0:0\n", 11);
    /* a link beside root, so a chain can reach it lexically */
    snprintf(p, sizeof(p), "%s/up", sandbox);
    if (symlink("sentinel", p) != 0)
        abort();
}

/* A listing of everything under dir except the entry named skip (names, types, modes, sizes,
 * mtimes, link targets, file contents), for before/after comparison. */
static void snapshot(stow_buf *out, const char *dir, const char *skip)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        stow_buf_addf(out, NULL, "%s: unreadable\n", dir);
        return;
    }
    struct dirent *de;
    char names[64][256];
    size_t n = 0;
    while ((de = readdir(d)) != NULL && n < 64) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (skip && strcmp(de->d_name, skip) == 0)
            continue;
        snprintf(names[n++], sizeof(names[0]), "%s", de->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof(names[0]), (int (*)(const void *, const void *))strcmp);
    for (size_t i = 0; i < n; i++) {
        char p[PATH_MAX];
        struct stat st;
        snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
        if (lstat(p, &st) != 0)
            continue;
        stow_buf_addf(out, NULL, "%s %o %lld %lld.%ld\n", p, (unsigned)st.st_mode,
                      (long long)st.st_size, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
        if (S_ISLNK(st.st_mode)) {
            char t[PATH_MAX];
            ssize_t k = readlink(p, t, sizeof(t) - 1);
            t[k < 0 ? 0 : k] = '\0';
            stow_buf_addf(out, NULL, " -> %s\n", t);
        } else if (S_ISREG(st.st_mode)) {
            uint8_t h[STOW_SHA256_LEN];
            char hex[STOW_SHA256_HEX_LEN + 1];
            stow_error e = {0};
            if (stow_sha256_file(h, p, &e) == STOW_OK) {
                stow_hex(hex, h, sizeof(h));
                stow_buf_addf(out, NULL, " %s\n", hex);
            }
        } else if (S_ISDIR(st.st_mode)) {
            snapshot(out, p, NULL);
        }
    }
}

static int inside(const char *resolved, const char *top)
{
    size_t n = strlen(top);
    return strncmp(resolved, top, n) == 0 && (resolved[n] == '\0' || resolved[n] == '/');
}

/* Resolves an absolute path like realpath, but a missing tail is appended lexically and a
 * dangling link is followed by hand, so a link to a place that does not exist (yet) is judged
 * by where it would lead. Returns 0 with out filled, -1 for a loop (nothing to judge). */
static int resolve(char *out, const char *path, int depth)
{
    if (depth > 40)
        return -1;
    if (realpath(path, out) != NULL)
        return 0;
    if (errno == ELOOP)
        return -1;
    /* Find the longest prefix that resolves. */
    char prefix[PATH_MAX];
    snprintf(prefix, sizeof(prefix), "%s", path);
    for (;;) {
        char *slash = strrchr(prefix, '/');
        if (slash == NULL)
            return -1;
        char *tail = slash + 1;
        const char *rest = path + (tail - prefix); /* first unresolvable component and after */
        *slash = '\0';
        char dirreal[PATH_MAX];
        if (realpath(prefix[0] ? prefix : "/", dirreal) == NULL) {
            if (errno == ELOOP)
                return -1;
            continue;
        }
        char comp[NAME_MAX + 1];
        size_t cl = strcspn(rest, "/");
        if (cl > NAME_MAX)
            return -1;
        memcpy(comp, rest, cl);
        comp[cl] = '\0';
        const char *after = rest + cl;
        char p[PATH_MAX], t[PATH_MAX];
        snprintf(p, sizeof(p), "%s/%s", strcmp(dirreal, "/") == 0 ? "" : dirreal, comp);
        ssize_t k = readlink(p, t, sizeof(t) - 1);
        char next[PATH_MAX];
        if (k >= 0) { /* a dangling (or looping) link: follow it by hand */
            t[k] = '\0';
            if (t[0] == '/')
                snprintf(next, sizeof(next), "%s%s", t, after);
            else
                snprintf(next, sizeof(next), "%s/%s%s", dirreal, t, after);
            return resolve(out, next, depth + 1);
        }
        /* Missing from here on: normalise the rest lexically. */
        snprintf(out, PATH_MAX, "%s", dirreal);
        char restcopy[PATH_MAX];
        snprintf(restcopy, sizeof(restcopy), "%s", rest);
        char *save = NULL;
        for (char *c = strtok_r(restcopy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
            if (strcmp(c, ".") == 0)
                continue;
            if (strcmp(c, "..") == 0) {
                char *s = strrchr(out, '/');
                if (s != NULL)
                    *(s == out ? s + 1 : s) = '\0';
                continue;
            }
            size_t ol = strlen(out);
            snprintf(out + ol, PATH_MAX - ol, "%s%s", ol > 0 && out[ol - 1] == '/' ? "" : "/", c);
        }
        return 0;
    }
}

static void check_tree(const char *dir, const char *rootreal)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return; /* a restored mode may make it unreadable: nothing to follow in there */
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char p[PATH_MAX], r[PATH_MAX];
        struct stat st;
        snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
        if (lstat(p, &st) != 0)
            continue;
        if (resolve(r, p, 0) == 0 && !inside(r, rootreal))
            fail(p, r);
        if (S_ISDIR(st.st_mode))
            check_tree(p, rootreal);
        else if (!S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode))
            fail("not a file, directory or symlink", p);
    }
    closedir(d);
}

/* ---- the entry -------------------------------------------------------------------------- */

static int has_path(const stow_manifest *m, const char *rel)
{
    for (size_t i = 0; i < m->nfiles; i++)
        if (strcmp(m->files[i].path, rel) == 0)
            return 1;
    return 0;
}

static void add_entry(stow_manifest *m, const char *rel, char type, uint32_t mode, uint64_t size,
                      int64_t mtime, const char *target)
{
    if (!stow_path_rel_ok(rel) || has_path(m, rel) || m->nfiles >= MAX_ENTRIES)
        return;
    if (type == STOW_FT_LINK && (target == NULL || !stow_path_link_ok(rel, target)))
        return;
    /* parents first, as directories */
    char parent[PATH_MAX];
    snprintf(parent, sizeof(parent), "%s", rel);
    for (char *s = strchr(parent, '/'); s; s = strchr(s + 1, '/')) {
        *s = '\0';
        if (!has_path(m, parent)) {
            stow_file_entry d = {0, parent, STOW_FT_DIR, 0755, 0, mtime, 0, -1, NULL, NULL, 0};
            stow_error e = {0};
            if (stow_manifest_add_file(m, &d, &e) != STOW_OK)
                abort();
        }
        *s = '/';
    }
    stow_file_entry f = {0,
                         (char *)rel,
                         type,
                         mode & 07777,
                         type == STOW_FT_FILE ? size : 0,
                         mtime,
                         0,
                         type == STOW_FT_DIR ? -1 : 0,
                         type == STOW_FT_LINK ? (char *)target : NULL,
                         NULL,
                         0};
    stow_error e = {0};
    if (stow_manifest_add_file(m, &f, &e) != STOW_OK)
        abort();
}

/* Lists the archive (already zstd-compressed) and builds the index from its entries. */
static void index_archive(stow_manifest *m, const void *zbuf, size_t zlen)
{
    struct archive *a = archive_read_new();
    if (a == NULL)
        abort();
    archive_read_support_filter_zstd(a);
    archive_read_support_format_tar(a);
    if (archive_read_open_memory(a, zbuf, zlen) == ARCHIVE_OK) {
        struct archive_entry *ae;
        while (archive_read_next_header(a, &ae) == ARCHIVE_OK) {
            const char *name = archive_entry_pathname(ae);
            if (name == NULL || strncmp(name, "0/", 2) != 0)
                continue;
            mode_t t = archive_entry_filetype(ae);
            /* hard links, devices and fifos go in as files: unpack must refuse them */
            char type = t == AE_IFDIR ? STOW_FT_DIR : t == AE_IFLNK ? STOW_FT_LINK : STOW_FT_FILE;
            int64_t size = archive_entry_size(ae);
            add_entry(m, name + 2, type, (uint32_t)archive_entry_perm(ae),
                      size < 0 ? 0 : (uint64_t)size, archive_entry_mtime(ae),
                      archive_entry_symlink(ae));
        }
    }
    archive_read_free(a);
}

/* Text mode: an input starting with "#entries\n" describes the archive one entry per line,
 * "<type> <name> [<arg>]": f file (arg = contents), x setuid executable, l symlink (arg =
 * target), h hard link (arg = target), d directory, c character device, p fifo. Names are
 * archive names as is ("0/a", "0/../x", "/abs"). Mutating lines of text reaches multi-entry
 * shapes, such as symlink chains, that byte-level mutation of a tar almost never does. */
#define ENTRIES_MAGIC "#entries\n"
#define TEXT_TAR_MAX (1u << 20)

static size_t build_tar(uint8_t *out, size_t cap, const uint8_t *data, size_t size)
{
    struct archive *a = archive_write_new();
    struct archive_entry *ae = archive_entry_new();
    size_t used = 0;
    char *text = malloc(size + 1);
    if (a == NULL || ae == NULL || text == NULL)
        abort();
    memcpy(text, data, size);
    text[size] = '\0';
    if (archive_write_set_format_pax_restricted(a) != ARCHIVE_OK ||
        archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK ||
        archive_write_open_memory(a, out, cap, &used) != ARCHIVE_OK)
        abort();
    char *save = NULL;
    for (char *line = strtok_r(text + strlen(ENTRIES_MAGIC), "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '\0' || line[1] != ' ')
            continue;
        char t = line[0];
        char *name = line + 2, *arg = strchr(name, ' ');
        if (arg != NULL)
            *arg++ = '\0';
        else
            arg = "";
        archive_entry_clear(ae);
        archive_entry_set_pathname(ae, name);
        archive_entry_set_mtime(ae, 1700000000, 0);
        archive_entry_set_perm(ae, t == 'x' ? 04755 : t == 'd' ? 0755 : 0644);
        archive_entry_set_size(ae, 0);
        switch (t) {
        case 'f':
        case 'x':
            archive_entry_set_filetype(ae, AE_IFREG);
            archive_entry_set_size(ae, (la_int64_t)strlen(arg));
            break;
        case 'l':
            archive_entry_set_filetype(ae, AE_IFLNK);
            archive_entry_set_symlink(ae, arg);
            break;
        case 'h':
            archive_entry_set_filetype(ae, AE_IFREG);
            archive_entry_set_hardlink(ae, arg);
            break;
        case 'd': archive_entry_set_filetype(ae, AE_IFDIR); break;
        case 'c':
            archive_entry_set_filetype(ae, AE_IFCHR);
            archive_entry_set_rdev(ae, 0x0103);
            break;
        case 'p': archive_entry_set_filetype(ae, AE_IFIFO); break;
        default: continue;
        }
        if (archive_write_header(a, ae) < ARCHIVE_WARN)
            break; /* out of room: the archive so far */
        if ((t == 'f' || t == 'x') && archive_write_data(a, arg, strlen(arg)) < 0)
            break;
    }
    archive_write_close(a);
    archive_write_free(a);
    archive_entry_free(ae);
    free(text);
    return used;
}

static void setup(void)
{
    snprintf(base, sizeof(base), "%s", fuzz_tmp_dir("unpack"));
    snprintf(sandbox, sizeof(sandbox), "%s/sb", base);
    snprintf(root, sizeof(root), "%s/root", sandbox);
    snprintf(sentinel, sizeof(sentinel), "%s/sentinel", sandbox);
    snprintf(store, sizeof(store), "%s/store", base);
    snprintf(state, sizeof(state), "%s/state", base);
    snprintf(store_url, sizeof(store_url), "file://%s", store);
    /* Refused archives are the common case: keep the log quiet unless asked. */
    stow_log_set_level(getenv("STOW_FUZZ_VERBOSE") ? STOW_LOG_DEBUG : (stow_log_level)-1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_MAX_INPUT)
        return 0;
    if (base[0] == '\0')
        setup();
    make_sandbox();

    static uint8_t text_tar[TEXT_TAR_MAX];
    if (size >= strlen(ENTRIES_MAGIC) && memcmp(data, ENTRIES_MAGIC, strlen(ENTRIES_MAGIC)) == 0) {
        size = build_tar(text_tar, sizeof(text_tar), data, size);
        data = text_tar;
    }

    /* The layer object: the input itself if it is a zstd frame, else compressed here. */
    void *zbuf = NULL;
    size_t zlen = size;
    static const uint8_t magic[4] = {0x28, 0xb5, 0x2f, 0xfd};
    if (size >= 4 && memcmp(data, magic, 4) == 0) {
        zbuf = malloc(size ? size : 1);
        if (zbuf == NULL)
            return 0;
        memcpy(zbuf, data, size);
    } else {
        size_t cap = ZSTD_compressBound(size);
        zbuf = malloc(cap);
        if (zbuf == NULL)
            return 0;
        zlen = ZSTD_compress(zbuf, cap, data, size, 1);
        if (ZSTD_isError(zlen))
            abort();
    }

    stow_error err = {0};
    stow_backend *b = NULL;
    stow_backend_opts bo = {.url = store_url, .verify_tls = 1, .max_retries = -1};
    if (stow_backend_open(&b, &bo, &err) != STOW_OK) {
        fprintf(stderr, "file store: %s\n", err.msg);
        abort();
    }

    stow_manifest *m = stow_manifest_new();
    if (m == NULL || stow_manifest_set_key(m, "fuzz", "default", &err) != STOW_OK ||
        stow_manifest_add_root(m, root, &err) != STOW_OK)
        abort();
    m->created = 1700000000;
    stow_layer *l = stow_manifest_add_layer(m, &err);
    if (l == NULL)
        abort();
    memcpy(l->id, LAYER_ID, sizeof(LAYER_ID));
    uint8_t h[STOW_SHA256_LEN];
    stow_sha256_buf(h, zbuf, zlen);
    stow_hex(l->sha256, h, sizeof(h));
    l->size = zlen;
    l->raw_size = size;
    index_archive(m, zbuf, zlen);
    l->files = m->nfiles;
    stow_manifest_sort(m);

    char *json = NULL, name[256], object[128];
    size_t jlen = 0;
    if (stow_manifest_to_json(&json, &jlen, m, &err) != STOW_OK) {
        /* jansson refuses names that are not UTF-8: such an entry cannot be saved either */
        stow_manifest_free(m);
        stow_backend_free(b);
        free(zbuf);
        return 0;
    }
    if (stow_layout_manifest_name(name, sizeof(name), "default", "fuzz") != STOW_OK ||
        stow_manifest_layer_object(object, sizeof(object), l) != STOW_OK ||
        stow_backend_put_buffer(b, object, zbuf, zlen, 0, &err) != STOW_OK ||
        stow_backend_put_buffer(b, name, json, jlen, 0, &err) != STOW_OK) {
        fprintf(stderr, "setting up the store: %s\n", err.msg);
        abort();
    }

    stow_buf before, after;
    stow_buf_init(&before, 64u << 20);
    stow_buf_init(&after, 64u << 20);
    snapshot(&before, sandbox, "root");

    stow_strlist none = {0, NULL}, paths = {1, (char *[]){root}};
    char *abs_paths[] = {root};
    stow_cache_params p = {
        .backend = b,
        .store_url = store_url,
        .key = "fuzz",
        .restore_keys = &none,
        .scope = "default",
        .fallback_scopes = &none,
        .paths = &paths,
        .abs_paths = abs_paths,
        .state_dir = state,
        .parallel = 1,
    };
    stow_cache_result res;
    stow_error rerr = {0};
    int rc = stow_cache_restore(&res, &p, &rerr);
    if (rc != STOW_OK && rerr.msg[0] == '\0')
        abort();
    if (getenv("STOW_FUZZ_VERBOSE"))
        fprintf(stderr, "restore: %d %s (%zu index entries, %llu files restored)\n", rc, rerr.msg,
                m->nfiles, (unsigned long long)res.files);

    char rootreal[PATH_MAX];
    if (realpath(root, rootreal) == NULL)
        fail("root is gone", root);
    check_tree(root, rootreal);
    snapshot(&after, sandbox, "root");
    if (strcmp(stow_buf_str(&before), stow_buf_str(&after)) != 0) {
        fprintf(stderr, "before:\n%s\nafter:\n%s\n", stow_buf_str(&before), stow_buf_str(&after));
        fail("something outside the root changed", sentinel);
    }

    stow_buf_free(&before);
    stow_buf_free(&after);
    free(json);
    stow_manifest_free(m);
    stow_backend_free(b);
    free(zbuf);
    return 0;
}
