/* backends/s3_sts.c: answers (AWS's and moto's error shapes), the endpoint rules, AssumeRole
 * against moto_server's STS with authentication on (then S3 with the returned keys), and
 * AssumeRoleWithWebIdentity against tests/integration/sts_server.py, a stand-in that checks
 * the request shape (moto does not check web identity tokens). Runs under with_s3.sh moto;
 * exit 77 when moto_server is not installed. */
#include "s3_sts.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "server_fixture.h"
#include "test.h"

#define ROLE "arn:aws:iam::123456789012:role/stowage-role"
#define NS "xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\""

static char tmpdir[512];

static void tpath(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", tmpdir, name);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "FATAL: cannot write %s\n", path);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
}

static void test_parse(void)
{
    stow_s3_creds c;
    stow_error err = {0};
    const char *good =
        "<AssumeRoleResponse " NS "><AssumeRoleResult><AssumedRoleUser><Arn>a</Arn>"
        "</AssumedRoleUser><Credentials><AccessKeyId>ASIAX</AccessKeyId>"
        "<SecretAccessKey>s/e+c</SecretAccessKey><SessionToken>tok&amp;en</SessionToken>"
        "<Expiration>2030-01-02T03:04:05.000Z</Expiration></Credentials></AssumeRoleResult>"
        "</AssumeRoleResponse>";
    CHECK_INT(stow_s3_sts_parse(&c, good, strlen(good), "t", &err), STOW_OK);
    CHECK_STR(c.access_key, "ASIAX");
    CHECK_STR(c.secret_key, "s/e+c");
    CHECK_STR(c.session_token, "tok&en");
    CHECK_INT(c.expiry, 1893553445);

    /* AWS's error shape, and moto's (an <Errors> wrapper) */
    const char *aws = "<ErrorResponse " NS "><Error><Type>Sender</Type><Code>ExpiredTokenException"
                      "</Code><Message>Token expired: current date/time 1 must be before 0"
                      "</Message></Error><RequestId>r</RequestId></ErrorResponse>";
    CHECK_INT(stow_s3_sts_parse(&c, aws, strlen(aws), "STS X", &err), STOW_EAUTH);
    CHECK(strstr(err.msg, "STS X: ExpiredTokenException: Token expired") != NULL);
    const char *moto = "<?xml version=\"1.0\"?><ErrorResponse><Errors><Error><Code>AccessDenied"
                       "</Code><Message>no</Message></Error></Errors></ErrorResponse>";
    CHECK_INT(stow_s3_sts_parse(&c, moto, strlen(moto), "t", &err), STOW_EAUTH);
    CHECK(strstr(err.msg, "AccessDenied: no") != NULL);

    /* nonsense is an error, not credentials */
    CHECK_INT(stow_s3_sts_parse(&c, "<a><b>", 6, "t", &err), STOW_ERR);
    CHECK(strstr(err.msg, "not well-formed") != NULL);
    const char *nocreds = "<AssumeRoleResponse><AssumeRoleResult/></AssumeRoleResponse>";
    CHECK_INT(stow_s3_sts_parse(&c, nocreds, strlen(nocreds), "t", &err), STOW_ERR);
    CHECK(strstr(err.msg, "no Credentials") != NULL);
    const char *badtime = "<R><Credentials><AccessKeyId>A</AccessKeyId><SecretAccessKey>B"
                          "</SecretAccessKey><Expiration>tomorrow</Expiration></Credentials></R>";
    CHECK_INT(stow_s3_sts_parse(&c, badtime, strlen(badtime), "t", &err), STOW_ERR);
    CHECK(strstr(err.msg, "Expiration") != NULL);
    CHECK_STR(c.access_key, "");

    /* a session token longer than the field is refused, not cut */
    size_t n = STOW_S3_TOKEN_MAX + 10;
    char *big = malloc(n + 200);
    if (big != NULL) {
        int k = snprintf(big, n + 200,
                         "<R><Credentials><AccessKeyId>A</AccessKeyId>"
                         "<SecretAccessKey>B</SecretAccessKey><SessionToken>");
        memset(big + k, 'x', n);
        snprintf(big + k + n, 200, "</SessionToken></Credentials></R>");
        CHECK(stow_s3_sts_parse(&c, big, strlen(big), "t", &err) != STOW_OK);
        free(big);
    }
}

