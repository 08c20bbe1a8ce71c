/* Unit tests for backends/file.c through the public backend interface (stow_backend_open
 * with a file:// URL), plus stow_backend_name_ok. */
#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "test.h"

static char base[PATH_MAX];  /* mkdtemp directory */
static char store[PATH_MAX]; /* base/store: does not exist until the first put */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static stow_backend *open_store(void)
{
    char url[PATH_MAX + 16];
    snprintf(url, sizeof(url), "file://%s/", store); /* trailing slash is accepted */
    stow_backend_opts o = {.url = url};
    stow_backend *b = NULL;
    stow_error err = {0};
    CHECK_INT(stow_backend_open(&b, &o, &err), STOW_OK);
    CHECK(b != NULL);
    return b;
}

/* Counts regular files (hidden ones included) below dir. */
static int count_files(const char *dir, int *hidden)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char p[PATH_MAX];
        snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
        struct stat st;
        if (lstat(p, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            n += count_files(p, hidden);
        } else {
            n++;
            if (de->d_name[0] == '.' && hidden)
                (*hidden)++;
        }
    }
    closedir(d);
    return n;
}

static void test_open(void)
{
    stow_backend *b = NULL;
    stow_error err = {0};
    stow_backend_opts o = {.url = "file://relative/dir"};
    CHECK_INT(stow_backend_open(&b, &o, &err), STOW_EUSAGE);
    CHECK(b == NULL && strstr(err.msg, "absolute") != NULL);
    o.url = "ftp://host/x";
    CHECK_INT(stow_backend_open(&b, &o, &err), STOW_EUSAGE);
    CHECK(strstr(err.msg, "\"ftp\"") != NULL);
    o.url = "/just/a/path";
    CHECK_INT(stow_backend_open(&b, &o, &err), STOW_EUSAGE);
    o.url = NULL;
    CHECK_INT(stow_backend_open(&b, &o, &err), STOW_EUSAGE);
    CHECK_INT(stow_backend_open(&b, NULL, &err), STOW_EUSAGE);
    stow_backend_free(NULL);
}

static void test_round_trip(stow_backend *b)
{
    stow_error err = {0};
    const char *text = "{\"version\":1}";
    CHECK(stow_backend_can_list(b));
    CHECK_INT(stow_backend_put_buffer(b, "manifests/main/k-1.json", text, strlen(text), 0, &err),
              STOW_OK);
    char p[PATH_MAX + 64];
    snprintf(p, sizeof(p), "%s/manifests/main/k-1.json", store);
    struct stat st;
    CHECK(stat(p, &st) == 0 && S_ISREG(st.st_mode)); /* nested directories were created */

    char *got = NULL;
    size_t len = 0;
    CHECK_INT(stow_backend_get_buffer(&got, &len, b, "manifests/main/k-1.json", 1024, &err),
              STOW_OK);
    CHECK(got && len == strlen(text) && memcmp(got, text, len) == 0 && got[len] == '\0');
    free(got);

    stow_object_info info = {0};
    CHECK_INT(stow_backend_head(b, "manifests/main/k-1.json", &info, &err), STOW_OK);
    CHECK(info.size == strlen(text));
    CHECK(info.mtime > 1600000000);
    CHECK_INT(stow_backend_head(b, "manifests/main/k-1.json", NULL, &err), STOW_OK);

    /* Overwrite without flags replaces. */
    CHECK_INT(stow_backend_put_buffer(b, "manifests/main/k-1.json", "xy", 2, 0, &err), STOW_OK);
    CHECK_INT(stow_backend_get_buffer(&got, &len, b, "manifests/main/k-1.json", 1024, &err),
              STOW_OK);
    CHECK(got && len == 2 && memcmp(got, "xy", 2) == 0);
    free(got);

    /* Larger than the limit: refused, not truncated. */
    stow_error_clear(&err);
    got = (char *)"sentinel";
    CHECK_INT(stow_backend_get_buffer(&got, &len, b, "manifests/main/k-1.json", 1, &err),
              STOW_ECORRUPT);
    CHECK(got == NULL && strstr(err.msg, "manifests/main/k-1.json") != NULL);

    /* Empty object. */
    CHECK_INT(stow_backend_put_buffer(b, "refs/main/empty", "", 0, 0, &err), STOW_OK);
    CHECK_INT(stow_backend_get_buffer(&got, &len, b, "refs/main/empty", 16, &err), STOW_OK);
    CHECK(got != NULL && len == 0 && got[0] == '\0');
    free(got);
    CHECK_INT(stow_backend_head(b, "refs/main/empty", &info, &err), STOW_OK);
    CHECK(info.size == 0);
}

