#include "util.h"

#include <string.h>
#include <time.h>

int64_t stow_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t stow_unix_time(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}

int stow_strlcpy(char *dst, const char *src, size_t dstsz)
{
    size_t n = strlen(src);
    if (n < dstsz) {
        memcpy(dst, src, n + 1);
        return 0;
    }
    memcpy(dst, src, dstsz - 1);
    dst[dstsz - 1] = '\0';
    return -1;
}
