/* The parallel ranged GET of the shared HTTP transport (backends/httpc_get.c) against nginx:
 * the read-ahead that GETs running at once hold together stays within the transport's
 * budget (STOW_HTTPC_AHEAD_BUDGET), and every GET still delivers its object intact.
 * Re-runs itself under tests/integration/with_nginx.sh like test_httpc. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hash.h"
#include "httpc.h"
#include "log.h"
#include "nginx_fixture.h"
#include "test.h"

#define MiB (1024u * 1024u)
#define NGETS 4
#define OBJ_SIZE (12u * MiB + 4321u)

/* The GETs meet in their sinks: none delivers past its first bytes until all have started,
 * so all of them hold their read-ahead at the same time (on_total runs before the body). */
static pthread_mutex_t meet_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t meet_cond = PTHREAD_COND_INITIALIZER;
static int met;

typedef struct {
    stow_httpc *h;
    char url[600];
    fx_hash_sink hs;
    int first_seen;
    int rc;
    stow_error err;
} get_arg;

static int meet_sink(void *ud, const void *buf, size_t len)
{
    get_arg *a = ud;
    if (!a->first_seen) {
        a->first_seen = 1;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 30; /* a GET that failed before its body must not hang the test */
        pthread_mutex_lock(&meet_lock);
        met++;
        pthread_cond_broadcast(&meet_cond);
        int rc = 0;
        while (met < NGETS && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait(&meet_cond, &meet_lock, &until);
        pthread_mutex_unlock(&meet_lock);
    }
    return fx_hash_sink_fn(&a->hs, buf, len);
}

static void *get_thread(void *ud)
{
    get_arg *a = ud;
    stow_httpc_request r;
    memset(&r, 0, sizeof(r));
    r.url = a->url;
    r.sink = meet_sink;
    r.sink_ud = a;
    a->rc = stow_httpc_get(a->h, &r, NULL, &a->err);
    return NULL;
}

static void test_ahead_budget(const char *base)
{
    stow_httpc_config cfg;
    stow_httpc_config_init(&cfg, NULL);
    cfg.parallel = 4; /* the default: 1 MiB parts, 4 MiB ahead per GET */
    cfg.max_retries = 2;
    stow_httpc *h = NULL;
    stow_error err;
    CHECK_INT(stow_httpc_new(&h, &cfg, &err), STOW_OK);
    if (h == NULL)
        return;
    char url[600];
    snprintf(url, sizeof(url), "%s/ahead.bin", base);
    unsigned char *data = malloc(OBJ_SIZE);
    CHECK(data != NULL);
    if (data == NULL) {
        stow_httpc_free(h);
        return;
    }
    fx_fill(77, 0, data, OBJ_SIZE);
    stow_httpc_request put;
    memset(&put, 0, sizeof(put));
    put.method = "PUT";
    put.url = url;
    put.body_type = STOW_HTTPC_BODY_BUFFER;
    put.body = data;
    put.body_len = OBJ_SIZE;
    CHECK_INT(stow_httpc_perform(h, &put, NULL, &err), STOW_OK);
    free(data);
    char want[STOW_SHA256_HEX_LEN + 1];
    fx_gen_hash(want, 77, 0, OBJ_SIZE);

    get_arg args[NGETS];
    pthread_t tid[NGETS];
    int started[NGETS] = {0};
    for (int i = 0; i < NGETS; i++) {
        memset(&args[i], 0, sizeof(args[i]));
        args[i].h = h;
        snprintf(args[i].url, sizeof(args[i].url), "%s", url);
        args[i].hs = (fx_hash_sink){stow_sha256_new(), 0, 0, 0};
        started[i] = pthread_create(&tid[i], NULL, get_thread, &args[i]) == 0;
        CHECK(started[i]);
    }
    for (int i = 0; i < NGETS; i++) {
        if (!started[i])
            continue;
        pthread_join(tid[i], NULL);
        CHECK_INT(args[i].rc, STOW_OK);
        if (args[i].rc != STOW_OK)
            fprintf(stderr, "  get %d: %s\n", i, args[i].err.msg);
        char got[STOW_SHA256_HEX_LEN + 1];
        fx_hash_sink_hex(&args[i].hs, got);
        CHECK_INT(args[i].hs.bytes, OBJ_SIZE);
        CHECK_STR(got, want);
        stow_sha256_free(args[i].hs.h);
    }
    CHECK_INT(met, NGETS); /* they did run side by side */
    uint64_t peak = stow_httpc_ahead_peak(h);
    fprintf(stderr, "read-ahead: peak %" PRIu64 " bytes for %d GETs at once\n", peak, NGETS);
    CHECK(peak > 0);
    CHECK(peak <= STOW_HTTPC_AHEAD_BUDGET);
    stow_httpc_free(h);
}

int main(int argc, char **argv)
{
    fx_require_servers(argc, argv);
    if (getenv("STOW_TEST_DEBUG"))
        stow_log_set_level(STOW_LOG_DEBUG);
    char base[512];
    snprintf(base, sizeof(base), "%s/anon/%s", fx_env("STOW_TEST_NGINX_URL"), fx_run_id());
    test_ahead_budget(base);
    TEST_DONE();
}