typedef struct {
    unsigned char *buf;
    size_t len, cap;
    int calls, stop_after;
} sink_buf;

static int sink(void *ud, const void *data, size_t len)
{
    sink_buf *s = ud;
    s->calls++;
    if (s->stop_after && s->calls > s->stop_after)
        return 1;
    if (s->len + len > s->cap)
        return 1;
    memcpy(s->buf + s->len, data, len);
    s->len += len;
    return 0;
}

static void test_ranges(stow_backend *b)
{
    stow_error err = {0};
    size_t n = 3u * 1024 * 1024 + 123; /* spans several of the backend's 1 MiB reads */
    unsigned char *data = malloc(n);
    sink_buf s = {malloc(n + 16), 0, n + 16, 0, 0};
    CHECK(data && s.buf);
    if (!data || !s.buf)
        goto done;
    for (size_t i = 0; i < n; i++)
        data[i] = (unsigned char)((i * 2654435761u) >> 13);
    CHECK_INT(stow_backend_put_buffer(b, "layers/0123.tar.zst", data, n, 0, &err), STOW_OK);

    const struct {
        uint64_t off, len;
    } r[] = {{0, 0},      {0, 1},        {1000, 5},  {1048576 - 3, 2 * 1048576 + 7},
             {n - 10, 0}, {n - 10, 100}, {n - 1, 1}, {n, 0},
             {n + 5, 10}, {17, n},       {17, 1}};
    for (size_t i = 0; i < sizeof(r) / sizeof(r[0]); i++) {
        s.len = 0;
        s.calls = 0;
        uint64_t end = r[i].len ? r[i].off + r[i].len : n;
        if (end > n)
            end = n;
        size_t want = r[i].off >= n ? 0 : (size_t)(end - r[i].off);
        int rc = stow_backend_get(b, "layers/0123.tar.zst", r[i].off, r[i].len, sink, &s, &err);
        if (rc != STOW_OK || s.len != want || (want && memcmp(s.buf, data + r[i].off, want) != 0)) {
            fprintf(stderr, "range %zu (off %llu len %llu): rc=%d got %zu bytes, want %zu\n", i,
                    (unsigned long long)r[i].off, (unsigned long long)r[i].len, rc, s.len, want);
            stow_test_failures++;
        }
    }

    /* A sink that gives up aborts the get with an error. */
    s.len = 0;
    s.calls = 0;
    s.stop_after = 1;
    stow_error_clear(&err);
    CHECK_INT(stow_backend_get(b, "layers/0123.tar.zst", 0, 0, sink, &s, &err), STOW_ERR);
    CHECK(s.len == 1024 * 1024);
    CHECK(strstr(err.msg, "aborted") != NULL);
    /* A sink that set its own error keeps it. */
    s.len = 0;
    s.calls = 0;
    stow_error_set(&err, STOW_ECORRUPT, "sha256 mismatch");
    CHECK_INT(stow_backend_get(b, "layers/0123.tar.zst", 0, 0, sink, &s, &err), STOW_ECORRUPT);
    CHECK_STR(err.msg, "sha256 mismatch");
done:
    free(data);
    free(s.buf);
}

static void test_missing(stow_backend *b)
{
    stow_error err = {0};
    sink_buf s = {NULL, 0, 0, 0, 0};
    stow_object_info info;
    char *got = (char *)"sentinel";
    CHECK_INT(stow_backend_get(b, "manifests/main/nope.json", 0, 0, sink, &s, &err),
              STOW_ENOTFOUND);
    CHECK_INT(stow_backend_get(b, "no/such/dir/x", 0, 0, sink, &s, &err), STOW_ENOTFOUND);
    CHECK_INT(stow_backend_get_buffer(&got, NULL, b, "manifests/main/nope.json", 16, &err),
              STOW_ENOTFOUND);
    CHECK(got == NULL);
    CHECK_INT(stow_backend_head(b, "manifests/main/nope.json", &info, &err), STOW_ENOTFOUND);
    /* A parent segment that is an object, not a directory. */
    CHECK_INT(stow_backend_head(b, "refs/main/empty/x", &info, &err), STOW_ENOTFOUND);
    CHECK_INT(stow_backend_get(b, "refs/main/empty/x", 0, 0, sink, &s, &err), STOW_ENOTFOUND);
    /* A name that is a directory in this store is no object, for get as for head. */
    CHECK_INT(stow_backend_head(b, "manifests/main", &info, &err), STOW_ENOTFOUND);
    CHECK_INT(stow_backend_get(b, "manifests/main", 0, 0, sink, &s, &err), STOW_ENOTFOUND);
    CHECK_INT(s.calls, 0);
}

