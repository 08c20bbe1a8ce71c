/* stowage doctor: what the configuration resolves to (store, backend, S3 region, addressing,
 * endpoint and where each came from, the credential source with the key id masked; never a
 * secret or a token) and one HEAD/PUT/GET/DELETE round trip on a probe object under the
 * store prefix, each step timed. Exit 0 when every step passed, 1 naming the failing step,
 * 2 for a configuration error. The report goes to stdout: it is what the command is for. */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "log.h"
#include "s3.h"
#include "s3_creds.h"
#include "util.h"

#define PROBE_LEN 4096

static const char *env_nonempty(const char *name)
{
    const char *v = getenv(name);
    return (v != NULL && v[0] != '\0') ? v : NULL;
}

/* Probe object name and contents: random, so two doctors at once do not collide. */
static void probe_fill(char *name, size_t name_cap, unsigned char *data, size_t len)
{
    unsigned char rnd[8];
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    ssize_t got = fd >= 0 ? read(fd, rnd, sizeof(rnd)) : -1;
    if (got != (ssize_t)sizeof(rnd)) {
        uint64_t v = (uint64_t)stow_now_ms() ^ ((uint64_t)getpid() << 32);
        memcpy(rnd, &v, sizeof(rnd));
    }
    if (fd >= 0)
        close(fd);
    snprintf(name, name_cap, "doctor/probe-%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1],
             rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (size_t i = 0; i < sizeof(rnd); i++)
        x = (x ^ rnd[i]) * 0x100000001b3ULL;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        data[i] = (unsigned char)x;
    }
}

static void print_settings(const stow_cli_ctx *r, const stow_backend *b)
{
    const stow_config *c = &r->cfg;
    char red[1024];
    stow_redact_url(red, sizeof(red), r->url);
    printf("store:       %s (from %s)\n", red, c->url_from ? c->url_from : "default");
    printf("backend:     %s\n", b->ops->scheme);
    if (strcmp(b->ops->scheme, "s3") == 0) {
        stow_s3_location loc;
        char source[STOW_S3_SOURCE_MAX], hint[32];
        if (stow_s3_describe(&loc, source, sizeof(source), hint, sizeof(hint), b) == STOW_OK) {
            printf("region:      %s (from %s)\n", loc.region, loc.region_from);
            printf("addressing:  %s\n", loc.path_style ? "path-style" : "virtual-hosted");
            printf("endpoint:    %s (from %s)\n", loc.origin,
                   strcmp(loc.endpoint_from, "option") == 0 ? "the endpoint option"
                   : strcmp(loc.endpoint_from, "AWS") == 0  ? "AWS, by region"
                                                            : loc.endpoint_from);
            printf("credentials: %s\n", source);
            printf("key id:      %s\n", hint);
        }
        const char *ca = c->ca_bundle ? c->ca_bundle : env_nonempty("AWS_CA_BUNDLE");
        printf("ca bundle:   %s (from %s)\n", ca ? ca : "system default",
               c->ca_bundle ? "the ca_bundle option"
               : ca         ? "AWS_CA_BUNDLE"
                            : "default");
    } else if (strcmp(b->ops->scheme, "file") != 0) {
        const char *tenv = c->token_env ? c->token_env : "STOWAGE_HTTP_TOKEN";
        printf("credentials: %s\n", env_nonempty(tenv) ? "bearer token from the environment"
                                                       : "none, or basic auth from .netrc");
        if (env_nonempty(tenv))
            printf("token from:  %s\n", tenv);
    }
    if (!c->verify_tls)
        printf("tls:         NOT verified (verify_tls = false)\n");
}

typedef struct step {
    const char *name;
    int64_t t0;
} step;

static void step_begin(step *s, const char *name)
{
    s->name = name;
    s->t0 = stow_now_ms();
}

/* Prints the step's line; returns 0 when it passed. */
static int step_end(const step *s, int passed, const char *detail)
{
    printf("%-7s %-4s %6" PRId64 " ms  %s\n", s->name, passed ? "ok" : "FAIL",
           stow_now_ms() - s->t0, detail);
    fflush(stdout);
    return passed ? 0 : -1;
}

int stow_cli_doctor(stow_cli_ctx *r)
{
    stow_error err = {0};
    stow_backend *b = NULL;
    unsigned char *data = NULL;
    char *back = NULL;
    size_t back_len = 0;
    char name[64], detail[STOW_ERROR_MSG_MAX + 64];
    const char *failed = NULL;
    int put_done = 0;
    step s;

    step_begin(&s, "open");
    int rc = stow_cli_open_store(r, &b, &err);
    if (rc != STOW_OK) {
        char red[1024];
        stow_redact_url(red, sizeof(red), r->url ? r->url : "(none)");
        printf("store:       %s\n", red);
        step_end(&s, 0, err.msg);
        printf("doctor: FAILED at open (configuration or credentials)\n");
        return rc == STOW_EUSAGE ? EXIT_USAGE : EXIT_FAILED;
    }
    print_settings(r, b);
    if ((data = malloc(PROBE_LEN)) == NULL) {
        stow_error_log("doctor: out of memory");
        stow_backend_free(b);
        return EXIT_FAILED;
    }
    probe_fill(name, sizeof(name), data, PROBE_LEN);
    printf("probe:       %s (%d bytes)\n", name, PROBE_LEN);
    step_end(&s, 1, "store opened");

    stow_object_info info;
    step_begin(&s, "HEAD");
    rc = stow_backend_head(b, name, &info, &err);
    if (rc == STOW_ENOTFOUND) {
        step_end(&s, 1, "absent, as expected");
    } else {
        snprintf(detail, sizeof(detail), "%s",
                 rc == STOW_OK ? "the probe object already exists" : err.msg);
        step_end(&s, 0, detail);
        failed = "HEAD";
        goto done;
    }

    step_begin(&s, "PUT");
    stow_error_clear(&err);
    rc = stow_backend_put_buffer(b, name, data, PROBE_LEN, 0, &err);
    if (rc != STOW_OK) {
        step_end(&s, 0, err.msg);
        failed = "PUT";
        goto done;
    }
    put_done = 1;
    step_end(&s, 1, "written");

    step_begin(&s, "GET");
    stow_error_clear(&err);
    rc = stow_backend_get_buffer(&back, &back_len, b, name, 2 * PROBE_LEN, &err);
    if (rc != STOW_OK || back_len != PROBE_LEN || memcmp(back, data, PROBE_LEN) != 0) {
        if (rc == STOW_OK)
            snprintf(detail, sizeof(detail), "read back %zu bytes that differ from those written",
                     back_len);
        step_end(&s, 0, rc == STOW_OK ? detail : err.msg);
        failed = "GET";
        goto done;
    }
    step_end(&s, 1, "read back, same bytes");

done:
    if (put_done) {
        step_begin(&s, "DELETE");
        stow_error_clear(&err);
        rc = stow_backend_del(b, name, &err);
        if (rc != STOW_OK) {
            step_end(&s, 0, err.msg);
            if (failed == NULL)
                failed = "DELETE";
        } else {
            step_end(&s, 1, "removed");
        }
    }
    if (failed != NULL)
        printf("doctor: FAILED at %s\n", failed);
    else
        printf("doctor: all checks passed\n");
    free(back);
    free(data);
    stow_backend_free(b);
    return failed ? EXIT_FAILED : EXIT_OK;
}
