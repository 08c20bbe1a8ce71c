/* backends/aws_config.c, aws_profile.c and aws_process.c without a network: the credentials
 * and config files merged as the SDKs do, profile selection, source_profile loops and the
 * refusals that happen before any STS call, and credential_process with real scripts
 * (success, non-zero exit, bad JSON, expired, oversized output, quoting, no shell). */
#include "aws_config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "test.h"

static char tmpdir[512];
static char credpath[600], confpath[600];

static void tpath(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", tmpdir, name);
}

static void write_file(const char *path, const char *text, int mode)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
        exit(1);
    }
    fputs(text, f);
    fclose(f);
    chmod(path, (mode_t)mode);
}

static void clean_env(void)
{
    const char *vars[] = {
        "AWS_PROFILE",           "AWS_DEFAULT_PROFILE",         "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN",
        "AWS_ENDPOINT_URL",      "AWS_ENDPOINT_URL_STS",        NULL};
    for (int i = 0; vars[i]; i++)
        unsetenv(vars[i]);
    setenv("HOME", tmpdir, 1);
    setenv("AWS_SHARED_CREDENTIALS_FILE", credpath, 1);
    setenv("AWS_CONFIG_FILE", confpath, 1);
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
}

static void test_merge(void)
{
    stow_aws_profile p;
    stow_error err = {0};
    char where[9000];

    clean_env();
    write_file(credpath,
               "[default]\naws_access_key_id = AKIACRED\naws_secret_access_key = credsecret\n"
               "[only-creds]\naws_access_key_id = AKIAONLY\naws_secret_access_key = s\n",
               0600);
    write_file(confpath,
               "[default]\naws_access_key_id = AKIACONF\naws_secret_access_key = confsecret\n"
               "region = eu-west-3\n"
               "[profile dev]\nregion = us-west-2\nrole_arn = arn:aws:iam::1:role/r\n"
               "source_profile = default\nrole_session_name = sess\nduration_seconds = 1800\n"
               "[plain]\naws_access_key_id = AKIANOTAPROFILE\naws_secret_access_key = x\n",
               0600);

    /* the credentials file wins key by key; the config adds what it lacks */
    CHECK_INT(stow_aws_profile_load(&p, "default", where, sizeof(where), &err), STOW_OK);
    CHECK(p.found);
    CHECK_STR(p.access_key, "AKIACRED");
    CHECK_STR(p.secret_key, "credsecret");
    CHECK_STR(p.region, "eu-west-3");
    CHECK(strstr(where, credpath) != NULL && strstr(where, confpath) != NULL);

    /* "[profile dev]" in the config file */
    CHECK_INT(stow_aws_profile_load(&p, "dev", where, sizeof(where), &err), STOW_OK);
    CHECK(p.found);
    CHECK_STR(p.role_arn, "arn:aws:iam::1:role/r");
    CHECK_STR(p.source_profile, "default");
    CHECK_STR(p.role_session_name, "sess");
    CHECK_STR(where, confpath);

    /* "[plain]" in the config file is not a profile (it needs "profile ") */
    CHECK_INT(stow_aws_profile_load(&p, "plain", where, sizeof(where), &err), STOW_OK);
    CHECK(!p.found);
    stow_s3_creds c;
    CHECK_INT(stow_aws_profile_creds(&c, "plain", NULL, &err), STOW_ENOTFOUND);
    CHECK(strstr(err.msg, "not found") != NULL && strstr(err.msg, confpath) != NULL);

    /* static keys through the chain */
    CHECK_INT(stow_aws_profile_creds(&c, "default", NULL, &err), STOW_OK);
    CHECK_STR(c.access_key, "AKIACRED");
    CHECK_INT(stow_aws_profile_creds(&c, "only-creds", NULL, &err), STOW_OK);
    CHECK_STR(c.access_key, "AKIAONLY");
    CHECK_INT(stow_s3_creds_resolve(&c, &err), STOW_OK);
    CHECK_STR(c.access_key, "AKIACRED");
    /* AWS_ROLE_ARN without a token file is not web identity (as the Go SDK): the profile */
    setenv("AWS_ROLE_ARN", "arn:aws:iam::1:role/r", 1);
    CHECK_INT(stow_s3_creds_resolve(&c, &err), STOW_OK);
    CHECK_STR(c.access_key, "AKIACRED");
    unsetenv("AWS_ROLE_ARN");

    /* AWS_PROFILE, then AWS_DEFAULT_PROFILE */
    int named = 0;
    CHECK_STR(stow_aws_profile_name(&named), "default");
    CHECK_INT(named, 0);
    setenv("AWS_DEFAULT_PROFILE", "only-creds", 1);
    CHECK_STR(stow_aws_profile_name(&named), "only-creds");
    CHECK_INT(named, 1);
    CHECK_INT(stow_s3_creds_resolve(&c, &err), STOW_OK);
    CHECK_STR(c.access_key, "AKIAONLY");
    setenv("AWS_PROFILE", "default", 1);
    CHECK_STR(stow_aws_profile_name(&named), "default");
    setenv("AWS_PROFILE", "missing", 1);
    CHECK_INT(stow_s3_creds_resolve(&c, &err), STOW_EAUTH);
    CHECK(strstr(err.msg, "missing") != NULL);

    /* a profile with only a region gives nothing: the chain goes on */
    clean_env();
    write_file(credpath, "", 0600);
    write_file(confpath, "[default]\nregion = eu-west-1\n", 0600);
    CHECK_INT(stow_aws_profile_creds(&c, "default", NULL, &err), STOW_ENOTFOUND);
    CHECK(strstr(err.msg, "no aws_access_key_id, role_arn or credential_process") != NULL);
    CHECK_INT(stow_s3_creds_resolve(&c, &err), STOW_EAUTH);
    CHECK(strstr(err.msg, "no AWS credentials found") != NULL);
    CHECK(strstr(err.msg, "web identity: AWS_WEB_IDENTITY_TOKEN_FILE not set") != NULL);

    /* a key id without secret, split across the two files, is still one profile */
    write_file(confpath, "[profile half]\naws_secret_access_key = fromconf\n", 0600);
    write_file(credpath, "[half]\naws_access_key_id = AKIAHALF\n", 0600);
    CHECK_INT(stow_aws_profile_creds(&c, "half", NULL, &err), STOW_OK);
    CHECK_STR(c.secret_key, "fromconf");
    write_file(confpath, "", 0600);
    CHECK_INT(stow_aws_profile_creds(&c, "half", NULL, &err), STOW_EAUTH);
    CHECK(strstr(err.msg, "aws_secret_access_key") != NULL);

    /* a malformed config file is an error naming the file and line */
    write_file(confpath, "[default]\nregion = x\nthis is not ini\n", 0600);
    CHECK_INT(stow_aws_profile_creds(&c, "default", NULL, &err), STOW_EAUTH);
    CHECK(strstr(err.msg, confpath) != NULL && strstr(err.msg, ":3:") != NULL);
    clean_env();
}