static void test_del(stow_backend *b)
{
    stow_error err = {0};
    CHECK_INT(stow_backend_put_buffer(b, "tmp/del-me", "1", 1, 0, &err), STOW_OK);
    CHECK_INT(stow_backend_del(b, "tmp/del-me", &err), STOW_OK);
    CHECK_INT(stow_backend_head(b, "tmp/del-me", NULL, &err), STOW_ENOTFOUND);
    CHECK_INT(stow_backend_del(b, "tmp/del-me", &err), STOW_OK);    /* missing = OK */
    CHECK_INT(stow_backend_del(b, "no/such/dir/x", &err), STOW_OK); /* missing parent too */
}

static void test_if_absent(stow_backend *b)
{
    stow_error err = {0};
    CHECK_INT(stow_backend_put_buffer(b, "refs/main/docker-", "first", 5, STOW_PUT_IF_ABSENT, &err),
              STOW_OK);
    stow_error_clear(&err);
    CHECK_INT(stow_backend_put_buffer(b, "refs/main/docker-", "second", 6, STOW_PUT_IF_ABSENT,
                                      &err),
              STOW_EEXIST);
    CHECK_INT(err.code, STOW_EEXIST);
    char *got = NULL;
    CHECK_INT(stow_backend_get_buffer(&got, NULL, b, "refs/main/docker-", 64, &err), STOW_OK);
    CHECK_STR(got, "first");
    free(got);
    char dir[PATH_MAX + 16];
    snprintf(dir, sizeof(dir), "%s/refs/main", store);
    int hidden = 0;
    CHECK_INT(count_files(dir, &hidden), 2); /* "empty" and "docker-" */
    CHECK_INT(hidden, 0);                    /* the losing temp file is gone */
}

typedef struct {
    stow_backend *b;
    int id;
    int rc;
} racer;

static void *race(void *arg)
{
    racer *r = arg;
    char body[32];
    int n = snprintf(body, sizeof(body), "writer-%d", r->id);
    stow_error err = {0};
    r->rc = stow_backend_put_buffer(r->b, "manifests/race/k.json", body, (size_t)n,
                                    STOW_PUT_IF_ABSENT, &err);
    return NULL;
}

static void test_if_absent_race(stow_backend *b)
{
    enum { N = 8 };
    pthread_t t[N];
    racer r[N];
    for (int i = 0; i < N; i++) {
        r[i] = (racer){b, i, 99};
        CHECK_INT(pthread_create(&t[i], NULL, race, &r[i]), 0);
    }
    int winners = 0, winner = -1;
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        if (r[i].rc == STOW_OK) {
            winners++;
            winner = i;
        } else {
            CHECK_INT(r[i].rc, STOW_EEXIST);
        }
    }
    CHECK_INT(winners, 1);
    char *got = NULL, want[32];
    stow_error err = {0};
    snprintf(want, sizeof(want), "writer-%d", winner);
    CHECK_INT(stow_backend_get_buffer(&got, NULL, b, "manifests/race/k.json", 64, &err), STOW_OK);
    CHECK_STR(got, want);
    free(got);
    char dir[PATH_MAX + 32];
    snprintf(dir, sizeof(dir), "%s/manifests/race", store);
    int hidden = 0;
    CHECK_INT(count_files(dir, &hidden), 1);
    CHECK_INT(hidden, 0);
}

