#include "readfile.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int stow_open_file(int *fd, const char *path, size_t max, stow_error *err)
{
    struct stat st;
    *fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (*fd < 0)
        return stow_error_set(err,
                              (errno == ENOENT || errno == ENOTDIR) ? STOW_ENOTFOUND : STOW_ERR,
                              "%s: %s", path, strerror(errno));
    int rc = STOW_OK;
    if (fstat(*fd, &st) != 0)
        rc = stow_error_set(err, STOW_ERR, "%s: %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        rc = stow_error_set(err, STOW_ERR, "%s: not a regular file", path);
    else if ((unsigned long long)st.st_size > (unsigned long long)max)
        rc = stow_error_set(err, STOW_ERR, "%s: %lld bytes; the limit is %zu", path,
                            (long long)st.st_size, max);
    if (rc != STOW_OK) {
        close(*fd);
        *fd = -1;
    }
    return rc;
}

int stow_read_file(stow_buf *out, const char *path, size_t max, stow_error *err)
{
    int rc = STOW_ERR;
    int fd = -1;
    char chunk[16384];

    stow_buf_reset(out);
    if ((rc = stow_open_file(&fd, path, max, err)) != STOW_OK)
        goto done;
    rc = STOW_ERR;
    /* Regular files never block, so the O_NONBLOCK above changes nothing from here on. The
     * size is checked again while reading: the file may grow after fstat. */
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = stow_error_set(err, STOW_ERR, "%s: %s", path, strerror(errno));
            goto done;
        }
        if (n == 0)
            break;
        if ((size_t)n > max - out->len) {
            rc = stow_error_set(err, STOW_ERR, "%s: larger than the limit of %zu bytes", path, max);
            goto done;
        }
        if ((rc = stow_buf_add(out, chunk, (size_t)n, err)) != STOW_OK) {
            stow_error_wrap(err, "%s", path);
            goto done;
        }
    }
    rc = STOW_OK;
done:
    if (rc != STOW_OK)
        stow_buf_reset(out);
    if (fd >= 0)
        close(fd);
    return rc;
}
