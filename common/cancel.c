#include "cancel.h"

#include <stdatomic.h>

#if ATOMIC_INT_LOCK_FREE != 2
#error "stow_cancel_request needs a lock-free atomic int to be async-signal-safe"
#endif

static atomic_int cancel_sig;

void stow_cancel_request(int sig) { atomic_store(&cancel_sig, sig); }

int stow_cancel_requested(void) { return atomic_load(&cancel_sig); }

void stow_cancel_reset(void) { atomic_store(&cancel_sig, 0); }
