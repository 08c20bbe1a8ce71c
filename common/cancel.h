/* Cancellation of long operations by a signal (SIGINT/SIGTERM during save). Only the CLI
 * installs signal handlers; its handler calls stow_cancel_request, which only stores the
 * signal number (async-signal-safe: a lock-free atomic). Transfer and packing loops poll
 * stow_cancel_requested and stop; cleanup requests (DELETE: abort a multipart upload, remove
 * a temporary object or a lease) still run, so nothing is left behind. */
#ifndef STOW_CANCEL_H
#define STOW_CANCEL_H

/* Records sig (non-zero) as the reason to stop; safe to call from a signal handler. */
void stow_cancel_request(int sig);
/* The signal that asked to stop, or 0. */
int stow_cancel_requested(void);
/* Forgets a request (tests). */
void stow_cancel_reset(void);

#endif
