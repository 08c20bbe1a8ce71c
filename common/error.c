#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int stow_error_set(stow_error *err, int code, const char *fmt, ...)
{
    if (err == NULL)
        return code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    err->code = code;
    return code;
}

int stow_error_wrap(stow_error *err, const char *fmt, ...)
{
    if (err == NULL)
        return STOW_ERR;
    char prefix[STOW_ERROR_MSG_MAX];
    char old[STOW_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof(old));
    snprintf(err->msg, sizeof(err->msg), "%s: %s", prefix, old);
    if (err->code == STOW_OK)
        err->code = STOW_ERR;
    return err->code;
}

void stow_error_clear(stow_error *err)
{
    if (err == NULL)
        return;
    err->code = STOW_OK;
    err->msg[0] = '\0';
}

const char *stow_error_name(int code)
{
    switch (code) {
    case STOW_OK: return "ok";
    case STOW_ENOTFOUND: return "not found";
    case STOW_ETIMEOUT: return "timeout";
    case STOW_EAUTH: return "authentication error";
    case STOW_ECORRUPT: return "corrupt data";
    case STOW_EEXIST: return "already exists";
    case STOW_EUSAGE: return "usage error";
    default: return "error";
    }
}