static void test_abort(stow_backend *b)
{
    stow_error err = {0};
    stow_put *p = NULL;
    const stow_backend_ops *ops = b->ops;
    CHECK_INT(ops->put_begin(&p, b, "layers/aborted.tar.zst", 10, 0, &err), STOW_OK);
    CHECK(p != NULL);
    if (p == NULL)
        return;
    CHECK_INT(ops->put_write(p, "0123456789", 10, &err), STOW_OK);
    /* Not visible before commit. */
    CHECK_INT(stow_backend_head(b, "layers/aborted.tar.zst", NULL, &err), STOW_ENOTFOUND);
    ops->put_abort(p);
    ops->put_abort(NULL);
    CHECK_INT(stow_backend_head(b, "layers/aborted.tar.zst", NULL, &err), STOW_ENOTFOUND);
    char dir[PATH_MAX + 16];
    snprintf(dir, sizeof(dir), "%s/layers", store);
    int hidden = 0;
    CHECK_INT(count_files(dir, &hidden), 1); /* only layers/0123.tar.zst */
    CHECK_INT(hidden, 0);

    /* A streamed put becomes visible at commit, with every byte written. */
    p = NULL;
    CHECK_INT(ops->put_begin(&p, b, "layers/streamed.tar.zst", -1, 0, &err), STOW_OK);
    if (p == NULL)
        return;
    for (int i = 0; i < 100; i++)
        CHECK_INT(ops->put_write(p, "abcdefghij", 10, &err), STOW_OK);
    CHECK_INT(stow_backend_head(b, "layers/streamed.tar.zst", NULL, &err), STOW_ENOTFOUND);
    CHECK_INT(ops->put_commit(p, &err), STOW_OK);
    stow_object_info info = {0};
    CHECK_INT(stow_backend_head(b, "layers/streamed.tar.zst", &info, &err), STOW_OK);
    CHECK(info.size == 1000);
    hidden = 0;
    CHECK_INT(count_files(dir, &hidden), 2);
    CHECK_INT(hidden, 0);
}

#define MAX_LISTED 32
typedef struct {
    int n, stop_at;
    char names[MAX_LISTED][128];
    uint64_t sizes[MAX_LISTED];
} listing;

static int on_list(void *ud, const char *name, const stow_object_info *info)
{
    listing *l = ud;
    if (l->n < MAX_LISTED) {
        snprintf(l->names[l->n], sizeof(l->names[0]), "%s", name);
        l->sizes[l->n] = info->size;
    }
    l->n++;
    return l->stop_at && l->n >= l->stop_at;
}

static int listed(const listing *l, const char *name)
{
    for (int i = 0; i < l->n && i < MAX_LISTED; i++)
        if (strcmp(l->names[i], name) == 0)
            return 1;
    return 0;
}

static void test_list(void)
{
    /* A fresh store, so the expected set is exact. */
    char saved[PATH_MAX];
    memcpy(saved, store, sizeof(saved));
    snprintf(store, sizeof(store), "%s/list-store", base);
    stow_backend *b = open_store();
    stow_error err = {0};
    listing l = {0};
    if (b == NULL)
        goto done;

    /* Listing a store that does not exist yet is empty, not an error. */
    CHECK_INT(stow_backend_list(b, "", on_list, &l, &err), STOW_OK);
    CHECK_INT(l.n, 0);

    const char *names[] = {"manifests/main/a.json",     "manifests/main/b.json",
                           "manifests/mainline/c.json", "manifests/dev/d.json",
                           "layers/x.tar.zst",          "refs/main/docker-"};
    for (size_t i = 0; i < 6; i++)
        CHECK_INT(stow_backend_put_buffer(b, names[i], names[i], strlen(names[i]), 0, &err),
                  STOW_OK);
    /* A temp file from an interrupted put is not an object. */
    char tmp[PATH_MAX + 64];
    snprintf(tmp, sizeof(tmp), "%s/manifests/main/.e.json.0011223344556677.tmp", store);
    FILE *f = fopen(tmp, "w");
    CHECK(f != NULL);
    if (f)
        fclose(f);

    memset(&l, 0, sizeof(l));
    CHECK_INT(stow_backend_list(b, "manifests/main/", on_list, &l, &err), STOW_OK);
    CHECK_INT(l.n, 2);
    CHECK(listed(&l, "manifests/main/a.json") && listed(&l, "manifests/main/b.json"));
    for (int i = 0; i < l.n && i < MAX_LISTED; i++)
        CHECK(l.sizes[i] == strlen("manifests/main/a.json"));

    memset(&l, 0, sizeof(l));
    CHECK_INT(stow_backend_list(b, "manifests/main", on_list, &l, &err), STOW_OK);
    CHECK_INT(l.n, 3);
    CHECK(listed(&l, "manifests/mainline/c.json"));

    memset(&l, 0, sizeof(l));
    CHECK_INT(stow_backend_list(b, "manifests/main/a", on_list, &l, &err), STOW_OK);
    CHECK_INT(l.n, 1);
    CHECK(listed(&l, "manifests/main/a.json"));

    memset(&l, 0, sizeof(l));
    CHECK_INT(stow_backend_list(b, "", on_list, &l, &err), STOW_OK);
    CHECK_INT(l.n, 6);
    for (size_t i = 0; i < 6; i++)
        CHECK(listed(&l, names[i]));

    memset(&l, 0, sizeof(l));
    CHECK_INT(stow_backend_list(b, NULL, on_list, &l, &err), STOW_OK);
    CHECK_INT(l.n, 6);

    memset(&l, 0, sizeof(l));
    CHECK_INT(stow_backend_list(b, "nope/", on_list, &l, &err), STOW_OK);
    CHECK_INT(l.n, 0);

    memset(&l, 0, sizeof(l));
    CHECK_INT(stow_backend_list(b, "refs/main/docker-", on_list, &l, &err), STOW_OK);
    CHECK_INT(l.n, 1);

    /* The callback can stop the listing. */
    memset(&l, 0, sizeof(l));
    l.stop_at = 2;
    CHECK_INT(stow_backend_list(b, "", on_list, &l, &err), STOW_OK);
    CHECK_INT(l.n, 2);
done:
    stow_backend_free(b);
    memcpy(store, saved, sizeof(store));
}

