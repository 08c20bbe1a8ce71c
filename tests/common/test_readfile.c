/* Unit tests for common/readfile.c: a regular file within the cap is read whole; a larger
 * file, /dev/zero, a FIFO with no writer and a directory are refused at once, naming the file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "readfile.h"
#include "test.h"
#include "util.h"

int main(void)
{
    char dir[] = "/tmp/stow-test-readfile-XXXXXX";
    char path[256], fifo[256], big[256];
    stow_error err = {0};
    stow_buf b;
    stow_buf_init(&b, 1 << 20);
    CHECK(mkdtemp(dir) != NULL);

    snprintf(path, sizeof(path), "%s/small", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fputs("hello\nworld\n", f);
    fclose(f);
    CHECK_INT(stow_read_file(&b, path, 100, &err), STOW_OK);
    CHECK_STR(stow_buf_str(&b), "hello\nworld\n");
    CHECK_INT(b.len, 12);
    CHECK_INT(stow_read_file(&b, path, 12, &err), STOW_OK); /* exactly at the limit */
    CHECK_INT(stow_read_file(&b, path, 11, &err), STOW_ERR);
    CHECK(strstr(err.msg, path) != NULL && strstr(err.msg, "limit is 11") != NULL);
    CHECK_INT(b.len, 0); /* nothing kept on error */

    /* A sparse 2 GB file is refused from its size, before anything is read. */
    snprintf(big, sizeof(big), "%s/big", dir);
    f = fopen(big, "w");
    CHECK(f != NULL);
    CHECK(ftruncate(fileno(f), 2LL << 30) == 0);
    fclose(f);
    int64_t t0 = stow_now_ms();
    CHECK_INT(stow_read_file(&b, big, 1 << 20, &err), STOW_ERR);
    CHECK(strstr(err.msg, "2147483648 bytes") != NULL);
    CHECK(stow_now_ms() - t0 < 1000);

    CHECK_INT(stow_read_file(&b, "/dev/zero", 1 << 20, &err), STOW_ERR);
    CHECK(strstr(err.msg, "/dev/zero: not a regular file") != NULL);

    snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
    CHECK(mkfifo(fifo, 0600) == 0);
    CHECK_INT(stow_read_file(&b, fifo, 1 << 20, &err), STOW_ERR); /* returns, does not block */
    CHECK(strstr(err.msg, "not a regular file") != NULL);

    CHECK_INT(stow_read_file(&b, dir, 1 << 20, &err), STOW_ERR);
    CHECK(strstr(err.msg, "not a regular file") != NULL);

    snprintf(path, sizeof(path), "%s/missing", dir);
    CHECK_INT(stow_read_file(&b, path, 100, &err), STOW_ENOTFOUND);
    CHECK(strstr(err.msg, "missing") != NULL);

    /* The buffer's own cap applies too. */
    stow_buf small;
    stow_buf_init(&small, 4);
    snprintf(path, sizeof(path), "%s/small", dir);
    CHECK(stow_read_file(&small, path, 100, &err) != STOW_OK);
    CHECK(strstr(err.msg, "small") != NULL);
    stow_buf_free(&small);

    stow_buf_free(&b);
    unlink(fifo);
    unlink(big);
    unlink(path);
    rmdir(dir);
    TEST_DONE();
}
