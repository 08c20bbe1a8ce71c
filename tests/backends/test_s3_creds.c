/* The AWS credential chain: environment, shared credentials file (real temp files), and
 * IMDSv2 against tests/integration/imds_server.py started on loopback by this test. */
#include "s3_creds.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test.h"

extern char **environ;

static char tmpdir[512];

static const char *const AWS_VARS[] = {"AWS_ACCESS_KEY_ID",
                                       "AWS_SECRET_ACCESS_KEY",
                                       "AWS_SESSION_TOKEN",
                                       "AWS_SECURITY_TOKEN",
                                       "AWS_CREDENTIAL_EXPIRATION",
                                       "AWS_SHARED_CREDENTIALS_FILE",
                                       "AWS_PROFILE",
                                       "AWS_EC2_METADATA_SERVICE_ENDPOINT",
                                       "AWS_EC2_METADATA_DISABLED",
                                       "AWS_CONFIG_FILE",
                                       "AWS_DEFAULT_PROFILE",
                                       "AWS_WEB_IDENTITY_TOKEN_FILE",
                                       "AWS_ROLE_ARN",
                                       NULL};

static void clean_env(void)
{
    for (int i = 0; AWS_VARS[i] != NULL; i++)
        unsetenv(AWS_VARS[i]);
    /* nothing in this test may reach a real metadata service or a real ~/.aws */
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
    setenv("HOME", tmpdir, 1);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
        exit(1);
    }
    fputs(text, f);
    fclose(f);
}

static void tpath(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", tmpdir, name);
}

/* ---- environment ---- */

