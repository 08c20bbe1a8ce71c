#include "s3_creds.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "aws_config.h"
#include "buf.h"
#include "httpc.h"
#include "log.h"
#include "s3_container.h"
#include "util.h"

#define IMDS_BODY_MAX 65536 /* cap on any metadata response */
#define IMDS_TOKEN_TTL "21600"
#define IMDS_CONNECT_TIMEOUT_MS 1000L
#define IMDS_TIMEOUT_MS 3000L
#define ROLE_MAX 128

/* Copies s into a field of cap bytes (including NUL); 0 when it fits. */
static int copy_field(char *dst, size_t cap, const char *s)
{
    size_t n = strlen(s);
    if (n >= cap)
        return -1;
    memcpy(dst, s, n + 1);
    return 0;
}

void stow_s3_creds_clear(stow_s3_creds *c)
{
    if (c == NULL)
        return;
    OPENSSL_cleanse(c, sizeof(*c));
}

int stow_s3_creds_near_expiry(const stow_s3_creds *c, time_t now, long margin_s)
{
    if (c == NULL || c->expiry == 0)
        return 0;
    if (c->expiry <= now)
        return 1;
    return c->expiry - now <= (time_t)(margin_s < 0 ? 0 : margin_s);
}

/* ---- time ---- */

static int digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

int stow_s3_creds_parse_time(time_t *out, const char *s, stow_error *err)
{
    struct tm tm;
    int y, mo, d, h, mi, se;
    memset(&tm, 0, sizeof(tm));
    *out = 0;
    if (s == NULL || strnlen(s, 20) < 19 || s[4] != '-' || s[7] != '-' ||
        (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || s[13] != ':' || s[16] != ':' ||
        digits(s, 4, &y) || digits(s + 5, 2, &mo) || digits(s + 8, 2, &d) ||
        digits(s + 11, 2, &h) || digits(s + 14, 2, &mi) || digits(s + 17, 2, &se))
        goto bad;
    const char *p = s + 19;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            goto bad;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (!(strcmp(p, "Z") == 0 || strcmp(p, "z") == 0 || strcmp(p, "+00:00") == 0))
        goto bad;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
        goto bad;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = se;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        goto bad;
    *out = t;
    return STOW_OK;
bad:
    return stow_error_set(err, STOW_EUSAGE,
                          "not an ISO 8601 UTC time (YYYY-MM-DDTHH:MM:SSZ): \"%.40s\"", s ? s : "");
}

/* ---- environment ---- */

static const char *env_nonempty(const char *name)
{
    const char *v = getenv(name);
    return (v != NULL && v[0] != '\0') ? v : NULL;
}

int stow_s3_creds_from_env(stow_s3_creds *out, stow_error *err)
{
    const char *ak = env_nonempty("AWS_ACCESS_KEY_ID");
    const char *sk = env_nonempty("AWS_SECRET_ACCESS_KEY");
    const char *tok = env_nonempty("AWS_SESSION_TOKEN");
    const char *exp = env_nonempty("AWS_CREDENTIAL_EXPIRATION");
    if (tok == NULL)
        tok = env_nonempty("AWS_SECURITY_TOKEN");

    memset(out, 0, sizeof(*out));
    if (ak == NULL && sk == NULL)
        return stow_error_set(err, STOW_ENOTFOUND, "AWS_ACCESS_KEY_ID not set");
    if (ak == NULL || sk == NULL)
        return stow_error_set(err, STOW_EAUTH, "%s is set but %s is not",
                              ak ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
                              ak ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
    if (copy_field(out->access_key, sizeof(out->access_key), ak) ||
        copy_field(out->secret_key, sizeof(out->secret_key), sk) ||
        (tok && copy_field(out->session_token, sizeof(out->session_token), tok))) {
        stow_s3_creds_clear(out);
        return stow_error_set(err, STOW_EAUTH,
                              "AWS credentials in the environment are too long "
                              "(key id max %d, secret max %d, token max %d bytes)",
                              STOW_S3_ACCESS_KEY_MAX, STOW_S3_SECRET_MAX, STOW_S3_TOKEN_MAX);
    }
    if (exp != NULL && stow_s3_creds_parse_time(&out->expiry, exp, err) != STOW_OK) {
        stow_s3_creds_clear(out);
        return stow_error_wrap(err, "AWS_CREDENTIAL_EXPIRATION");
    }
    snprintf(out->source, sizeof(out->source), "environment");
    return STOW_OK;
}

/* ---- instance metadata (IMDSv2) ---- */

/* The metadata service's answers are collected up to IMDS_BODY_MAX bytes. */
typedef stow_httpc_collector imds_body;

/* Before every attempt: the collector starts again. */
static int imds_prepare(void *ud, const stow_httpc_attempt *att, struct curl_slist **headers,
                        stow_error *err)
{
    (void)att, (void)headers, (void)err;
    stow_httpc_collect_reset(ud);
    return STOW_OK;
}

/* Any status is an answer here: the caller judges it. */
static int imds_accept(void *ud, const stow_httpc_response *resp, int *retry, stow_error *err)
{
    (void)resp, (void)err;
    imds_body *b = ud;
    *retry = 0;
    stow_buf_reset(&b->buf);
    return STOW_OK;
}

/* A transport for the metadata service: short timeouts, no retries, never a proxy. */
static int imds_client(stow_httpc **out, stow_error *err)
{
    stow_httpc_config cfg;
    stow_httpc_config_init(&cfg, NULL);
    cfg.connect_timeout_ms = IMDS_CONNECT_TIMEOUT_MS;
    cfg.deadline_ms = IMDS_TIMEOUT_MS;
    cfg.low_speed_timeout_s = IMDS_TIMEOUT_MS / 1000;
    cfg.max_retries = 0;
    cfg.parallel = 1;
    cfg.no_proxy = 1; /* link-local: never through a proxy */
    return stow_httpc_new(out, &cfg, err);
}

/* One request to the metadata service. rc STOW_OK with *status set, or STOW_ENOTFOUND when
 * the service could not be reached. */
static int imds_call(long *status, imds_body *body, stow_httpc *h, const char *method,
                     const char *url, const char *header, const char *shown, stow_error *err)
{
    const char *hdrs[] = {header, NULL};
    stow_httpc_request req;
    stow_httpc_result res;
    stow_error e = {0};
    memset(&req, 0, sizeof(req));
    req.method = method;
    req.url = url;
    req.headers = header ? hdrs : NULL;
    req.no_resume = 1;
    if (strcmp(method, "PUT") == 0) {
        req.body_type = STOW_HTTPC_BODY_BUFFER;
        req.body = "";
        req.body_len = 0;
    }
    req.sink = stow_httpc_collect;
    req.sink_ud = body;
    req.prepare = imds_prepare;
    req.on_error = imds_accept;
    req.ud = body;
    *status = 0;
    stow_httpc_collect_reset(body);
    int rc = stow_httpc_perform(h, &req, &res, &e);
    if (body->overflow)
        return stow_error_set(err, STOW_EAUTH, "instance metadata %s: answer longer than %zu bytes",
                              shown, body->buf.max);
    if (rc != STOW_OK)
        return stow_error_set(err, STOW_ENOTFOUND, "instance metadata %s: %s", shown, e.msg);
    *status = res.status;
    return STOW_OK;
}

static int ok_role_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("+=,.@_-", c) != NULL);
}