static void test_endpoint(void)
{
    char url[STOW_S3_STS_URL_MAX], region[64];
    stow_error err = {0};
    stow_s3_sts_opts o = {0};
    const char *vars[] = {"AWS_ENDPOINT_URL_STS",       "AWS_ENDPOINT_URL",
                          "AWS_STS_REGIONAL_ENDPOINTS", "AWS_REGION",
                          "AWS_DEFAULT_REGION",         NULL};
    for (int i = 0; vars[i]; i++)
        unsetenv(vars[i]);

    CHECK_INT(stow_s3_sts_endpoint(url, sizeof(url), region, sizeof(region), &o, &err), STOW_OK);
    CHECK_STR(url, "https://sts.us-east-1.amazonaws.com");
    CHECK_STR(region, "us-east-1");
    setenv("AWS_DEFAULT_REGION", "eu-west-1", 1);
    CHECK_INT(stow_s3_sts_endpoint(url, sizeof(url), region, sizeof(region), &o, &err), STOW_OK);
    CHECK_STR(url, "https://sts.eu-west-1.amazonaws.com");
    setenv("AWS_REGION", "ap-east-1", 1);
    CHECK_INT(stow_s3_sts_endpoint(url, sizeof(url), region, sizeof(region), &o, &err), STOW_OK);
    CHECK_STR(url, "https://sts.ap-east-1.amazonaws.com");
    o.region = "cn-north-1";
    CHECK_INT(stow_s3_sts_endpoint(url, sizeof(url), region, sizeof(region), &o, &err), STOW_OK);
    CHECK_STR(url, "https://sts.cn-north-1.amazonaws.com.cn");

    /* legacy: the global endpoint for the legacy regions only, signed for us-east-1 */
    setenv("AWS_STS_REGIONAL_ENDPOINTS", "legacy", 1);
    o.region = "eu-west-1";
    CHECK_INT(stow_s3_sts_endpoint(url, sizeof(url), region, sizeof(region), &o, &err), STOW_OK);
    CHECK_STR(url, "https://sts.amazonaws.com");
    CHECK_STR(region, "us-east-1");
    o.region = "ap-east-1"; /* not a legacy region */
    CHECK_INT(stow_s3_sts_endpoint(url, sizeof(url), region, sizeof(region), &o, &err), STOW_OK);
    CHECK_STR(url, "https://sts.ap-east-1.amazonaws.com");
    setenv("AWS_STS_REGIONAL_ENDPOINTS", "regional", 1);
    o.region = "eu-west-1";
    CHECK_INT(stow_s3_sts_endpoint(url, sizeof(url), region, sizeof(region), &o, &err), STOW_OK);
    CHECK_STR(url, "https://sts.eu-west-1.amazonaws.com");
    setenv("AWS_STS_REGIONAL_ENDPOINTS", "sometimes", 1);
    CHECK_INT(stow_s3_sts_endpoint(url, sizeof(url), region, sizeof(region), &o, &err),
              STOW_EUSAGE);
    unsetenv("AWS_STS_REGIONAL_ENDPOINTS");

    /* the setting, then AWS_ENDPOINT_URL, then AWS_ENDPOINT_URL_STS */
    o.endpoint = "http://127.0.0.1:9/";
    CHECK_INT(stow_s3_sts_endpoint(url, sizeof(url), region, sizeof(region), &o, &err), STOW_OK);
    CHECK_STR(url, "http://127.0.0.1:9");
    CHECK_STR(region, "eu-west-1");
    setenv("AWS_ENDPOINT_URL", "http://generic.example:8080", 1);
    CHECK_INT(stow_s3_sts_endpoint(url, sizeof(url), region, sizeof(region), &o, &err), STOW_OK);
    CHECK_STR(url, "http://generic.example:8080");
    setenv("AWS_ENDPOINT_URL_STS", "https://sts.example/path/", 1);
    CHECK_INT(stow_s3_sts_endpoint(url, sizeof(url), region, sizeof(region), &o, &err), STOW_OK);
    CHECK_STR(url, "https://sts.example/path");
    setenv("AWS_ENDPOINT_URL_STS", "sts.example", 1);
    CHECK_INT(stow_s3_sts_endpoint(url, sizeof(url), region, sizeof(region), &o, &err),
              STOW_EUSAGE);
    CHECK(strstr(err.msg, "AWS_ENDPOINT_URL_STS") != NULL);
    setenv("AWS_ENDPOINT_URL_STS", "https://user:pw@sts.example", 1);
    CHECK_INT(stow_s3_sts_endpoint(url, sizeof(url), region, sizeof(region), &o, &err),
              STOW_EUSAGE);
    CHECK(strstr(err.msg, "pw") == NULL);
    o.region = "eu west";
    unsetenv("AWS_ENDPOINT_URL_STS");
    CHECK_INT(stow_s3_sts_endpoint(url, sizeof(url), region, sizeof(region), &o, &err),
              STOW_EUSAGE);
    for (int i = 0; vars[i]; i++)
        unsetenv(vars[i]);
}

