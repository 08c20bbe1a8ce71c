/* Progress reporting for long transfers: a rewritten line on a terminal, a plain line every
 * few seconds in CI logs (stderr is not a terminal), nothing when logging is quieter than info.
 * stow_progress_add is thread-safe. */
#ifndef STOW_PROGRESS_H
#define STOW_PROGRESS_H

#include <stddef.h>
#include <stdint.h>

typedef struct stow_progress stow_progress;

stow_progress *stow_progress_new(const char *what, uint64_t total_bytes);
void stow_progress_add(stow_progress *p, uint64_t bytes); /* accepts NULL */
uint64_t stow_progress_done(const stow_progress *p);
double stow_progress_elapsed(const stow_progress *p); /* seconds since new */
/* Ends the terminal line, if one was drawn. */
void stow_progress_finish(stow_progress *p);
void stow_progress_free(stow_progress *p);

/* "1.5 GB", "12.0 MB", "800 B" (decimal units, like the summary line). */
void stow_format_bytes(char *out, size_t outsz, uint64_t bytes);
double stow_now(void); /* monotonic seconds */

#endif