/* First role name of the listing, checked for characters IAM allows. */
static int first_role(char *out, size_t cap, const char *listing)
{
    const char *p = listing;
    while (*p == '\n' || *p == '\r' || *p == ' ')
        p++;
    size_t n = 0;
    while (p[n] != '\0' && p[n] != '\n' && p[n] != '\r') {
        if (!ok_role_char((unsigned char)p[n]) || n + 1 >= cap)
            return -1;
        n++;
    }
    if (n == 0)
        return -1;
    memcpy(out, p, n);
    out[n] = '\0';
    return 0;
}

static const char *json_str(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

int stow_s3_creds_from_json(stow_s3_creds *out, const stow_buf *body, const char *what,
                            stow_error *err)
{
    int rc = STOW_EAUTH;
    json_error_t jerr;
    json_t *root = json_loadb(body->len ? stow_buf_str(body) : "", body->len, 0, &jerr);
    if (root == NULL || !json_is_object(root)) {
        rc = stow_error_set(err, STOW_EAUTH, "%s: the answer is not a JSON object", what);
        goto done;
    }
    const char *code = json_str(root, "Code");
    const char *ak = json_str(root, "AccessKeyId");
    const char *sk = json_str(root, "SecretAccessKey");
    const char *tok = json_str(root, "Token");
    const char *exp = json_str(root, "Expiration");
    if (code != NULL && strcmp(code, "Success") != 0)
        rc = stow_error_set(err, STOW_EAUTH, "%s: Code is \"%.64s\"", what, code);
    else if (ak == NULL || sk == NULL || ak[0] == '\0' || sk[0] == '\0')
        rc = stow_error_set(err, STOW_EAUTH, "%s: AccessKeyId or SecretAccessKey missing", what);
    else if (copy_field(out->access_key, sizeof(out->access_key), ak) ||
             copy_field(out->secret_key, sizeof(out->secret_key), sk) ||
             (tok && copy_field(out->session_token, sizeof(out->session_token), tok)))
        rc = stow_error_set(err, STOW_EAUTH, "%s: credentials too long", what);
    else if (exp != NULL && stow_s3_creds_parse_time(&out->expiry, exp, err) != STOW_OK)
        rc = stow_error_wrap(err, "%s: Expiration", what);
    else
        rc = STOW_OK;
done:
    json_decref(root);
    return rc;
}

int stow_s3_creds_from_imds(stow_s3_creds *out, const char *endpoint, stow_error *err)
{
    int rc = STOW_ERR;
    char base[1024], shown[1024], url[1400], hdr[1200];
    char token[1024], role[ROLE_MAX + 1];
    imds_body body;
    stow_httpc *h = NULL;
    long status = 0;

    memset(out, 0, sizeof(*out));
    if (endpoint == NULL || endpoint[0] == '\0')
        endpoint = STOW_S3_IMDS_DEFAULT_ENDPOINT;
    size_t elen = strlen(endpoint);
    while (elen > 0 && endpoint[elen - 1] == '/')
        elen--;
    if (elen == 0 || elen >= sizeof(base) ||
        (strncmp(endpoint, "http://", 7) != 0 && strncmp(endpoint, "https://", 8) != 0))
        return stow_error_set(err, STOW_EUSAGE,
                              "instance metadata endpoint must be http://host[:port]");
    memcpy(base, endpoint, elen);
    base[elen] = '\0';
    stow_redact_url(shown, sizeof(shown), base);

    stow_buf_init(&body.buf, IMDS_BODY_MAX);
    body.overflow = 0;
    if ((rc = imds_client(&h, err)) != STOW_OK)
        return rc;

    /* 1. session token */
    snprintf(url, sizeof(url), "%s/latest/api/token", base);
    if ((rc = imds_call(&status, &body, h, "PUT", url,
                        "X-aws-ec2-metadata-token-ttl-seconds: " IMDS_TOKEN_TTL, shown, err)) !=
        STOW_OK)
        goto done;
    if (status == 403 || status == 404 || status == 405) {
        rc = stow_error_set(err, STOW_ENOTFOUND,
                            "instance metadata %s: token request refused (HTTP %ld)", shown,
                            status);
        goto done;
    }
    if (status != 200 || body.buf.len == 0 || body.buf.len >= sizeof(token) ||
        strcspn(stow_buf_str(&body.buf), "\r\n") != body.buf.len) {
        rc = stow_error_set(err, STOW_EAUTH, "instance metadata %s: bad token answer (HTTP %ld)",
                            shown, status);
        goto done;
    }
    memcpy(token, stow_buf_str(&body.buf), body.buf.len + 1);
    snprintf(hdr, sizeof(hdr), "X-aws-ec2-metadata-token: %s", token);

    /* 2. role name */
    snprintf(url, sizeof(url), "%s/latest/meta-data/iam/security-credentials/", base);
    if ((rc = imds_call(&status, &body, h, "GET", url, hdr, shown, err)) != STOW_OK)
        goto done;
    if (status == 404) {
        rc = stow_error_set(err, STOW_ENOTFOUND, "instance metadata %s: no IAM role attached",
                            shown);
        goto done;
    }
    if (status != 200) {
        rc = stow_error_set(err, STOW_EAUTH, "instance metadata %s: role listing: HTTP %ld", shown,
                            status);
        goto done;
    }
    if (first_role(role, sizeof(role), stow_buf_str(&body.buf)) != 0) {
        rc = stow_error_set(err, STOW_EAUTH, "instance metadata %s: malformed IAM role name",
                            shown);
        goto done;
    }

    /* 3. the role's credentials */
    snprintf(url, sizeof(url), "%s/latest/meta-data/iam/security-credentials/%s", base, role);
    if ((rc = imds_call(&status, &body, h, "GET", url, hdr, shown, err)) != STOW_OK)
        goto done;
    if (status != 200) {
        rc = stow_error_set(err, STOW_EAUTH,
                            "instance metadata %s: credentials of role %s: HTTP %ld", shown, role,
                            status);
        goto done;
    }
    char what[ROLE_MAX + 64];
    snprintf(what, sizeof(what), "instance metadata: credentials of role %s", role);
    if ((rc = stow_s3_creds_from_json(out, &body.buf, what, err)) != STOW_OK)
        goto done;
    snprintf(out->source, sizeof(out->source), "instance metadata %.300s, role %.128s", shown,
             role);
    rc = STOW_OK;
done:
    if (rc != STOW_OK)
        stow_s3_creds_clear(out);
    OPENSSL_cleanse(token, sizeof(token));
    OPENSSL_cleanse(hdr, sizeof(hdr));
    if (body.buf.ptr)
        OPENSSL_cleanse(body.buf.ptr, body.buf.cap);
    stow_buf_free(&body.buf);
    stow_httpc_free(h);
    return rc;
}

/* ---- the chain ---- */

static int env_true(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && (strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0);
}

/* The web identity variables: AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN. */
static int from_web_identity_env(stow_s3_creds *out, const struct stow_s3_sts_opts *o,
                                 stow_error *err)
{
    const char *file = env_nonempty("AWS_WEB_IDENTITY_TOKEN_FILE");
    const char *role = env_nonempty("AWS_ROLE_ARN");
    /* as the Go SDK: AWS_ROLE_ARN alone does not apply, a token file without role is an error */
    if (file == NULL)
        return stow_error_set(err, STOW_ENOTFOUND, "AWS_WEB_IDENTITY_TOKEN_FILE not set");
    if (role == NULL)
        return stow_error_set(err, STOW_EAUTH,
                              "AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not");
    return stow_aws_web_identity(out, o, role, env_nonempty("AWS_ROLE_SESSION_NAME"), file, err);
}

int stow_s3_creds_resolve(stow_s3_creds *out, stow_error *err)
{
    return stow_s3_creds_resolve_opts(out, NULL, err);
}

int stow_s3_creds_resolve_opts(stow_s3_creds *out, const struct stow_s3_sts_opts *o,
                               stow_error *err)
{
    char tried[3 * STOW_ERROR_MSG_MAX / 2] = "";
    size_t tl = 0;
    stow_error step = {0};
    int rc;

#define TRIED(fmt, ...)                                                                            \
    do {                                                                                           \
        if (tl < sizeof(tried)) {                                                                  \
            int n_ = snprintf(tried + tl, sizeof(tried) - tl, "%s" fmt, tl ? "; " : "",            \
                              __VA_ARGS__);                                                        \
            tl = n_ < 0 ? sizeof(tried) : tl + (size_t)n_;                                         \
        }                                                                                          \
    } while (0)

    /* 1. environment */
    rc = stow_s3_creds_from_env(out, &step);
    if (rc == STOW_OK)
        goto found;
    if (rc != STOW_ENOTFOUND)
        return stow_error_set(err, rc, "AWS credentials from the environment: %s", step.msg);
    TRIED("environment: %s", step.msg);

    /* 2. web identity from the environment (EKS IRSA, OIDC runners) */
    stow_error_clear(&step);
    rc = from_web_identity_env(out, o, &step);
    if (rc == STOW_OK)
        goto found;
    if (rc != STOW_ENOTFOUND)
        return stow_error_set(err, rc == STOW_EUSAGE ? STOW_EUSAGE : STOW_EAUTH,
                              "AWS credentials from web identity: %s", step.msg);
    TRIED("web identity: %s", step.msg);

    /* 3. the shared credentials and config files */
    int named = 0;
    const char *profile = stow_aws_profile_name(&named);
    stow_error_clear(&step);
    rc = stow_aws_profile_creds(out, profile, o, &step);
    if (rc == STOW_OK)
        goto found;
    /* a profile asked for by name must exist; the default one may be absent */
    if (rc != STOW_ENOTFOUND)
        return stow_error_set(err, rc == STOW_EUSAGE ? STOW_EUSAGE : STOW_EAUTH,
                              "AWS credentials: %s", step.msg);
    if (named)
        return stow_error_set(err, STOW_EAUTH, "AWS credentials for AWS_PROFILE=%s: %s", profile,
                              step.msg);
    TRIED("shared files: %s", step.msg);

    /* 4. container credentials (ECS, CodeBuild, EKS Pod Identity): s3_container.h */
    stow_error_clear(&step);
    rc = stow_s3_creds_from_container(out, NULL, &step);
    if (rc == STOW_OK)
        goto found;
    if (rc != STOW_ENOTFOUND)
        return stow_error_set(err, rc == STOW_EUSAGE ? STOW_EUSAGE : STOW_EAUTH,
                              "AWS credentials: %s", step.msg);
    TRIED("container credentials: %s", step.msg);

    /* 5. instance metadata */
    if (env_true("AWS_EC2_METADATA_DISABLED")) {
        TRIED("%s", "instance metadata: disabled by AWS_EC2_METADATA_DISABLED");
    } else {
        stow_error_clear(&step);
        rc = stow_s3_creds_from_imds(out, getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT"), &step);
        if (rc == STOW_OK)
            goto found;
        if (rc != STOW_ENOTFOUND)
            return stow_error_set(err, rc == STOW_EUSAGE ? STOW_EUSAGE : STOW_EAUTH,
                                  "AWS credentials: %s", step.msg);
        TRIED("%s", step.msg);
    }
#undef TRIED
    stow_s3_creds_clear(out);
    return stow_error_set(err, STOW_EAUTH, "no AWS credentials found (tried %s)", tried);

found:
    stow_debug("AWS credentials from %s", out->source);
    return STOW_OK;
}