/* Puts and gets one object with creds (through the environment, as the chain reads it). */
static int s3_roundtrip(const stow_s3_creds *c, const char *name)
{
    setenv("AWS_ACCESS_KEY_ID", c->access_key, 1);
    setenv("AWS_SECRET_ACCESS_KEY", c->secret_key, 1);
    setenv("AWS_SESSION_TOKEN", c->session_token, 1);
    char url[512];
    snprintf(url, sizeof(url), "s3://%s/sts", getenv("S3_BUCKET"));
    stow_backend_opts o = {0};
    o.url = url;
    o.endpoint = getenv("S3_ENDPOINT");
    o.path_style = -1;
    o.verify_tls = 1;
    o.max_retries = 1;
    stow_backend *b = NULL;
    stow_error err = {0};
    char *got = NULL;
    size_t len = 0;
    int rc = stow_backend_open(&b, &o, &err);
    if (rc == STOW_OK)
        rc = stow_backend_put_buffer(b, name, "payload", 7, 0, &err);
    if (rc == STOW_OK)
        rc = stow_backend_get_buffer(&got, &len, b, name, 1024, &err);
    if (rc == STOW_OK && (len != 7 || memcmp(got, "payload", 7) != 0))
        rc = STOW_ECORRUPT;
    if (rc != STOW_OK)
        fprintf(stderr, "  S3 round trip %s: %s\n", name, err.msg);
    free(got);
    if (b != NULL)
        stow_backend_free(b);
    return rc;
}

