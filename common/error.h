/* Error codes and the error context every fallible call fills. */
#ifndef STOW_ERROR_H
#define STOW_ERROR_H

#include <stddef.h>

#define STOW_OK 0
#define STOW_ERR (-1)       /* anything else; the message says what */
#define STOW_ENOTFOUND (-2) /* a miss: the object or entry does not exist */
#define STOW_ETIMEOUT (-3)  /* the store did not answer in time */
#define STOW_EAUTH (-4)     /* credentials missing or refused */
#define STOW_ECORRUPT (-5)  /* data failed a check: hash, format, hostile path */
#define STOW_EEXIST (-6)    /* conditional write lost: the object already exists */
#define STOW_EUSAGE (-7)    /* bad configuration, flag or input named in the message */

#define STOW_ERROR_MSG_MAX 1024

typedef struct stow_error {
    int code;
    char msg[STOW_ERROR_MSG_MAX];
} stow_error;

#if defined(__GNUC__)
#define STOW_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define STOW_PRINTF(a, b)
#endif

/* Sets code and message; returns code so callers can `return stow_error_set(...)`.
 * err may be NULL. */
int stow_error_set(stow_error *err, int code, const char *fmt, ...) STOW_PRINTF(3, 4);

/* Prepends context to an existing message: "what: <old message>". Returns err->code. */
int stow_error_wrap(stow_error *err, const char *fmt, ...) STOW_PRINTF(2, 3);

void stow_error_clear(stow_error *err);

/* Short name of a code, e.g. "not found". */
const char *stow_error_name(int code);

#endif
