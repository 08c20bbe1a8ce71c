/* Container credentials (s3_container.h): the full-URI host rule, the authorization token
 * (file beats variable, never in a message), and both URI forms against
 * tests/integration/container_creds_server.py started on loopback by this test. */
#include "s3_container.h"

#include "s3.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test.h"

extern char **environ;

#define AUTH "container-auth-token-EXAMPLE"

static char tmpdir[512];

static void clean_env(void)
{
    static const char *const vars[] = {"AWS_ACCESS_KEY_ID",
                                       "AWS_SECRET_ACCESS_KEY",
                                       "AWS_SESSION_TOKEN",
                                       "AWS_PROFILE",
                                       "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                                       "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                                       "AWS_CONTAINER_AUTHORIZATION_TOKEN",
                                       "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                                       "AWS_SHARED_CREDENTIALS_FILE",
                                       NULL};
    for (int i = 0; vars[i] != NULL; i++)
        unsetenv(vars[i]);
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
    setenv("HOME", tmpdir, 1);
}

static void test_host_rule(void)
{
    static const char *const allowed[] = {"https://creds.example.com/v1",
                                          "https://10.1.2.3:8443/x",
                                          "http://127.0.0.1:80/creds",
                                          "http://127.9.8.7/",
                                          "http://[::1]:8080/c",
                                          "http://169.254.170.2/v2/credentials/x",
                                          "http://169.254.170.23/v1/credentials",
                                          "http://[fd00:ec2::23]/v1/credentials",
                                          "http://localhost:1234/creds",
                                          NULL};
    static const char *const refused[] = {
        "http://169.254.169.254/latest/meta-data/", /* IMDS is not a container agent */
        "http://example.com/creds",
        "http://10.0.0.1/creds",
        "http://192.0.2.1:80/",
        "http://[fd00:ec2::24]/",
        "http://[::2]/",
        "http://128.0.0.1/",
        "ftp://127.0.0.1/x",
        "file:///etc/passwd",
        "http://user:pw@127.0.0.1/x",
        "not a url",
        NULL};
    stow_error err = {0};
    for (int i = 0; allowed[i] != NULL; i++) {
        int rc = stow_s3_container_url_ok(allowed[i], &err);
        if (rc != STOW_OK)
            fprintf(stderr, "  allowed %s: %s\n", allowed[i], err.msg);
        CHECK_INT(rc, STOW_OK);
    }
    for (int i = 0; refused[i] != NULL; i++) {
        stow_error_clear(&err);
        int rc = stow_s3_container_url_ok(refused[i], &err);
        if (rc != STOW_EUSAGE)
            fprintf(stderr, "  not refused: %s\n", refused[i]);
        CHECK_INT(rc, STOW_EUSAGE);
        CHECK(strstr(err.msg, "AWS_CONTAINER_CREDENTIALS_FULL_URI") != NULL);
        CHECK(strstr(err.msg, "pw") == NULL || strstr(refused[i], "pw") == NULL);
    }
    /* the rule holds in the chain, before anything is sent */
    clean_env();
    setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://192.0.2.1/creds", 1);
    setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", AUTH, 1);
    stow_s3_creds c;
    stow_error_clear(&err);
    CHECK_INT(stow_s3_creds_resolve(&c, &err), STOW_EUSAGE);
    CHECK(strstr(err.msg, "plain http is only allowed") != NULL);
    CHECK(strstr(err.msg, AUTH) == NULL);
    clean_env();
    stow_error_clear(&err);
    CHECK_INT(stow_s3_creds_from_container(&c, NULL, &err), STOW_ENOTFOUND);
    setenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "no-slash", 1);
    CHECK_INT(stow_s3_creds_from_container(&c, NULL, &err), STOW_EUSAGE);
    clean_env();
}

/* ---- against the loopback server ---- */