static void test_assume_role(stow_s3_creds *session)
{
    stow_s3_creds user, c, chained;
    stow_error err = {0};
    stow_s3_sts_opts o = {0};
    memset(&user, 0, sizeof(user));
    snprintf(user.access_key, sizeof(user.access_key), "%s", getenv("AWS_ACCESS_KEY_ID"));
    snprintf(user.secret_key, sizeof(user.secret_key), "%s", getenv("AWS_SECRET_ACCESS_KEY"));
    snprintf(user.source, sizeof(user.source), "test user");
    o.endpoint = getenv("S3_ENDPOINT");

    CHECK_INT(stow_s3_sts_assume_role(&c, &o, &user, ROLE, "chain", NULL, 900, &err), STOW_OK);
    CHECK(strncmp(c.access_key, "ASIA", 4) == 0);
    CHECK(c.session_token[0] != '\0');
    time_t now = time(NULL);
    CHECK(c.expiry > now + 800 && c.expiry <= now + 960);
    CHECK(strstr(c.source, "assumed role " ROLE) != NULL);
    *session = c;

    /* the session may assume the role again (the trust policy names session "chain"): the
     * second call is signed with a session token */
    CHECK_INT(stow_s3_sts_assume_role(&chained, &o, &c, ROLE, "second", NULL, 0, &err), STOW_OK);
    CHECK(strncmp(chained.access_key, "ASIA", 4) == 0);
    CHECK_INT(s3_roundtrip(&chained, "chained"), STOW_OK);
    /* but not from another session name: moto evaluates the trust policy */
    stow_s3_creds third;
    CHECK_INT(stow_s3_sts_assume_role(&third, &o, &chained, ROLE, "third", NULL, 0, &err),
              STOW_EAUTH);
    CHECK(strstr(err.msg, "AccessDenied") != NULL);

    /* a wrong secret: moto's SignatureDoesNotMatch, named */
    stow_s3_creds bad = user;
    snprintf(bad.secret_key, sizeof(bad.secret_key), "wrong");
    CHECK_INT(stow_s3_sts_assume_role(&c, &o, &bad, ROLE, NULL, NULL, 0, &err), STOW_EAUTH);
    CHECK(strstr(err.msg, "STS AssumeRole") != NULL &&
          strstr(err.msg, "SignatureDoesNotMatch") != NULL);
    CHECK(strstr(err.msg, "wrong") == NULL);
    CHECK_STR(c.secret_key, "");
}

/* ---- the web identity stand-in ---- */

typedef struct standin {
    pid_t pid;
    int stdin_w;
    char endpoint[64];
    char log[600];
} standin;

static int start_standin(standin *s, const stow_s3_creds *keys, const char *token_file)
{
    const char *src = getenv("STOW_TEST_SRC");
    char script[1024];
    int in[2], out[2];
    posix_spawn_file_actions_t fa;
    s->pid = -1;
    s->stdin_w = -1;
    if (src == NULL)
        return -1;
    snprintf(script, sizeof(script), "%s/tests/integration/sts_server.py", src);
    tpath(s->log, sizeof(s->log), "sts.log");
    const char *argv[] = {"python3",
                          script,
                          "--token-file",
                          token_file,
                          "--role-arn",
                          ROLE,
                          "--access-key",
                          keys->access_key,
                          "--secret-key",
                          keys->secret_key,
                          "--session-token",
                          keys->session_token,
                          "--log",
                          s->log,
                          "--fail-first",
                          "1",
                          NULL};
    if (pipe(in) != 0 || pipe(out) != 0)
        return -1;
    fcntl(in[1], F_SETFD, FD_CLOEXEC);
    fcntl(out[0], F_SETFD, FD_CLOEXEC);
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
        return -1;
    }
    char buf[64] = "";
    size_t len = 0;
    while (len < sizeof(buf) - 1 && memchr(buf, '\n', len) == NULL) {
        struct pollfd p = {.fd = out[0], .events = POLLIN};
        if (poll(&p, 1, 15000) <= 0)
            break;
        ssize_t r = read(out[0], buf + len, sizeof(buf) - 1 - len);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    close(out[0]);
    buf[len] = '\0';
    long port = strncmp(buf, "PORT ", 5) == 0 ? strtol(buf + 5, NULL, 10) : 0;
    if (port <= 0)
        return -1;
    snprintf(s->endpoint, sizeof(s->endpoint), "http://127.0.0.1:%ld", port);
    return 0;
}

static void stop_standin(standin *s)
{
    if (s->stdin_w >= 0)
        close(s->stdin_w);
    if (s->pid > 0)
        waitpid(s->pid, NULL, 0);
}

static int log_has(const char *path, const char *needle)
{
    char buf[8192];
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, needle) != NULL;
}

