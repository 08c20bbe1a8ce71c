/* Small helpers every layer needs once: one clock, one bounded string copy. */
#ifndef STOW_UTIL_H
#define STOW_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Milliseconds on the monotonic clock: for timeouts, rates and elapsed times. */
int64_t stow_now_ms(void);

/* Seconds since the epoch on the real-time clock: for timestamps stored or compared with
 * the store's. */
int64_t stow_unix_time(void);

/* Copies src into dst (dstsz bytes, NUL-terminated, dstsz > 0). Returns 0, or -1 when src
 * did not fit (dst then holds the truncated prefix). */
int stow_strlcpy(char *dst, const char *src, size_t dstsz);

#endif
