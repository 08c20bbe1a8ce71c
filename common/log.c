#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static stow_log_level current_level = STOW_LOG_INFO;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void stow_log_set_level(stow_log_level level) { current_level = level; }
stow_log_level stow_log_get_level(void) { return current_level; }

/* Length of the valid UTF-8 sequence at s (at most n bytes) that is not a control or line
 * separator once decoded, or 0 when the bytes must be escaped: invalid or overlong sequences,
 * surrogates, C1 controls (U+0080..U+009F, which 8-bit terminals read as ESC sequences) and
 * U+2028/U+2029 (line and paragraph separators). */
static size_t utf8_ok(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned cp;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp <= 0x9f) || cp == 0x2028 ||
        cp == 0x2029)
        return 0;
    return len;
}

size_t stow_log_escape(char *out, size_t outsz, const char *in, size_t inlen)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t pos = 0;
    if (outsz == 0)
        return 0;
    for (size_t i = 0; i < inlen;) {
        char esc[8];
        const char *piece;
        size_t plen;
        size_t ulen = 0;
        unsigned char c = s[i];
        if (c >= 0x20 && c < 0x7f) {
            piece = (const char *)s + i;
            plen = 1;
        } else if (c >= 0x80 && (ulen = utf8_ok(s + i, inlen - i)) > 0) {
            piece = (const char *)s + i;
            plen = ulen;
        } else {
            switch (c) {
            case '\n': piece = "\\n"; break;
            case '\r': piece = "\\r"; break;
            case '\t': piece = "\\t"; break;
            default:
                snprintf(esc, sizeof(esc), "\\x%02x", c);
                piece = esc;
                break;
            }
            plen = strlen(piece);
        }
        if (pos + plen >= outsz)
            break; /* never cut an escape or a character in half */
        memcpy(out + pos, piece, plen);
        pos += plen;
        i += ulen > 0 ? ulen : 1;
    }
    out[pos] = '\0';
    return pos;
}

void stow_log(stow_log_level level, const char *fmt, ...)
{
    static const char *const names[] = {"error", "warning", "info", "debug"};
    if (level > current_level)
        return;
    char line[2048];
    /* Every byte may become "\xNN": the escaped line never needs to be cut shorter. */
    char shown[4 * sizeof(line)];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    size_t len = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
    /* Messages carry names and error text from outside (the store, the server): escaping the
     * whole line here means no caller can let "\n::error::" or a terminal escape through. */
    stow_log_escape(shown, sizeof(shown), line, len);
    pthread_mutex_lock(&log_lock);
    if (level == STOW_LOG_INFO)
        fprintf(stderr, "stowage: %s\n", shown);
    else
        fprintf(stderr, "stowage: %s: %s\n", names[level], shown);
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

int stow_url_has_password(const char *url)
{
    if (url == NULL)
        return 0;
    const char *scheme_end = strstr(url, "://");
    const char *host = scheme_end ? scheme_end + 3 : url;
    size_t hostlen = strcspn(host, "/?#");
    const char *at = memchr(host, '@', hostlen);
    if (at == NULL)
        return 0;
    const char *colon = memchr(host, ':', (size_t)(at - host));
    return colon != NULL && colon + 1 < at;
}