static void test_roles_refused_early(void)
{
    stow_s3_creds c;
    stow_error err = {0};

    clean_env();
    /* an STS endpoint that refuses connections: none of these may get that far */
    setenv("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:1", 1);
    write_file(credpath, "", 0600);
    write_file(
        confpath,
        "[profile a]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = b\n"
        "[profile b]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = c\n"
        "[profile c]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = a\n"
        "[profile bare]\nrole_arn = arn:aws:iam::1:role/r\n"
        "[profile ec2]\nrole_arn = arn:aws:iam::1:role/r\ncredential_source = Ec2InstanceMetadata\n"
        "[profile self-nokeys]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = self-nokeys\n"
        "[profile dur]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = a\n"
        "duration_seconds = 60\n"
        "[profile nosrc]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = nowhere\n",
        0600);
    CHECK_INT(stow_aws_profile_creds(&c, "a", NULL, &err), STOW_EAUTH);
    CHECK(strstr(err.msg, "loops back") != NULL);
    CHECK_INT(stow_aws_profile_creds(&c, "bare", NULL, &err), STOW_EAUTH);
    CHECK(strstr(err.msg, "neither source_profile nor web_identity_token_file") != NULL);
    CHECK_INT(stow_aws_profile_creds(&c, "ec2", NULL, &err), STOW_EAUTH);
    CHECK(strstr(err.msg, "credential_source is not supported") != NULL);
    CHECK_INT(stow_aws_profile_creds(&c, "self-nokeys", NULL, &err), STOW_EAUTH);
    CHECK(strstr(err.msg, "its own source_profile") != NULL);
    CHECK_INT(stow_aws_profile_creds(&c, "dur", NULL, &err), STOW_EAUTH);
    CHECK(strstr(err.msg, "duration_seconds") != NULL);
    CHECK_INT(stow_aws_profile_creds(&c, "nosrc", NULL, &err), STOW_EAUTH);
    CHECK(strstr(err.msg, "\"nowhere\" not found") != NULL);
    /* a token file that is missing is named, before any request */
    char tok[600], body[800];
    tpath(tok, sizeof(tok), "no-token");
    snprintf(body, sizeof(body),
             "[profile w]\nrole_arn = arn:aws:iam::1:role/r\n"
             "web_identity_token_file = %s\n",
             tok);
    write_file(confpath, body, 0600);
    CHECK_INT(stow_aws_profile_creds(&c, "w", NULL, &err), STOW_EAUTH);
    CHECK(strstr(err.msg, tok) != NULL);
    /* an empty token file */
    write_file(tok, "\n  \n", 0600);
    CHECK_INT(stow_aws_profile_creds(&c, "w", NULL, &err), STOW_EAUTH);
    CHECK(strstr(err.msg, "empty") != NULL);
    /* and one that reaches the (refusing) endpoint fails naming STS, not hanging */
    write_file(tok, "header.payload.sig\n", 0600);
    CHECK(stow_aws_profile_creds(&c, "w", NULL, &err) != STOW_OK);
    CHECK(strstr(err.msg, "AssumeRoleWithWebIdentity") != NULL);
    CHECK(strstr(err.msg, "header.payload.sig") == NULL);
    unlink(tok);
    clean_env();
}