typedef struct server {
    pid_t pid;
    int stdin_w;
    char origin[64];
    char log[600];
} server;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int start_server(server *s)
{
    const char *src = getenv("STOW_TEST_SRC");
    char script[1024];
    int in[2] = {-1, -1}, out[2] = {-1, -1};
    posix_spawn_file_actions_t fa;
    memset(s, 0, sizeof(*s));
    s->pid = -1;
    s->stdin_w = -1;
    if (src == NULL) {
        fprintf(stderr, "FATAL: STOW_TEST_SRC is not set; run through ctest\n");
        return -1;
    }
    snprintf(script, sizeof(script), "%s/tests/integration/container_creds_server.py", src);
    snprintf(s->log, sizeof(s->log), "%s/container.log", tmpdir);
    unlink(s->log);
    const char *argv[] = {"python3", script, "--auth-token", AUTH, "--log", s->log, NULL};
    if (pipe(in) != 0 || pipe(out) != 0 || fcntl(in[0], F_SETFD, FD_CLOEXEC) != 0 ||
        fcntl(in[1], F_SETFD, FD_CLOEXEC) != 0 || fcntl(out[0], F_SETFD, FD_CLOEXEC) != 0 ||
        fcntl(out[1], F_SETFD, FD_CLOEXEC) != 0) {
        fprintf(stderr, "FATAL: pipe: %s\n", strerror(errno));
        return -1;
    }
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    int rc = posix_spawnp(&s->pid, "python3", &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(in[0]);
    close(out[1]);
    s->stdin_w = in[1];
    if (rc != 0) {
        close(out[0]);
        s->pid = -1;
        fprintf(stderr, "FATAL: cannot start python3: %s\n", strerror(rc));
        return -1;
    }
    char buf[64] = "";
    size_t len = 0;
    double deadline = now_s() + 15;
    while (len < sizeof(buf) - 1 && memchr(buf, '\n', len) == NULL && now_s() < deadline) {
        struct pollfd p = {.fd = out[0], .events = POLLIN};
        if (poll(&p, 1, 200) <= 0)
            continue;
        ssize_t r = read(out[0], buf + len, sizeof(buf) - 1 - len);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    close(out[0]);
    buf[len] = '\0';
    char *end = NULL;
    long port = strncmp(buf, "PORT ", 5) == 0 ? strtol(buf + 5, &end, 10) : 0;
    if (end == NULL || *end != '\n' || port <= 0 || port > 65535) {
        fprintf(stderr, "FATAL: the container credentials server did not start (\"%s\")\n", buf);
        return -1;
    }
    snprintf(s->origin, sizeof(s->origin), "http://127.0.0.1:%ld", port);
    return 0;
}

static void stop_server(server *s)
{
    if (s->stdin_w >= 0)
        close(s->stdin_w);
    s->stdin_w = -1;
    if (s->pid <= 0)
        return;
    for (int i = 0; i < 50; i++) {
        if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
            s->pid = -1;
            return;
        }
        usleep(100 * 1000);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    s->pid = -1;
}

static int log_count(const char *path, const char *needle)
{
    char line[512];
    int n = 0;
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL) {
        CHECK(strstr(line, AUTH) == NULL);
        n += strstr(line, needle) != NULL;
    }
    fclose(f);
    return n;
}

static void check_keys(const stow_s3_creds *c)
{
    CHECK_STR(c->access_key, "ASIACONTAINEREXAMPLE");
    CHECK_STR(c->secret_key, "container/secret+EXAMPLE/KEY000000000000");
    CHECK_STR(c->session_token, "IQoJb3JpZ2luX2VjEXAMPLE//container+token==");
    long left = (long)(c->expiry - time(NULL));
    CHECK(left > 6 * 3600 - 120 && left <= 6 * 3600 + 5);
    CHECK(strncmp(c->source, "container credentials ", 22) == 0);
}

static int test_server(void)
{
    server s;
    stow_s3_creds c;
    stow_error err = {0};
    char url[256], tokfile[600];
    if (start_server(&s) != 0) {
        stop_server(&s);
        return -1;
    }
    clean_env();

    /* full URI with the token in the variable */
    snprintf(url, sizeof(url), "%s/full/v1/credentials", s.origin);
    setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", url, 1);
    setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", AUTH, 1);
    int rc = stow_s3_creds_from_container(&c, NULL, &err);
    if (rc != STOW_OK)
        fprintf(stderr, "  full: %s\n", err.msg);
    CHECK_INT(rc, STOW_OK);
    check_keys(&c);
    CHECK(strstr(c.source, "/full/v1/credentials") != NULL);

    /* a wrong token: refused, and neither token appears in the message */
    setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "wrong-token-SECRET", 1);
    stow_error_clear(&err);
    CHECK_INT(stow_s3_creds_from_container(&c, NULL, &err), STOW_EAUTH);
    CHECK(strstr(err.msg, "401") != NULL);
    CHECK(strstr(err.msg, "wrong-token-SECRET") == NULL);
    CHECK_INT(c.access_key[0], 0);

    /* the token file wins over the variable; a trailing newline is not part of the token */
    snprintf(tokfile, sizeof(tokfile), "%s/token", tmpdir);
    FILE *f = fopen(tokfile, "w");
    if (f != NULL) {
        fputs(AUTH "\n", f);
        fclose(f);
    }
    setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", tokfile, 1);
    stow_error_clear(&err);
    rc = stow_s3_creds_from_container(&c, NULL, &err);
    if (rc != STOW_OK)
        fprintf(stderr, "  token file: %s\n", err.msg);
    CHECK_INT(rc, STOW_OK);
    check_keys(&c);
    /* a missing token file is an error that names the variable */
    snprintf(tokfile, sizeof(tokfile), "%s/no-such-token", tmpdir);
    setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", tokfile, 1);
    stow_error_clear(&err);
    CHECK_INT(stow_s3_creds_from_container(&c, NULL, &err), STOW_EAUTH);
    CHECK(strstr(err.msg, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") != NULL);
    /* a token with a line break inside would split the header */
    unsetenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
    setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "abc\r\nX-Injected: 1", 1);
    stow_error_clear(&err);
    CHECK_INT(stow_s3_creds_from_container(&c, NULL, &err), STOW_EAUTH);
    CHECK(strstr(err.msg, "control character") != NULL);
    CHECK_INT(log_count(s.log, "X-Injected"), 0);

    /* the relative form wins over the full one and never carries the token */
    setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", AUTH, 1);
    setenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/rel/v2/credentials/abc", 1);
    stow_error_clear(&err);
    rc = stow_s3_creds_from_container(&c, s.origin, &err);
    if (rc != STOW_OK)
        fprintf(stderr, "  relative: %s\n", err.msg);
    CHECK_INT(rc, STOW_OK);
    check_keys(&c);
    CHECK_INT(log_count(s.log, "GET /rel/v2/credentials/abc 200 auth=no"), 1);
    /* by default it goes to the ECS agent's address: nothing answers there in a test, and
     * the failure names it */
    unsetenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");

    /* in the chain: after the environment and the profile, before IMDS */
    setenv("AWS_ACCESS_KEY_ID", "AKIAENVEXAMPLE000001", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "env-secret", 1);
    stow_error_clear(&err);
    CHECK_INT(stow_s3_creds_resolve(&c, &err), STOW_OK);
    CHECK_STR(c.source, "environment");
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    stow_error_clear(&err);
    rc = stow_s3_creds_resolve(&c, &err);
    if (rc != STOW_OK)
        fprintf(stderr, "  chain: %s\n", err.msg);
    CHECK_INT(rc, STOW_OK);
    check_keys(&c);
    /* a configured but failing service stops the chain with its reason */
    setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "wrong-token-SECRET", 1);
    stow_error_clear(&err);
    CHECK_INT(stow_s3_creds_resolve(&c, &err), STOW_EAUTH);
    CHECK(strstr(err.msg, "container credentials") != NULL);
    CHECK(strstr(err.msg, "wrong-token-SECRET") == NULL);
    /* nothing configured: the "tried" list names the container source */
    clean_env();
    stow_error_clear(&err);
    CHECK_INT(stow_s3_creds_resolve(&c, &err), STOW_EAUTH);
    CHECK(strstr(err.msg, "container credentials: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") != NULL);

    CHECK_INT(log_count(s.log, "auth=bad"), 2);
    stop_server(&s);
    unlink(s.log);
    snprintf(tokfile, sizeof(tokfile), "%s/token", tmpdir);
    unlink(tokfile);
    return 0;
}

