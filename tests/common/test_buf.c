/* Unit tests for common/buf.c and common/util.c: the cap holds, failures keep what was
 * there, take hands over the allocation, the string copy reports truncation. */
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "test.h"
#include "util.h"

/* A buffer over caller memory: bounded by the array, never freed, failures recorded. */
static void test_fixed(void)
{
    stow_error err;
    stow_buf b;
    char mem[8];
    stow_buf_init_fixed(&b, mem, sizeof(mem));
    CHECK_STR(stow_buf_str(&b), "");
    CHECK_INT(b.failed, 0);
    CHECK_INT(stow_buf_adds(&b, "abc", &err), 0);
    CHECK_INT(stow_buf_addf(&b, &err, "%d", 1234), 0);
    CHECK(b.ptr == mem);
    CHECK_STR(mem, "abc1234");
    CHECK_INT(stow_buf_add(&b, "x", 1, &err), STOW_ERR); /* 8 > 7 */
    CHECK_INT(b.failed, 1);
    CHECK_STR(mem, "abc1234");
    CHECK_INT(stow_buf_add(&b, "", 0, &err), 0);
    CHECK_INT(b.failed, 1); /* stays set */
    size_t len = 0;
    char *copy = stow_buf_take(&b, &len);
    CHECK(copy != NULL && copy != mem);
    CHECK_STR(copy, "abc1234");
    CHECK_INT(len, 7);
    free(copy);
    CHECK_INT(b.len, 0);
    CHECK_INT(b.failed, 0);
    CHECK(b.ptr == mem);
    stow_buf_free(&b); /* must not free mem */
    CHECK_INT(stow_buf_adds(&b, "ok", &err), 0);
    CHECK_STR(mem, "ok");

    stow_buf z;
    stow_buf_init_fixed(&z, mem, 0);
    CHECK_INT(stow_buf_add(&z, "a", 1, &err), STOW_ERR);
    CHECK_INT(z.failed, 1);
    CHECK_STR(stow_buf_str(&z), "");
}

/* reserve grows once to the size asked for, within the cap, and adds nothing. */
static void test_reserve(void)
{
    stow_error err;
    stow_buf b;
    stow_buf_init(&b, 1000);
    CHECK_INT(stow_buf_reserve(&b, 700, &err), 0);
    CHECK_INT(b.len, 0);
    CHECK(b.cap >= 701);
    CHECK_STR(stow_buf_str(&b), "");
    char *p = b.ptr;
    char data[700];
    memset(data, 'x', sizeof(data));
    CHECK_INT(stow_buf_add(&b, data, sizeof(data), &err), 0);
    CHECK(b.ptr == p);                                    /* no reallocation */
    CHECK_INT(stow_buf_reserve(&b, 301, &err), STOW_ERR); /* 1001 > 1000 */
    CHECK_INT(b.failed, 1);
    CHECK_INT(b.len, 700);
    stow_buf_free(&b);
}

int main(void)
{
    test_reserve();
    stow_error err;
    stow_buf b;

    test_fixed();
    stow_buf_init(&b, 10);
    CHECK_STR(stow_buf_str(&b), "");
    CHECK_INT(stow_buf_adds(&b, "hello", &err), 0);
    CHECK_INT(stow_buf_addf(&b, &err, "%d%s", 12, "34"), 0);
    CHECK_STR(stow_buf_str(&b), "hello1234");
    CHECK_INT(b.len, 9);
    CHECK_INT(stow_buf_add(&b, "xy", 2, &err), STOW_ERR); /* 11 > 10 */
    CHECK(strstr(err.msg, "10 bytes") != NULL);
    CHECK_STR(stow_buf_str(&b), "hello1234"); /* kept */
    CHECK_INT(stow_buf_addf(&b, &err, "%s", "ab"), STOW_ERR);
    CHECK_INT(stow_buf_add(&b, "x", 1, &err), 0); /* exactly at the cap */
    CHECK_INT(b.len, 10);
    CHECK_INT(stow_buf_add(&b, "", 0, &err), 0);

    size_t len = 0;
    char *s = stow_buf_take(&b, &len);
    CHECK_STR(s, "hello1234x");
    CHECK_INT(len, 10);
    free(s);
    CHECK_INT(b.len, 0);
    CHECK(b.ptr == NULL);
    CHECK_INT(b.max, 10);

    s = stow_buf_take(&b, &len); /* empty: an allocated "" */
    CHECK(s != NULL && s[0] == '\0');
    CHECK_INT(len, 0);
    free(s);

    /* binary data with NULs, growth over several doublings */
    stow_buf_init(&b, 1 << 20);
    char chunk[1000];
    memset(chunk, 0, sizeof(chunk));
    for (int i = 0; i < 1000; i++)
        CHECK_INT(stow_buf_add(&b, chunk, sizeof(chunk), &err), 0);
    CHECK_INT(b.len, 1000000);
    char *rest = calloc(1, 48577);
    CHECK_INT(stow_buf_add(&b, rest, 48577, &err), STOW_ERR); /* 1048577 > 1 MiB */
    CHECK_INT(stow_buf_add(&b, rest, 48576, &err), 0);
    free(rest);
    stow_buf_reset(&b);
    CHECK_INT(b.len, 0);
    CHECK_STR(stow_buf_str(&b), "");
    stow_buf_free(&b);
    stow_buf_free(&b); /* twice is fine */
    stow_buf_free(NULL);

    char small[4];
    CHECK_INT(stow_strlcpy(small, "abc", sizeof(small)), 0);
    CHECK_STR(small, "abc");
    CHECK_INT(stow_strlcpy(small, "abcd", sizeof(small)), -1);
    CHECK_STR(small, "abc");

    int64_t t0 = stow_now_ms();
    CHECK(t0 > 0 && stow_now_ms() >= t0);
    CHECK(stow_unix_time() > 1700000000);
    TEST_DONE();
}
