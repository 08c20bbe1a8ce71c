/* Unit tests for common/cancel.c: a request is remembered (by signal number) until reset,
 * including one made from a real signal handler. */
#include <signal.h>
#include <string.h>

#include "cancel.h"
#include "test.h"

static void handler(int sig) { stow_cancel_request(sig); }

int main(void)
{
    CHECK_INT(stow_cancel_requested(), 0);
    stow_cancel_request(SIGTERM);
    CHECK_INT(stow_cancel_requested(), SIGTERM);
    stow_cancel_reset();
    CHECK_INT(stow_cancel_requested(), 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    CHECK_INT(sigaction(SIGINT, &sa, NULL), 0);
    CHECK_INT(raise(SIGINT), 0);
    CHECK_INT(stow_cancel_requested(), SIGINT);
    stow_cancel_reset();
    TEST_DONE();
}