/* Not container credentials, but the other variables cloud runners set (s3_addr.c): the S3
 * endpoint from AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL; the option beats both. */
static void test_endpoint_env(void)
{
    stow_s3_location l;
    stow_error err = {0};
    unsetenv("AWS_ENDPOINT_URL_S3");
    unsetenv("AWS_ENDPOINT_URL");
    unsetenv("AWS_REGION");
    unsetenv("AWS_DEFAULT_REGION");
    CHECK_INT(stow_s3_location_parse(&l, "s3://bucket/p", NULL, NULL, -1, &err), STOW_OK);
    CHECK_STR(l.origin, "https://bucket.s3.us-east-1.amazonaws.com");
    CHECK_STR(l.endpoint_from, "AWS");
    CHECK_STR(l.region_from, "default");
    setenv("AWS_USE_FIPS_ENDPOINT", "true", 1);
    CHECK_INT(stow_s3_location_parse(&l, "s3://bucket/p", NULL, "us-gov-west-1", -1, &err),
              STOW_OK);
    CHECK_STR(l.origin, "https://bucket.s3-fips.us-gov-west-1.amazonaws.com");
    setenv("AWS_USE_DUALSTACK_ENDPOINT", "TRUE", 1);
    CHECK_INT(stow_s3_location_parse(&l, "s3://bucket/p", NULL, NULL, -1, &err), STOW_OK);
    CHECK_STR(l.origin, "https://bucket.s3-fips.dualstack.us-east-1.amazonaws.com");
    unsetenv("AWS_USE_FIPS_ENDPOINT");
    CHECK_INT(stow_s3_location_parse(&l, "s3://my.bucket/p", NULL, NULL, -1, &err), STOW_OK);
    CHECK_STR(l.origin, "https://s3.dualstack.us-east-1.amazonaws.com");
    /* an endpoint (here from the environment) is used as given */
    setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9001", 1);
    setenv("AWS_DEFAULT_REGION", "eu-west-3", 1);
    CHECK_INT(stow_s3_location_parse(&l, "s3://bucket/p", NULL, NULL, -1, &err), STOW_OK);
    CHECK_STR(l.origin, "http://127.0.0.1:9001");
    CHECK_STR(l.endpoint_from, "AWS_ENDPOINT_URL");
    CHECK_STR(l.region, "eu-west-3");
    CHECK_STR(l.region_from, "AWS_DEFAULT_REGION");
    CHECK_INT(l.path_style, 1);
    setenv("AWS_ENDPOINT_URL_S3", "https://s3.example.net/base", 1);
    CHECK_INT(stow_s3_location_parse(&l, "s3://bucket/p", NULL, NULL, 0, &err), STOW_OK);
    CHECK_STR(l.origin, "https://bucket.s3.example.net");
    CHECK_STR(l.endpoint_from, "AWS_ENDPOINT_URL_S3");
    CHECK_INT(stow_s3_location_parse(&l, "s3://bucket/p", "http://minio:9000", "r1", -1, &err),
              STOW_OK);
    CHECK_STR(l.origin, "http://minio:9000");
    CHECK_STR(l.endpoint_from, "option");
    CHECK_STR(l.region_from, "option");
    setenv("AWS_ENDPOINT_URL_S3", "minio:9000", 1);
    CHECK_INT(stow_s3_location_parse(&l, "s3://bucket/p", NULL, NULL, -1, &err), STOW_EUSAGE);
    CHECK(strncmp(err.msg, "AWS_ENDPOINT_URL_S3: ", 21) == 0);
    unsetenv("AWS_ENDPOINT_URL_S3");
    unsetenv("AWS_ENDPOINT_URL");
    unsetenv("AWS_DEFAULT_REGION");
    unsetenv("AWS_USE_DUALSTACK_ENDPOINT");
}

int main(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/stow-container-XXXXXX", base && base[0] ? base : "/tmp");
    if (mkdtemp(tmpdir) == NULL) {
        fprintf(stderr, "FATAL: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    test_host_rule();
    test_endpoint_env();
    if (test_server() != 0) {
        fprintf(stderr, "FATAL: the server tests could not run\n");
        stow_test_failures++;
    }
    rmdir(tmpdir);
    curl_global_cleanup();
    TEST_DONE();
}