static void test_bad_names(stow_backend *b)
{
    stow_error err = {0};
    sink_buf s = {NULL, 0, 0, 0, 0};
    /* A name that would leave the store is refused before any file system access. */
    CHECK_INT(stow_backend_put_buffer(b, "../escape", "x", 1, 0, &err), STOW_ERR);
    CHECK(strstr(err.msg, "invalid object name") != NULL);
    char p[PATH_MAX + 16];
    snprintf(p, sizeof(p), "%s/escape", base);
    CHECK(access(p, F_OK) != 0);
    CHECK_INT(stow_backend_get(b, "a/../../x", 0, 0, sink, &s, &err), STOW_ERR);
    CHECK_INT(stow_backend_head(b, "/etc/passwd", NULL, &err), STOW_ERR);
    CHECK_INT(stow_backend_del(b, "../store", &err), STOW_ERR);
}

static void test_name_ok(void)
{
    static const struct {
        const char *name;
        int ok;
    } t[] = {
        {"manifests/main/k-1.json", 1},
        {"layers/0123456789abcdef.tar.zst", 1},
        {"refs/feature_x/docker-linux-", 1},
        {"a", 1},
        {"A.B-c_d", 1},
        {".hidden", 1},
        {"a/..b", 1},
        {"", 0},
        {"..", 0},
        {".", 0},
        {"a/../b", 0},
        {"a/./b", 0},
        {"a/..", 0},
        {"/a", 0},
        {"a/", 0},
        {"a//b", 0},
        {"a b", 0},
        {"a%2F", 0},
        {"a\\b", 0},
        {"a:b", 0},
        {"a?b", 0},
        {"a\nb", 0},
        {"caf\xc3\xa9", 0},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        if (stow_backend_name_ok(t[i].name) != t[i].ok) {
            fprintf(stderr, "name_ok(\"%s\") != %d\n", t[i].name, t[i].ok);
            stow_test_failures++;
        }
    }
    CHECK_INT(stow_backend_name_ok(NULL), 0);
    char longname[1100];
    memset(longname, 'a', sizeof(longname));
    longname[1024] = '\0';
    CHECK_INT(stow_backend_name_ok(longname), 1);
    longname[1024] = 'a';
    longname[1025] = '\0';
    CHECK_INT(stow_backend_name_ok(longname), 0);
}

int main(void)
{
    snprintf(base, sizeof(base), "/tmp/stow-test-file-XXXXXX");
    if (mkdtemp(base) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(store, sizeof(store), "%s/store", base);
    test_open();
    test_name_ok();
    stow_backend *b = open_store();
    if (b) {
        test_round_trip(b);
        test_ranges(b);
        test_missing(b);
        test_del(b);
        test_if_absent(b);
        test_if_absent_race(b);
        test_abort(b);
        test_bad_names(b);
        stow_backend_free(b);
    }
    test_list();
    nftw(base, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    TEST_DONE();
}
