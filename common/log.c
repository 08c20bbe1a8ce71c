#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static stow_log_level current_level = STOW_LOG_INFO;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void stow_log_set_level(stow_log_level level) { current_level = level; }
stow_log_level stow_log_get_level(void) { return current_level; }

void stow_log(stow_log_level level, const char *fmt, ...)
{
    static const char *const names[] = {"error", "warning", "info", "debug"};
    if (level > current_level)
        return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&log_lock);
    if (level == STOW_LOG_INFO)
        fprintf(stderr, "stowage: %s\n", line);
    else
        fprintf(stderr, "stowage: %s: %s\n", names[level], line);
    fflush(stderr);
    pthread_mutex_unlock(&log_lock);
}

void stow_redact_url(char *out, size_t outsz, const char *url)
{
    if (outsz == 0)
        return;
    out[0] = '\0';
    if (url == NULL)
        return;
    const char *scheme_end = strstr(url, "://");
    const char *host = scheme_end ? scheme_end + 3 : url;
    size_t hostlen = strcspn(host, "/?#");
    const char *at = memchr(host, '@', hostlen);
    size_t pos = 0;
#define APPEND(s, n)                                                                               \
    do {                                                                                           \
        size_t n_ = (n);                                                                           \
        if (pos + n_ >= outsz)                                                                     \
            n_ = outsz - 1 - pos;                                                                  \
        memcpy(out + pos, (s), n_);                                                                \
        pos += n_;                                                                                 \
        out[pos] = '\0';                                                                           \
    } while (0)
    APPEND(url, (size_t)(host - url));
    if (at != NULL) {
        APPEND("***@", 4);
        host = at + 1;
    }
    size_t rest = strcspn(host, "?#");
    APPEND(host, rest);
    if (host[rest] == '?')
        APPEND("?***", 4);
#undef APPEND
}
