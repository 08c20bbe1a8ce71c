/* Leveled logging to stderr. Thread-safe; one line per call, with control characters escaped. */
#ifndef STOW_LOG_H
#define STOW_LOG_H

#include <stddef.h>

#include "error.h"

typedef enum {
    STOW_LOG_ERROR = 0,
    STOW_LOG_WARN = 1,
    STOW_LOG_INFO = 2,
    STOW_LOG_DEBUG = 3
} stow_log_level;

void stow_log_set_level(stow_log_level level);
stow_log_level stow_log_get_level(void);
void stow_log(stow_log_level level, const char *fmt, ...) STOW_PRINTF(2, 3);

#define stow_error_log(...) stow_log(STOW_LOG_ERROR, __VA_ARGS__)
#define stow_warn(...) stow_log(STOW_LOG_WARN, __VA_ARGS__)
#define stow_info(...) stow_log(STOW_LOG_INFO, __VA_ARGS__)
#define stow_debug(...) stow_log(STOW_LOG_DEBUG, __VA_ARGS__)

/* Copies in[0..inlen) to out so it is safe to print on one line of a terminal or a CI log:
 * control bytes become "\n", "\r", "\t" or "\xNN" (so a name cannot start a new line such as
 * "::error::" or send a terminal escape sequence), and so do bytes that are not valid UTF-8 and
 * the characters that act as controls or line breaks (U+0080..U+009F, U+2028, U+2029). Printable
 * ASCII and other valid UTF-8 pass unchanged. Stops before an escape or character that would not
 * fit; always NUL-terminates (outsz > 0); returns the length written. stow_log applies this to
 * every line, so callers need it only for what they print themselves. */
size_t stow_log_escape(char *out, size_t outsz, const char *in, size_t inlen);

/* Copies url into out with any "user:password@" userinfo and any query string replaced
 * by "***", so URLs can be logged. Always NUL-terminates (truncates if needed). */
void stow_redact_url(char *out, size_t outsz, const char *url);

/* 1 when url carries a non-empty password in its userinfo ("scheme://user:password@host"). */
int stow_url_has_password(const char *url);

#endif
