/* Unit tests for agent/refs.c: the prefixes a save writes refs for (separators, the cap,
 * restore keys, duplicates) and the listing fallback against a file store in a temp dir. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "refs.h"
#include "test.h"

static void test_prefixes(void)
{
    stow_strlist l = {0};
    stow_error err = {0};
    CHECK_INT(stow_refs_key_prefixes(&l, "docker-linux_x64.py3-abc", 16, &err), 0);
    CHECK_INT(l.n, 4);
    if (l.n == 4) {
        CHECK_STR(l.v[0], "docker-");
        CHECK_STR(l.v[1], "docker-linux_");
        CHECK_STR(l.v[2], "docker-linux_x64.");
        CHECK_STR(l.v[3], "docker-linux_x64.py3-");
    }
    stow_strlist_free(&l);

    /* No separator, or only a trailing one: no prefix (the key itself is never a ref). */
    CHECK_INT(stow_refs_key_prefixes(&l, "abcdef", 16, &err), 0);
    CHECK_INT(l.n, 0);
    CHECK_INT(stow_refs_key_prefixes(&l, "abc-", 16, &err), 0);
    CHECK_INT(l.n, 0);
    /* '/' and ':' count too; consecutive separators give one prefix each. */
    CHECK_INT(stow_refs_key_prefixes(&l, "a/b:c--d", 16, &err), 0);
    CHECK_INT(l.n, 4);
    if (l.n == 4) {
        CHECK_STR(l.v[0], "a/");
        CHECK_STR(l.v[1], "a/b:");
        CHECK_STR(l.v[2], "a/b:c-");
        CHECK_STR(l.v[3], "a/b:c--");
    }
    stow_strlist_free(&l);

    /* The cap keeps the shortest prefixes and reports how many it dropped. */
    CHECK_INT(stow_refs_key_prefixes(&l, "a-b-c-d-e", 2, &err), 2);
    CHECK_INT(l.n, 2);
    if (l.n == 2) {
        CHECK_STR(l.v[0], "a-");
        CHECK_STR(l.v[1], "a-b-");
    }
    stow_strlist_free(&l);
    char big[200];
    for (int i = 0; i < 99; i++) {
        big[2 * i] = 'k';
        big[2 * i + 1] = '-';
    }
    big[198] = 'z';
    big[199] = '\0';
    CHECK_INT(stow_refs_for_save(&l, big, NULL, &err), STOW_OK);
    CHECK_INT(l.n, STOW_REFS_MAX_AUTO);
    stow_strlist_free(&l);
}

static void test_for_save(void)
{
    stow_strlist l = {0}, rk = {0};
    stow_error err = {0};
    CHECK_INT(stow_strlist_add(&rk, "docker-lin", &err), STOW_OK); /* no separator: added */
    CHECK_INT(stow_strlist_add(&rk, "docker-", &err), STOW_OK);    /* already there */
    CHECK_INT(stow_strlist_add(&rk, "other-", &err), STOW_OK);     /* not a prefix: skipped */
    CHECK_INT(stow_refs_for_save(&l, "docker-linux-abc", &rk, &err), STOW_OK);
    CHECK_INT(l.n, 3);
    if (l.n == 3) {
        CHECK_STR(l.v[0], "docker-");
        CHECK_STR(l.v[1], "docker-linux-");
        CHECK_STR(l.v[2], "docker-lin");
    }
    stow_strlist_free(&l);
    stow_strlist_free(&rk);
}

static void test_list_newest(void)
{
    char base[] = "/tmp/stowage-test-refs.XXXXXX", url[PATH_MAX + 16], key[256];
    stow_error err = {0};
    stow_backend *b = NULL;
    CHECK(mkdtemp(base) != NULL);
    snprintf(url, sizeof(url), "file://%s", base);
    stow_backend_opts o = {.url = url, .verify_tls = 1, .max_retries = -1};
    CHECK_INT(stow_backend_open(&b, &o, &err), STOW_OK);
    if (b == NULL)
        return;
    CHECK_INT(stow_refs_list_newest(key, sizeof(key), b, "main", "pip", &err), STOW_ENOTFOUND);
    CHECK_INT(stow_backend_put_buffer(b, "manifests/main/pip1.json", "{}", 2, 0, &err), STOW_OK);
    CHECK_INT(stow_backend_put_buffer(b, "manifests/other/pip9.json", "{}", 2, 0, &err), STOW_OK);
    CHECK_INT(stow_backend_put_buffer(b, "manifests/main/apt1.json", "{}", 2, 0, &err), STOW_OK);
    char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/manifests/main/pip1.json", base);
    /* pip1 set back in time: pip2 is the newest. */
    CHECK_INT(stow_backend_put_buffer(b, "manifests/main/pip2.json", "{}", 2, 0, &err), STOW_OK);
    struct timespec ts[2] = {{.tv_sec = 1000000000}, {.tv_sec = 1000000000}};
    CHECK_INT(utimensat(AT_FDCWD, path, ts, 0), 0);
    CHECK_INT(stow_refs_list_newest(key, sizeof(key), b, "main", "pip", &err), STOW_OK);
    CHECK_STR(key, "pip2");
    /* pip1 newer now: the listing follows the modification time, not the name. */
    ts[0].tv_sec = ts[1].tv_sec = 4000000000;
    CHECK_INT(utimensat(AT_FDCWD, path, ts, 0), 0);
    CHECK_INT(stow_refs_list_newest(key, sizeof(key), b, "main", "pip", &err), STOW_OK);
    CHECK_STR(key, "pip1");
    CHECK_INT(stow_refs_list_newest(key, sizeof(key), b, "other", "apt", &err), STOW_ENOTFOUND);
    stow_backend_free(b);
    /* The temp store: the objects written above, then their directories. */
    const char *names[] = {"manifests/main/pip1.json",
                           "manifests/main/pip2.json",
                           "manifests/main/apt1.json",
                           "manifests/other/pip9.json",
                           "manifests/main",
                           "manifests/other",
                           "manifests",
                           ""};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", base, names[i]);
        remove(path);
    }
}

int main(void)
{
    test_prefixes();
    test_for_save();
    test_list_newest();
    TEST_DONE();
}