static void script(const char *name, const char *body)
{
    char p[600];
    tpath(p, sizeof(p), name);
    write_file(p, body, 0700);
}

static void test_process(void)
{
    stow_s3_creds c;
    stow_error err = {0};
    char cmd[1400], future[32], bigscript[1200];
    time_t t = time(NULL) + 3600;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(future, sizeof(future), "%Y-%m-%dT%H:%M:%SZ", &tm);

    clean_env();
    char ok[800];
    snprintf(ok, sizeof(ok),
             "#!/bin/sh\n[ \"$1\" = \"two words\" ] && [ \"$2\" = x ] || exit 9\n"
             "echo '{\"Version\": 1, \"AccessKeyId\": \"ASIAPROC\", \"SecretAccessKey\": "
             "\"procsecret\", \"SessionToken\": \"proctoken\", \"Expiration\": \"%s\"}'\n",
             future);
    script("ok.sh", ok);
    snprintf(cmd, sizeof(cmd), "%s/ok.sh \"two words\"   x", tmpdir);
    CHECK_INT(stow_aws_process_creds(&c, cmd, &err), STOW_OK);
    CHECK_STR(c.access_key, "ASIAPROC");
    CHECK_STR(c.secret_key, "procsecret");
    CHECK_STR(c.session_token, "proctoken");
    CHECK(c.expiry == t);
    CHECK(stow_s3_creds_near_expiry(&c, t - 100, STOW_S3_CREDS_REFRESH_MARGIN));

    /* through a profile, and the static keys of the credentials file come first */
    char conf[1600];
    snprintf(conf, sizeof(conf), "[profile p]\ncredential_process = %s\n", cmd);
    write_file(confpath, conf, 0600);
    write_file(credpath, "", 0600);
    CHECK_INT(stow_aws_profile_creds(&c, "p", NULL, &err), STOW_OK);
    CHECK_STR(c.access_key, "ASIAPROC");
    CHECK(strstr(c.source, "credential_process of profile p") != NULL);
    write_file(credpath, "[p]\naws_access_key_id = AKIASTATIC\naws_secret_access_key = s\n", 0600);
    CHECK_INT(stow_aws_profile_creds(&c, "p", NULL, &err), STOW_OK);
    CHECK_STR(c.access_key, "AKIASTATIC");

    script("fail.sh", "#!/bin/sh\necho 'token expired, run login' >&2\necho more >&2\nexit 4\n");
    snprintf(cmd, sizeof(cmd), "%s/fail.sh", tmpdir);
    CHECK_INT(stow_aws_process_creds(&c, cmd, &err), STOW_EAUTH);
    CHECK(strstr(err.msg, "fail.sh\" exited with 4: token expired, run login") != NULL);
    CHECK(strstr(err.msg, "more") == NULL);
    CHECK_STR(c.secret_key, "");

    script("bad.sh", "#!/bin/sh\necho '{\"Version\": 1, \"AccessKeyId\": '\n");
    snprintf(cmd, sizeof(cmd), "%s/bad.sh", tmpdir);
    CHECK_INT(stow_aws_process_creds(&c, cmd, &err), STOW_EAUTH);
    CHECK(strstr(err.msg, "not a JSON object") != NULL);

    script("v2.sh", "#!/bin/sh\necho '{\"Version\": 2, \"AccessKeyId\": \"A\", "
                    "\"SecretAccessKey\": \"B\"}'\n");
    snprintf(cmd, sizeof(cmd), "%s/v2.sh", tmpdir);
    CHECK_INT(stow_aws_process_creds(&c, cmd, &err), STOW_EAUTH);
    CHECK(strstr(err.msg, "Version") != NULL);

    script("nokey.sh", "#!/bin/sh\necho '{\"Version\": 1, \"SecretAccessKey\": \"B\"}'\n");
    snprintf(cmd, sizeof(cmd), "%s/nokey.sh", tmpdir);
    CHECK_INT(stow_aws_process_creds(&c, cmd, &err), STOW_EAUTH);
    CHECK(strstr(err.msg, "AccessKeyId") != NULL);

    script("old.sh", "#!/bin/sh\necho '{\"Version\": 1, \"AccessKeyId\": \"A\", "
                     "\"SecretAccessKey\": \"B\", \"Expiration\": \"2001-02-03T04:05:06Z\"}'\n");
    snprintf(cmd, sizeof(cmd), "%s/old.sh", tmpdir);
    CHECK_INT(stow_aws_process_creds(&c, cmd, &err), STOW_EAUTH);
    CHECK(strstr(err.msg, "expired at 2001-02-03T04:05:06Z") != NULL);

    /* more than 64 KiB of output is refused, not buffered without end */
    snprintf(bigscript, sizeof(bigscript), "#!/bin/sh\nexec head -c 200000 /dev/zero\n");
    script("big.sh", bigscript);
    snprintf(cmd, sizeof(cmd), "%s/big.sh", tmpdir);
    CHECK_INT(stow_aws_process_creds(&c, cmd, &err), STOW_EAUTH);
    CHECK(strstr(err.msg, "longer than 65536 bytes") != NULL);

    /* no shell: ';' and '$HOME' are plain arguments of echo, whose output is not JSON */
    CHECK_INT(stow_aws_process_creds(&c, "echo $HOME; exit 0", &err), STOW_EAUTH);
    CHECK(strstr(err.msg, "JSON") != NULL);
    /* unbalanced quote, empty command, missing program */
    CHECK_INT(stow_aws_process_creds(&c, "\"/bin/true", &err), STOW_EUSAGE);
    CHECK_INT(stow_aws_process_creds(&c, "   ", &err), STOW_EUSAGE);
    CHECK_INT(stow_aws_process_creds(&c, "/no/such/program", &err), STOW_EAUTH);
    CHECK(strstr(err.msg, "/no/such/program") != NULL);

    const char *names[] = {"ok.sh",    "fail.sh", "bad.sh", "v2.sh",
                           "nokey.sh", "old.sh",  "big.sh", NULL};
    for (int i = 0; names[i]; i++) {
        char p[600];
        tpath(p, sizeof(p), names[i]);
        unlink(p);
    }
    clean_env();
}

int main(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/stow-awsconf-XXXXXX", base && base[0] ? base : "/tmp");
    if (mkdtemp(tmpdir) == NULL) {
        fprintf(stderr, "FATAL: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    tpath(credpath, sizeof(credpath), "credentials");
    tpath(confpath, sizeof(confpath), "config");

    test_merge();
    test_roles_refused_early();
    test_process();

    unlink(credpath);
    unlink(confpath);
    rmdir(tmpdir);
    TEST_DONE();
}
