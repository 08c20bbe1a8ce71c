/* Unit tests for common/log.c: every logged line is one line with control characters and
 * invalid UTF-8 escaped (a name from the store cannot inject "::error::" or a terminal escape),
 * levels filter, URLs are redacted, passwords in URLs are detected. stderr is captured through
 * a pipe. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "test.h"

static int pipefd[2] = {-1, -1};
static int saved_stderr = -1;

static void capture_start(void)
{
    fflush(stderr);
    CHECK(pipe(pipefd) == 0);
    saved_stderr = dup(STDERR_FILENO);
    CHECK(dup2(pipefd[1], STDERR_FILENO) >= 0);
    close(pipefd[1]);
}

/* Restores stderr and returns what was written (at most outsz - 1 bytes). */
static void capture_end(char *out, size_t outsz)
{
    fflush(stderr);
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    size_t len = 0;
    ssize_t n;
    while (len + 1 < outsz && (n = read(pipefd[0], out + len, outsz - 1 - len)) > 0)
        len += (size_t)n;
    out[len] = '\0';
    close(pipefd[0]);
}

/* Escapes a string literal, embedded NULs included. */
#define ESC(out, lit) stow_log_escape(out, sizeof(out), lit, sizeof(lit) - 1)

static void test_escape(void)
{
    char out[256];
    size_t n = ESC(out, "a\nb\r\tc\x1b[31m\x7f");
    CHECK_STR(out, "a\\nb\\r\\tc\\x1b[31m\\x7f");
    CHECK_INT(n, strlen(out));
    /* Valid UTF-8 passes; invalid bytes, overlong forms, C1 controls and U+2028 do not. */
    ESC(out, "caf\xc3\xa9 \xe2\x9c\x93");
    CHECK_STR(out, "caf\xc3\xa9 \xe2\x9c\x93");
    ESC(out, "x\xff\xc3y\xc0\xaf");
    CHECK_STR(out, "x\\xff\\xc3y\\xc0\\xaf");
    ESC(out, "\xc2\x9b"
             "2J\xc2\x85"
             "e");
    CHECK_STR(out, "\\xc2\\x9b2J\\xc2\\x85e");
    ESC(out, "a\xe2\x80\xa8"
             "b");
    CHECK_STR(out, "a\\xe2\\x80\\xa8b");
    ESC(out, "\xed\xa0\x80"); /* a surrogate */
    CHECK_STR(out, "\\xed\\xa0\\x80");
    /* An embedded NUL is escaped too: inlen, not strlen, decides. */
    ESC(out, "a\0b");
    CHECK_STR(out, "a\\x00b");
    /* Truncation never leaves half an escape or half a character. */
    n = stow_log_escape(out, 6, "ab\x1b", 3);
    CHECK_STR(out, "ab");
    CHECK_INT(n, 2);
    n = stow_log_escape(out, 4, "ab\xc3\xa9", 4);
    CHECK_STR(out, "ab");
    n = stow_log_escape(out, 1, "abc", 3);
    CHECK_STR(out, "");
}

static void test_log_lines(void)
{
    char got[16384];
    stow_log_set_level(STOW_LOG_INFO);
    capture_start();
    stow_warn("cannot restore %s: %s", "dir/x\n::error::injected", "server said \x1b]0;title\x07");
    stow_info("plain %d", 42);
    stow_debug("hidden at info level");
    capture_end(got, sizeof(got));
    CHECK_STR(got, "stowage: warning: cannot restore dir/x\\n::error::injected: server said "
                   "\\x1b]0;title\\x07\n"
                   "stowage: plain 42\n");
    /* No line of the output starts with a workflow command. */
    CHECK(strstr(got, "\n::") == NULL);

    /* A message as long as the line buffer, all of it control bytes, still ends in one '\n'. */
    char *big = malloc(3000);
    CHECK(big != NULL);
    if (big != NULL) {
        memset(big, '\n', 2999);
        big[2999] = '\0';
        capture_start();
        stow_error_log("%s", big);
        capture_end(got, sizeof(got));
        CHECK(strncmp(got, "stowage: error: \\n\\n", 20) == 0);
        CHECK_INT(strchr(got, '\n') - got, (long)strlen(got) - 1);
        CHECK_INT(strlen(got), 16 + 2 * 2047 + 1);
        free(big);
    }
}

static void test_urls(void)
{
    char out[256];
    stow_redact_url(out, sizeof(out), "https://u:secret@h.example/p?X-Amz-Signature=1");
    CHECK_STR(out, "https://***@h.example/p?***");
    CHECK_INT(stow_url_has_password("https://u:secret@h/p"), 1);
    CHECK_INT(stow_url_has_password("https://u@h/p"), 0);
    CHECK_INT(stow_url_has_password("https://u:@h/p"), 0);
    CHECK_INT(stow_url_has_password("https://h/p@x:y"), 0); /* '@' in the path is not userinfo */
    CHECK_INT(stow_url_has_password("s3://bucket/prefix"), 0);
    CHECK_INT(stow_url_has_password(NULL), 0);
}

int main(void)
{
    test_escape();
    test_log_lines();
    test_urls();
    TEST_DONE();
}