static void test_env(void)
{
    stow_s3_creds c;
    stow_error err = {0};

    clean_env();
    CHECK_INT(stow_s3_creds_from_env(&c, &err), STOW_ENOTFOUND);
    CHECK(strstr(err.msg, "AWS_ACCESS_KEY_ID") != NULL);

    setenv("AWS_ACCESS_KEY_ID", "AKIAENVEXAMPLE", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "env/secret+key", 1);
    CHECK_INT(stow_s3_creds_from_env(&c, &err), 0);
    CHECK_STR(c.access_key, "AKIAENVEXAMPLE");
    CHECK_STR(c.secret_key, "env/secret+key");
    CHECK_STR(c.session_token, "");
    CHECK_INT(c.expiry, 0);
    CHECK_STR(c.source, "environment");

    setenv("AWS_SESSION_TOKEN", "envtoken==", 1);
    setenv("AWS_CREDENTIAL_EXPIRATION", "2030-01-02T03:04:05Z", 1);
    CHECK_INT(stow_s3_creds_from_env(&c, &err), 0);
    CHECK_STR(c.session_token, "envtoken==");
    CHECK_INT(c.expiry, 1893553445);

    /* the legacy name is a fallback only */
    unsetenv("AWS_SESSION_TOKEN");
    setenv("AWS_SECURITY_TOKEN", "legacytoken", 1);
    CHECK_INT(stow_s3_creds_from_env(&c, &err), 0);
    CHECK_STR(c.session_token, "legacytoken");

    setenv("AWS_CREDENTIAL_EXPIRATION", "tomorrow", 1);
    CHECK_INT(stow_s3_creds_from_env(&c, &err), STOW_EUSAGE);
    CHECK(strstr(err.msg, "AWS_CREDENTIAL_EXPIRATION") != NULL);
    CHECK_STR(c.secret_key, "");
    unsetenv("AWS_CREDENTIAL_EXPIRATION");

    /* only one half: an error that names the missing variable, and the chain stops there */
    unsetenv("AWS_SECRET_ACCESS_KEY");
    CHECK_INT(stow_s3_creds_from_env(&c, &err), STOW_EAUTH);
    CHECK(strstr(err.msg, "AWS_SECRET_ACCESS_KEY is not") != NULL);
    CHECK_INT(stow_s3_creds_resolve(&c, &err), STOW_EAUTH);
    CHECK(strstr(err.msg, "AWS_SECRET_ACCESS_KEY") != NULL);

    /* empty values count as unset */
    setenv("AWS_ACCESS_KEY_ID", "", 1);
    CHECK_INT(stow_s3_creds_from_env(&c, &err), STOW_ENOTFOUND);

    /* too long for the fields */
    char big[400];
    memset(big, 'k', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    setenv("AWS_ACCESS_KEY_ID", "AKIAENVEXAMPLE", 1);
    setenv("AWS_SECRET_ACCESS_KEY", big, 1);
    CHECK_INT(stow_s3_creds_from_env(&c, &err), STOW_EAUTH);
    CHECK(strstr(err.msg, big) == NULL);
    clean_env();
}

/* ---- shared credentials file ---- */

static const char *CREDS_TEXT = "# written by aws configure\n"
                                "[default]\n"
                                "aws_access_key_id = AKIADEFAULT\n"
                                "aws_secret_access_key = default/secret\n"
                                "region = eu-west-1\n"
                                "\n"
                                "; another profile\n"
                                "[ci]\n"
                                "AWS_ACCESS_KEY_ID=AKIACI\n"
                                "aws_secret_access_key   =   ci/secret+x==   \n"
                                "aws_session_token = ci-token\n"
                                "[nosecret]\n"
                                "aws_access_key_id = AKIAHALF\n"
                                "[sso]\n"
                                "sso_start_url = https://example.awsapps.com/start\n";

static void test_file_profiles(void)
{
    stow_s3_creds c;
    stow_error err = {0};
    char path[600], missing[600];

    clean_env();
    tpath(path, sizeof(path), "credentials");
    tpath(missing, sizeof(missing), "no-such-file");
    write_file(path, CREDS_TEXT);

    CHECK_INT(stow_s3_creds_from_file(&c, path, "default", &err), 0);
    CHECK_STR(c.access_key, "AKIADEFAULT");
    CHECK_STR(c.secret_key, "default/secret");
    CHECK_STR(c.session_token, "");
    CHECK(strstr(c.source, path) != NULL && strstr(c.source, "profile default") != NULL);

    CHECK_INT(stow_s3_creds_from_file(&c, path, "ci", &err), 0);
    CHECK_STR(c.access_key, "AKIACI");
    CHECK_STR(c.secret_key, "ci/secret+x==");
    CHECK_STR(c.session_token, "ci-token");

    CHECK_INT(stow_s3_creds_from_file(&c, path, "prod", &err), STOW_ENOTFOUND);
    CHECK(strstr(err.msg, "\"prod\"") != NULL && strstr(err.msg, path) != NULL);
    CHECK_INT(stow_s3_creds_from_file(&c, path, "nosecret", &err), STOW_EAUTH);
    CHECK(strstr(err.msg, "aws_secret_access_key") != NULL);
    CHECK_INT(stow_s3_creds_from_file(&c, path, "sso", &err), STOW_ENOTFOUND);
    CHECK(strstr(err.msg, "no aws_access_key_id") != NULL);
    CHECK_INT(stow_s3_creds_from_file(&c, missing, "default", &err), STOW_ENOTFOUND);
    CHECK(strstr(err.msg, missing) != NULL);

    /* not a regular file: a FIFO without a writer (would block forever), a device that never
     * ends, a directory: refused at once, naming the file */
    char fifo[600];
    tpath(fifo, sizeof(fifo), "creds-fifo");
    CHECK_INT(mkfifo(fifo, 0600), 0);
    CHECK_INT(stow_s3_creds_from_file(&c, fifo, "default", &err), STOW_EAUTH);
    CHECK(strstr(err.msg, fifo) != NULL && strstr(err.msg, "not a regular file") != NULL);
    unlink(fifo);
    CHECK_INT(stow_s3_creds_from_file(&c, "/dev/zero", "default", &err), STOW_EAUTH);
    CHECK(strstr(err.msg, "/dev/zero") != NULL);

    /* through the chain: AWS_PROFILE selects, default otherwise */
    setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
    CHECK_INT(stow_s3_creds_resolve(&c, &err), 0);
    CHECK_STR(c.access_key, "AKIADEFAULT");
    setenv("AWS_PROFILE", "ci", 1);
    CHECK_INT(stow_s3_creds_resolve(&c, &err), 0);
    CHECK_STR(c.access_key, "AKIACI");
    CHECK_STR(c.session_token, "ci-token");

    /* a named profile that is missing is an error naming profile and file */
    setenv("AWS_PROFILE", "prod", 1);
    CHECK_INT(stow_s3_creds_resolve(&c, &err), STOW_EAUTH);
    CHECK(strstr(err.msg, "prod") != NULL && strstr(err.msg, path) != NULL);
    CHECK_STR(c.secret_key, "");

    /* environment beats the file */
    setenv("AWS_PROFILE", "ci", 1);
    setenv("AWS_ACCESS_KEY_ID", "AKIAENV", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
    CHECK_INT(stow_s3_creds_resolve(&c, &err), 0);
    CHECK_STR(c.access_key, "AKIAENV");
    CHECK_STR(c.source, "environment");

    /* default location: $HOME/.aws/credentials, and "~/" in AWS_SHARED_CREDENTIALS_FILE */
    clean_env();
    char awsdir[600], homecreds[700];
    tpath(awsdir, sizeof(awsdir), ".aws");
    mkdir(awsdir, 0700);
    snprintf(homecreds, sizeof(homecreds), "%s/credentials", awsdir);
    write_file(homecreds, "[default]\naws_access_key_id=AKIAHOME\naws_secret_access_key=h\n");
    CHECK_INT(stow_s3_creds_resolve(&c, &err), 0);
    CHECK_STR(c.access_key, "AKIAHOME");
    CHECK(strstr(c.source, homecreds) != NULL);
    setenv("AWS_SHARED_CREDENTIALS_FILE", "~/credentials", 1);
    CHECK_INT(stow_s3_creds_resolve(&c, &err), 0);
    CHECK_STR(c.access_key, "AKIADEFAULT");
    unlink(homecreds);
    rmdir(awsdir);
    unlink(path);
    clean_env();
}

static void test_file_long_lines(void)
{
    stow_s3_creds c;
    stow_error err = {0};
    char path[600];
    static char token[3001], text[4096];

    clean_env();
    tpath(path, sizeof(path), "long-credentials");
    /* a realistic STS token: base64 with '/', '+' and '=', far longer than inih's 200-byte
     * line buffer */
    for (int i = 0; i < 3000; i++)
        token[i] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[(i * 7) % 64];
    token[2998] = '=';
    token[2999] = '=';
    token[3000] = '\0';
    snprintf(text, sizeof(text),
             "[default]\n"
             "aws_access_key_id = ASIALONG\n"
             "aws_session_token = %s\n"
             "aws_secret_access_key = long/secret\n"
             "[other]\n"
             "aws_access_key_id = AKIAOTHER\n"
             "aws_secret_access_key = other\n",
             token);
    write_file(path, text);
    CHECK_INT(stow_s3_creds_from_file(&c, path, "default", &err), 0);
    CHECK_STR(c.access_key, "ASIALONG");
    CHECK_STR(c.secret_key, "long/secret");
    CHECK_INT(strlen(c.session_token), 3000);
    CHECK_STR(c.session_token, token);
    CHECK_INT(stow_s3_creds_from_file(&c, path, "other", &err), 0);
    CHECK_STR(c.access_key, "AKIAOTHER");

    /* a broken line after the long one is reported with its line number in the file */
    snprintf(text, sizeof(text),
             "[default]\n"
             "aws_session_token = %s\n"
             "this line is broken\n",
             token);
    write_file(path, text);
    CHECK_INT(stow_s3_creds_from_file(&c, path, "default", &err), STOW_EAUTH);
    CHECK(strstr(err.msg, ":3: not an INI line") != NULL);
    if (strstr(err.msg, ":3: ") == NULL)
        fprintf(stderr, "  message: %s\n", err.msg);

    /* a value longer than its field: refused, not truncated */
    static char huge[9000 + 64];
    memset(huge, 0, sizeof(huge));
    memcpy(huge, "[default]\naws_access_key_id = A\naws_secret_access_key = ", 56);
    memset(huge + 56, 's', 9000);
    huge[56 + 9000] = '\n';
    write_file(path, huge);
    CHECK_INT(stow_s3_creds_from_file(&c, path, "default", &err), STOW_EAUTH);
    CHECK(strstr(err.msg, "too long") != NULL);
    CHECK_STR(c.secret_key, "");

    /* a physical line over the 64 KiB cap is refused with its line number */
    static char giant[70000 + 64];
    memset(giant, 0, sizeof(giant));
    memcpy(giant, "[default]\naws_access_key_id = A\naws_session_token = ", 52);
    memset(giant + 52, 't', 70000);
    giant[52 + 70000] = '\n';
    write_file(path, giant);
    CHECK_INT(stow_s3_creds_from_file(&c, path, "default", &err), STOW_EAUTH);
    CHECK(strstr(err.msg, ":3: line too long") != NULL);
    unlink(path);
}

/* ---- time and expiry ---- */

static void test_time_and_expiry(void)
{
    time_t t;
    stow_error err = {0};
    CHECK_INT(stow_s3_creds_parse_time(&t, "2017-05-17T15:09:54Z", &err), 0);
    CHECK_INT(t, 1495033794);
    CHECK_INT(stow_s3_creds_parse_time(&t, "2017-05-17T15:09:54.123Z", &err), 0);
    CHECK_INT(t, 1495033794);
    CHECK_INT(stow_s3_creds_parse_time(&t, "2017-05-17T15:09:54+00:00", &err), 0);
    CHECK_INT(t, 1495033794);
    const char *bad[] = {"2017-05-17T15:09:54",
                         "2017-05-17T15:09:54+02:00",
                         "2017-13-17T15:09:54Z",
                         "2017-05-17",
                         "",
                         "2017-05-17T15:09:5xZ",
                         NULL};
    for (int i = 0; bad[i] != NULL; i++) {
        if (stow_s3_creds_parse_time(&t, bad[i], &err) != STOW_EUSAGE) {
            fprintf(stderr, "time \"%s\" was accepted\n", bad[i]);
            stow_test_failures++;
        }
    }

    stow_s3_creds c;
    memset(&c, 0, sizeof(c));
    time_t now = 1700000000;
    CHECK_INT(stow_s3_creds_near_expiry(&c, now, 300), 0); /* no expiry */
    c.expiry = now + 600;
    CHECK_INT(stow_s3_creds_near_expiry(&c, now, 300), 0);
    CHECK_INT(stow_s3_creds_near_expiry(&c, now + 299, 300), 0);
    CHECK_INT(stow_s3_creds_near_expiry(&c, now + 300, 300), 1);
    CHECK_INT(stow_s3_creds_near_expiry(&c, now + 700, 300), 1); /* expired */
    CHECK_INT(stow_s3_creds_near_expiry(&c, now, STOW_S3_CREDS_REFRESH_MARGIN), 0);
    CHECK_INT(stow_s3_creds_near_expiry(NULL, now, 300), 0);

    stow_s3_creds_clear(&c);
    CHECK_INT(c.expiry, 0);
    stow_s3_creds_clear(NULL);
}

/* ---- IMDSv2 against the loopback fixture ---- */

typedef struct imds_server {
    pid_t pid;
    int stdin_w; /* closing it stops the server */
    int port;
    char endpoint[64];
    char log[600];
} imds_server;

static int start_imds(imds_server *s, const char *const *extra)
{
    const char *src = getenv("STOW_TEST_SRC");
    char script[1024];
    const char *argv[24];
    int in[2] = {-1, -1}, out[2] = {-1, -1};
    int n = 0;
    posix_spawn_file_actions_t fa;

    memset(s, 0, sizeof(*s));
    s->pid = -1;
    s->stdin_w = -1;
    if (src == NULL) {
        fprintf(stderr, "FATAL: STOW_TEST_SRC is not set; run through ctest\n");
        return -1;
    }
    snprintf(script, sizeof(script), "%s/tests/integration/imds_server.py", src);
    tpath(s->log, sizeof(s->log), "imds.log");
    unlink(s->log);
    argv[n++] = "python3";
    argv[n++] = script;
    argv[n++] = "--log";
    argv[n++] = s->log;
    for (int i = 0; extra != NULL && extra[i] != NULL && n < 22; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;

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
        fprintf(stderr, "FATAL: cannot start python3 %s: %s\n", script, strerror(rc));
        close(out[0]);
        s->pid = -1;
        return -1;
    }

    /* wait up to 15 s for "PORT <n>\n" */
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
        fprintf(stderr, "FATAL: the IMDS test server did not start (said \"%s\")\n", buf);
        return -1;
    }
    s->port = (int)port;
    snprintf(s->endpoint, sizeof(s->endpoint), "http://127.0.0.1:%d", s->port);
    return 0;
}

static void stop_imds(imds_server *s)
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

static size_t discard(char *p, size_t size, size_t nmemb, void *ud)
{
    (void)p, (void)ud;
    return size * nmemb;
}

static long raw_get_status(const char *url, const char *header)
{
    long status = 0;
    struct curl_slist *hl = header ? curl_slist_append(NULL, header) : NULL;
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    curl_slist_free_all(hl);
    return status;
}

static int count_in_file(const char *path, const char *needle)
{
    char line[512];
    int n = 0;
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL)
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

static int test_imds(void)
{
    imds_server s;
    stow_s3_creds c;
    stow_error err = {0};
    char url[200];

    clean_env();
    if (start_imds(&s, NULL) != 0) {
        stop_imds(&s);
        return -1;
    }

    /* the fixture is strict: no token, no answer */
    snprintf(url, sizeof(url), "%s/latest/meta-data/iam/security-credentials/", s.endpoint);
    CHECK_INT(raw_get_status(url, NULL), 401);
    CHECK_INT(raw_get_status(url, "X-aws-ec2-metadata-token: forged"), 401);

    time_t before = time(NULL);
    CHECK_INT(stow_s3_creds_from_imds(&c, s.endpoint, &err), 0);
    if (err.code != 0)
        fprintf(stderr, "  imds: %s\n", err.msg);
    CHECK_STR(c.access_key, "ASIAIMDSEXAMPLE00001");
    CHECK_STR(c.secret_key, "imds/secret+EXAMPLE/KEY0000000000000000000");
    CHECK_STR(c.session_token, "IQoJb3JpZ2luX2VjEXAMPLE//session+token==");
    CHECK(c.expiry >= before + 6 * 3600 - 5 && c.expiry <= time(NULL) + 6 * 3600 + 5);
    CHECK(strstr(c.source, "instance metadata") != NULL);
    CHECK(strstr(c.source, "stowage-test-role") != NULL);
    CHECK_INT(stow_s3_creds_near_expiry(&c, time(NULL), STOW_S3_CREDS_REFRESH_MARGIN), 0);
    /* token fetched once with PUT, both GETs carried it */
    CHECK_INT(count_in_file(s.log, "PUT /latest/api/token 200"), 1);
    CHECK_INT(count_in_file(s.log, "GET /latest/meta-data/iam/security-credentials/ 200 token=yes"),
              1);
    CHECK_INT(count_in_file(s.log, "security-credentials/stowage-test-role 200 token=yes"), 1);

    /* a trailing slash on the endpoint is fine */
    snprintf(url, sizeof(url), "%s/", s.endpoint);
    CHECK_INT(stow_s3_creds_from_imds(&c, url, &err), 0);

    /* the chain reaches IMDS when environment and file have nothing */
    char nofile[600];
    tpath(nofile, sizeof(nofile), "absent-credentials");
    setenv("AWS_SHARED_CREDENTIALS_FILE", nofile, 1);
    unsetenv("AWS_EC2_METADATA_DISABLED");
    setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", s.endpoint, 1);
    CHECK_INT(stow_s3_creds_resolve(&c, &err), 0);
    CHECK_STR(c.access_key, "ASIAIMDSEXAMPLE00001");
    CHECK(c.expiry > 0);
    /* ... and not when the environment has credentials */
    setenv("AWS_ACCESS_KEY_ID", "AKIAENV", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
    CHECK_INT(stow_s3_creds_resolve(&c, &err), 0);
    CHECK_STR(c.access_key, "AKIAENV");
    stop_imds(&s);
    clean_env();

    /* short-lived credentials are reported as near expiry */
    const char *short_lived[] = {"--expires-in", "120", NULL};
    if (start_imds(&s, short_lived) != 0) {
        stop_imds(&s);
        return -1;
    }
    CHECK_INT(stow_s3_creds_from_imds(&c, s.endpoint, &err), 0);
    CHECK_INT(stow_s3_creds_near_expiry(&c, time(NULL), STOW_S3_CREDS_REFRESH_MARGIN), 1);
    CHECK_INT(stow_s3_creds_near_expiry(&c, time(NULL), 60), 0);
    stop_imds(&s);

    /* no role attached: not found, with the reason */
    const char *no_role[] = {"--no-role", NULL};
    if (start_imds(&s, no_role) != 0) {
        stop_imds(&s);
        return -1;
    }
    CHECK_INT(stow_s3_creds_from_imds(&c, s.endpoint, &err), STOW_ENOTFOUND);
    CHECK(strstr(err.msg, "no IAM role") != NULL);
    stop_imds(&s);

    /* tokens refused (IMDSv2 unavailable): not found */
    const char *refuse[] = {"--refuse-tokens", NULL};
    if (start_imds(&s, refuse) != 0) {
        stop_imds(&s);
        return -1;
    }
    CHECK_INT(stow_s3_creds_from_imds(&c, s.endpoint, &err), STOW_ENOTFOUND);
    CHECK(strstr(err.msg, "HTTP 403") != NULL);
    stop_imds(&s);
    return 0;
}

/* A port nobody listens on, and a listener that never answers. */
static int listen_loopback(int *port)
{
    struct sockaddr_in a;
    socklen_t al = sizeof(a);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 8) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &al) != 0) {
        fprintf(stderr, "FATAL: loopback socket: %s\n", strerror(errno));
        exit(1);
    }
    *port = ntohs(a.sin_port);
    return fd;
}