static void test_web_identity(const stow_s3_creds *keys)
{
    stow_s3_creds c;
    stow_error err = {0};
    char token_file[600];
    standin s;
    const char *token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyZXBvOm8vciJ9+/=.c2ln";

    tpath(token_file, sizeof(token_file), "token");
    write_file(token_file, token);
    if (start_standin(&s, keys, token_file) != 0) {
        fprintf(stderr, "FATAL: the STS stand-in did not start\n");
        stow_test_failures++;
        stop_standin(&s);
        return;
    }
    stow_s3_sts_opts o = {0};
    o.endpoint = s.endpoint;

    /* the token goes out form-encoded ('+', '/', '=' escaped), unsigned; the stand-in's
     * first answer is the transient IDPCommunicationError, which is retried */
    CHECK_INT(stow_s3_sts_assume_role_web_identity(&c, &o, ROLE, "unit-session", token, &err),
              STOW_OK);
    CHECK_STR(c.access_key, keys->access_key);
    CHECK_STR(c.session_token, keys->session_token);
    CHECK(c.expiry > time(NULL));
    CHECK(strstr(c.source, "web identity, role " ROLE) != NULL);
    CHECK(log_has(s.log, "POST / 400 IDPCommunicationError role=" ROLE));
    CHECK(log_has(s.log, "POST / 200 OK role=" ROLE " session=unit-session token=ok auth=no"));

    /* refusals carry the STS Code and Message, never the token */
    CHECK_INT(stow_s3_sts_assume_role_web_identity(&c, &o, ROLE, NULL, "some-other-token", &err),
              STOW_EAUTH);
    CHECK(strstr(err.msg, "InvalidIdentityToken") != NULL && strstr(err.msg, "HTTP 400") != NULL);
    CHECK(strstr(err.msg, "some-other-token") == NULL);
    CHECK(log_has(s.log, "session=stowage-"));
    CHECK_INT(stow_s3_sts_assume_role_web_identity(&c, &o, "not-an-arn", NULL, token, &err),
              STOW_EAUTH);
    CHECK(strstr(err.msg, "ValidationError") != NULL);

    /* the chain: AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN, then S3 with the keys */
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    unsetenv("AWS_SESSION_TOKEN");
    setenv("AWS_WEB_IDENTITY_TOKEN_FILE", token_file, 1);
    setenv("AWS_ROLE_ARN", ROLE, 1);
    setenv("AWS_ENDPOINT_URL_STS", s.endpoint, 1);
    CHECK_INT(stow_s3_creds_resolve(&c, &err), STOW_OK);
    CHECK(strstr(c.source, "web identity") != NULL);
    CHECK_INT(s3_roundtrip(&c, "webid"), STOW_OK);
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    unsetenv("AWS_SESSION_TOKEN");
    unsetenv("AWS_ROLE_ARN");
    CHECK_INT(stow_s3_creds_resolve(&c, &err), STOW_EAUTH);
    CHECK(strstr(err.msg, "AWS_ROLE_ARN") != NULL);
    unsetenv("AWS_WEB_IDENTITY_TOKEN_FILE");
    unsetenv("AWS_ENDPOINT_URL_STS");

    stop_standin(&s);
    unlink(s.log);
    unlink(token_file);
}

int main(int argc, char **argv)
{
    const char *running = getenv("S3_SERVER");
    if (running == NULL || strcmp(running, "moto") != 0)
        fx_reexec_through("with_s3.sh", "moto", argc, argv);
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/stow-sts-XXXXXX", base && base[0] ? base : "/tmp");
    if (mkdtemp(tmpdir) == NULL) {
        fprintf(stderr, "FATAL: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);

    test_parse();
    test_endpoint();
    stow_s3_creds session;
    memset(&session, 0, sizeof(session));
    test_assume_role(&session);
    if (session.access_key[0] != '\0')
        test_web_identity(&session);

    rmdir(tmpdir);
    curl_global_cleanup();
    TEST_DONE();
}
