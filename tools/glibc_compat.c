/* Linked into the release binary only (CMake target stowage_dist, docs/RELEASE.md).
 *
 * Debian 12's libarchive.a was configured against glibc 2.36 and so calls arc4random_buf
 * (GLIBC_2.36) from archive_random.o. stowage never reaches that code (tar/pax only), and
 * --gc-sections drops it, but the versioned import would still stop the binary from loading
 * on glibc 2.35 (Ubuntu 22.04). The link wraps the symbol (-Wl,--wrap=arc4random_buf), so
 * the reference lands here: the same contract built on getrandom(2) (GLIBC_2.25). */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/random.h>

void __wrap_arc4random_buf(void *buf, size_t n);

void __wrap_arc4random_buf(void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            abort(); /* arc4random_buf cannot fail; neither may its stand-in */
        }
        p += got;
        n -= (size_t)got;
    }
}