static void test_nothing_found(void)
{
    stow_s3_creds c;
    stow_error err = {0};
    char nofile[600], endpoint[64];
    int port;

    clean_env();
    /* a port that was free a moment ago: connection refused */
    int fd = listen_loopback(&port);
    close(fd);
    snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%d", port);
    tpath(nofile, sizeof(nofile), "absent-credentials");
    setenv("AWS_SHARED_CREDENTIALS_FILE", nofile, 1);
    unsetenv("AWS_EC2_METADATA_DISABLED");
    setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", endpoint, 1);
    double t0 = now_s();
    CHECK_INT(stow_s3_creds_resolve(&c, &err), STOW_EAUTH);
    CHECK(now_s() - t0 < 3.0);
    CHECK(strstr(err.msg, "no AWS credentials found") != NULL);
    CHECK(strstr(err.msg, "environment: AWS_ACCESS_KEY_ID not set") != NULL);
    CHECK(strstr(err.msg, nofile) != NULL);
    CHECK(strstr(err.msg, endpoint) != NULL);
    fprintf(stderr, "  (nothing found: %s)\n", err.msg);

    /* disabled metadata service */
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
    CHECK_INT(stow_s3_creds_resolve(&c, &err), STOW_EAUTH);
    CHECK(strstr(err.msg, "AWS_EC2_METADATA_DISABLED") != NULL);

    /* a metadata service that accepts connections but never answers gives up after the
     * request timeout, and the chain goes on */
    fd = listen_loopback(&port);
    snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%d", port);
    unsetenv("AWS_EC2_METADATA_DISABLED");
    setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", endpoint, 1);
    t0 = now_s();
    CHECK_INT(stow_s3_creds_resolve(&c, &err), STOW_EAUTH);
    double took = now_s() - t0;
    CHECK(took < 6.0);
    CHECK(strstr(err.msg, "no AWS credentials found") != NULL);
    CHECK(strstr(err.msg, "imed out") != NULL);
    fprintf(stderr, "  (hung IMDS gave up after %.1f s: %s)\n", took, err.msg);
    close(fd);

    /* a malformed endpoint is a usage error */
    setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "169.254.169.254", 1);
    CHECK_INT(stow_s3_creds_resolve(&c, &err), STOW_EUSAGE);
    clean_env();
}

int main(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/stow-creds-XXXXXX", base && base[0] ? base : "/tmp");
    if (mkdtemp(tmpdir) == NULL) {
        fprintf(stderr, "FATAL: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);

    test_env();
    test_file_profiles();
    test_file_long_lines();
    test_time_and_expiry();
    if (test_imds() != 0) {
        fprintf(stderr, "FATAL: IMDS tests could not run\n");
        stow_test_failures++;
    }
    test_nothing_found();

    char log[600];
    tpath(log, sizeof(log), "imds.log");
    unlink(log);
    rmdir(tmpdir);
    curl_global_cleanup();
    TEST_DONE();
}
