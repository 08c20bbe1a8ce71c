/* Leveled logging to stderr. Thread-safe; one line per call. */
#ifndef STOW_LOG_H
#define STOW_LOG_H

#include <stddef.h>

#include "error.h"

typedef enum { STOW_LOG_ERROR = 0, STOW_LOG_WARN = 1, STOW_LOG_INFO = 2, STOW_LOG_DEBUG = 3 } stow_log_level;

void stow_log_set_level(stow_log_level level);
stow_log_level stow_log_get_level(void);
void stow_log(stow_log_level level, const char *fmt, ...) STOW_PRINTF(2, 3);

#define stow_error_log(...) stow_log(STOW_LOG_ERROR, __VA_ARGS__)
#define stow_warn(...) stow_log(STOW_LOG_WARN, __VA_ARGS__)
#define stow_info(...) stow_log(STOW_LOG_INFO, __VA_ARGS__)
#define stow_debug(...) stow_log(STOW_LOG_DEBUG, __VA_ARGS__)

/* Copies url into out with any "user:password@" userinfo and any query string replaced
 * by "***", so URLs can be logged. Always NUL-terminates (truncates if needed). */
void stow_redact_url(char *out, size_t outsz, const char *url);

#endif
