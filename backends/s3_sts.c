/* AWS STS: AssumeRoleWithWebIdentity and AssumeRole over httpc, answers parsed with expat.
 * See s3_sts.h. */
#include "s3_sts.h"

#include <expat.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "httpc.h"
#include "log.h"
#include "sigv4.h"
#include "util.h"

#define STS_VERSION "2011-06-15"
#define STS_FORM_MAX (3 * STOW_S3_STS_WEB_TOKEN_MAX + 8192) /* every byte may become %XX */
#define STS_TEXT_MAX (STOW_S3_TOKEN_MAX + 1)
#define STS_CONNECT_TIMEOUT_MS 5000L
#define STS_DEADLINE_MS 30000L
#define STS_RETRIES 2
#define STS_REGION_MAX 64

static const char *env_nonempty(const char *name)
{
    const char *v = getenv(name);
    return (v != NULL && v[0] != '\0') ? v : NULL;
}

/* ---- endpoint ---- */

/* The regions that the SDKs send to the global endpoint when AWS_STS_REGIONAL_ENDPOINTS is
 * "legacy" (the AWS SDKs and Tools reference guide, "STS Regionalized endpoints"). */
static const char *const legacy_regions[] = {"aws-global",
                                             "ap-northeast-1",
                                             "ap-south-1",
                                             "ap-southeast-1",
                                             "ap-southeast-2",
                                             "ca-central-1",
                                             "eu-central-1",
                                             "eu-north-1",
                                             "eu-west-1",
                                             "eu-west-2",
                                             "eu-west-3",
                                             "sa-east-1",
                                             "us-east-1",
                                             "us-east-2",
                                             "us-west-1",
                                             "us-west-2",
                                             NULL};

static int region_ok(const char *r)
{
    if (r[0] == '\0')
        return 0;
    for (const char *c = r; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '-' || *c == '_'))
            return 0;
    return 1;
}

int stow_s3_sts_endpoint(char *url, size_t url_cap, char *region, size_t region_cap,
                         const stow_s3_sts_opts *o, stow_error *err)
{
    const char *rg = o && o->region && o->region[0] ? o->region : NULL;
    if (rg == NULL)
        rg = env_nonempty("AWS_REGION");
    if (rg == NULL)
        rg = env_nonempty("AWS_DEFAULT_REGION");
    if (rg == NULL)
        rg = "us-east-1";
    if (!region_ok(rg) || strlen(rg) >= STS_REGION_MAX || stow_strlcpy(region, rg, region_cap))
        return stow_error_set(err, STOW_EUSAGE, "STS: region \"%.80s\" is not a region name", rg);
    if (strcmp(region, "aws-global") == 0)
        stow_strlcpy(region, "us-east-1", region_cap);

    const char *from = "AWS_ENDPOINT_URL_STS";
    const char *ep = env_nonempty(from);
    if (ep == NULL)
        ep = env_nonempty(from = "AWS_ENDPOINT_URL");
    if (ep == NULL && o != NULL && o->endpoint != NULL && o->endpoint[0] != '\0')
        ep = o->endpoint, from = "sts_endpoint";
    if (ep != NULL) {
        size_t n = strlen(ep);
        while (n > 0 && ep[n - 1] == '/')
            n--;
        if ((strncmp(ep, "http://", 7) != 0 && strncmp(ep, "https://", 8) != 0) || n >= url_cap ||
            strcspn(ep, " \t\r\n?#@") < strlen(ep))
            return stow_error_set(err, STOW_EUSAGE,
                                  "%s must be an http:// or https:// URL without query or "
                                  "user name",
                                  from);
        memcpy(url, ep, n);
        url[n] = '\0';
        return STOW_OK;
    }
    const char *mode = env_nonempty("AWS_STS_REGIONAL_ENDPOINTS");
    if (mode != NULL && strcasecmp(mode, "legacy") == 0) {
        for (size_t i = 0; legacy_regions[i] != NULL; i++)
            if (strcmp(rg, legacy_regions[i]) == 0) {
                stow_strlcpy(url, "https://sts.amazonaws.com", url_cap);
                stow_strlcpy(region, "us-east-1", region_cap);
                return STOW_OK;
            }
    } else if (mode != NULL && strcasecmp(mode, "regional") != 0) {
        return stow_error_set(err, STOW_EUSAGE,
                              "AWS_STS_REGIONAL_ENDPOINTS must be \"regional\" or \"legacy\"");
    }
    int n = snprintf(url, url_cap, "https://sts.%s.%s", region,
                     strncmp(region, "cn-", 3) == 0 ? "amazonaws.com.cn" : "amazonaws.com");
    if (n < 0 || (size_t)n >= url_cap)
        return stow_error_set(err, STOW_EUSAGE, "STS endpoint too long");
    return STOW_OK;
}

/* ---- answers ---- */

typedef struct sts_parse {
    XML_Parser parser;
    int depth;
    int in_creds, in_error;
    int too_big;
    char text[STS_TEXT_MAX + 1];
    size_t text_len;
    stow_s3_creds *out;
    int have_key, have_secret;
    char expiration[64];
    char code[128];
    char message[512];
    int is_error;
} sts_parse;

static const char *local_name(const char *name)
{
    const char *sep = strrchr(name, '|');
    return sep ? sep + 1 : name;
}

static void on_start(void *ud, const XML_Char *name, const XML_Char **atts)
{
    (void)atts;
    sts_parse *p = ud;
    const char *ln = local_name(name);
    if (++p->depth > 16) {
        p->too_big = 1;
        XML_StopParser(p->parser, XML_FALSE);
        return;
    }
    if (p->depth == 1 && strcmp(ln, "ErrorResponse") == 0)
        p->is_error = 1;
    if (strcmp(ln, "Credentials") == 0)
        p->in_creds = 1;
    if (strcmp(ln, "Error") == 0)
        p->in_error = 1;
    p->text_len = 0;
}

static void on_chars(void *ud, const XML_Char *s, int len)
{
    sts_parse *p = ud;
    if (len <= 0)
        return;
    if ((size_t)len > STS_TEXT_MAX - p->text_len) {
        p->too_big = 1;
        XML_StopParser(p->parser, XML_FALSE);
        return;
    }
    memcpy(p->text + p->text_len, s, (size_t)len);
    p->text_len += (size_t)len;
}

/* Copies the element's text into a field; too long flags the answer as malformed. */
static void take(sts_parse *p, char *dst, size_t cap, int *flag)
{
    if (p->text_len >= cap) {
        p->too_big = 1;
        return;
    }
    memcpy(dst, p->text, p->text_len);
    dst[p->text_len] = '\0';
    if (flag != NULL)
        *flag = p->text_len > 0;
}

static void on_end(void *ud, const XML_Char *name)
{
    sts_parse *p = ud;
    const char *ln = local_name(name);
    p->text[p->text_len] = '\0';
    if (p->in_creds) {
        if (strcmp(ln, "AccessKeyId") == 0)
            take(p, p->out->access_key, sizeof(p->out->access_key), &p->have_key);
        else if (strcmp(ln, "SecretAccessKey") == 0)
            take(p, p->out->secret_key, sizeof(p->out->secret_key), &p->have_secret);
        else if (strcmp(ln, "SessionToken") == 0)
            take(p, p->out->session_token, sizeof(p->out->session_token), NULL);
        else if (strcmp(ln, "Expiration") == 0)
            take(p, p->expiration, sizeof(p->expiration), NULL);
        else if (strcmp(ln, "Credentials") == 0)
            p->in_creds = 0;
    } else if (p->in_error) {
        /* Code and Message are short; longer ones are cut, not refused */
        if (strcmp(ln, "Code") == 0)
            stow_strlcpy(p->code, p->text, sizeof(p->code));
        else if (strcmp(ln, "Message") == 0)
            stow_strlcpy(p->message, p->text, sizeof(p->message));
        else if (strcmp(ln, "Error") == 0)
            p->in_error = 0;
    }
    p->text_len = 0;
    p->depth--;
}

/* Drops control characters from a server-supplied string before it goes into a message. */
static void printable(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = ' ';
}

/* stow_s3_sts_parse, also handing out the error Code (code_cap > 0). */
static int parse_answer(stow_s3_creds *out, char *code, size_t code_cap, const char *body,
                        size_t len, const char *what, stow_error *err)
{
    int rc = STOW_ERR;
    sts_parse *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    memset(out, 0, sizeof(*out));
    p->out = out;
    p->parser = XML_ParserCreateNS(NULL, '|');
    if (p->parser == NULL) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    XML_SetUserData(p->parser, p);
    XML_SetElementHandler(p->parser, on_start, on_end);
    XML_SetCharacterDataHandler(p->parser, on_chars);
    if (len > STOW_S3_STS_BODY_MAX ||
        XML_Parse(p->parser, body, (int)len, XML_TRUE) != XML_STATUS_OK || p->too_big) {
        rc = stow_error_set(err, STOW_ERR, "%s: the answer is not well-formed STS XML%s%s", what,
                            p->too_big ? "" : ": ",
                            p->too_big ? " (too large)"
                                       : XML_ErrorString(XML_GetErrorCode(p->parser)));
        goto done;
    }
    if (p->is_error || p->code[0] != '\0') {
        printable(p->code);
        printable(p->message);
        if (code_cap > 0)
            stow_strlcpy(code, p->code, code_cap);
        rc = stow_error_set(err, STOW_EAUTH, "%s: %s: %s", what, p->code[0] ? p->code : "(no Code)",
                            p->message[0] ? p->message : "(no Message)");
        goto done;
    }
    if (!p->have_key || !p->have_secret) {
        rc = stow_error_set(err, STOW_ERR,
                            "%s: the answer has no Credentials (AccessKeyId, SecretAccessKey)",
                            what);
        goto done;
    }
    if (p->expiration[0] != '\0' &&
        stow_s3_creds_parse_time(&out->expiry, p->expiration, err) != STOW_OK) {
        rc = stow_error_wrap(err, "%s: Expiration", what);
        if (err != NULL)
            err->code = STOW_ERR;
        rc = STOW_ERR;
        goto done;
    }
    rc = STOW_OK;
done:
    if (rc != STOW_OK)
        stow_s3_creds_clear(out);
    if (p->parser != NULL)
        XML_ParserFree(p->parser);
    OPENSSL_cleanse(p, sizeof(*p));
    free(p);
    return rc;
}

int stow_s3_sts_parse(stow_s3_creds *out, const char *body, size_t len, const char *what,
                      stow_error *err)
{
    return parse_answer(out, NULL, 0, body, len, what, err);
}

/* ---- requests ---- */

typedef struct sts_call {
    stow_httpc_collector body; /* the answer, capped */
    const char *form;
    size_t form_len;
    const stow_s3_creds *signer; /* NULL: unsigned */
    const char *host;
    const char *path;
    const char *region;
    const char *what;
    char payload_hash[STOW_SIGV4_HASH_HEX_SIZE];
    stow_error answer; /* the STS error of a non-2xx answer */
} sts_call;

static int sts_prepare(void *ud, const stow_httpc_attempt *att, struct curl_slist **headers,
                       stow_error *err)
{
    (void)att;
    sts_call *c = ud;
    stow_httpc_collect_reset(&c->body);
    if (c->signer == NULL)
        return STOW_OK;
    char date[STOW_SIGV4_AMZ_DATE_SIZE];
    if (stow_sigv4_amz_date(date, (time_t)stow_unix_time()) != STOW_OK)
        return stow_error_set(err, STOW_ERR, "%s: cannot format the date", c->what);
    const char *signed_hdrs[] = {"Content-Type: application/x-www-form-urlencoded; charset=utf-8",
                                 NULL};
    stow_sigv4_request r = {0};
    r.method = "POST";
    r.host = c->host;
    r.path = c->path;
    r.headers = signed_hdrs;
    r.payload_hash = c->payload_hash;
    r.amz_date = date;
    r.region = c->region;
    r.service = "sts";
    r.access_key = c->signer->access_key;
    r.secret_key = c->signer->secret_key;
    r.session_token = c->signer->session_token;
    stow_sigv4_headers *h = malloc(sizeof(*h));
    if (h == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    int rc = stow_sigv4_sign(h, &r, err);
    struct curl_slist *l = *headers;
    if (rc == STOW_OK) {
        const char *lines[] = {h->authorization, h->amz_date, h->content_sha256,
                               h->security_token[0] ? h->security_token : NULL};
        for (size_t i = 0; i < 4 && rc == STOW_OK; i++) {
            if (lines[i] == NULL)
                continue;
            struct curl_slist *n = curl_slist_append(l, lines[i]);
            if (n == NULL)
                rc = stow_error_set(err, STOW_ERR, "out of memory");
            else
                l = n;
        }
    }
    *headers = l;
    OPENSSL_cleanse(h, sizeof(*h));
    free(h);
    return rc;
}

static int sts_on_error(void *ud, const stow_httpc_response *resp, int *retry, stow_error *err)
{
    sts_call *c = ud;
    stow_s3_creds scratch;
    char code[64] = "";
    /* sts_perform puts "<what> at <endpoint>: " in front */
    int rc = parse_answer(&scratch, code, sizeof(code), resp->body, resp->body_len, "refused",
                          &c->answer);
    stow_s3_creds_clear(&scratch);
    /* the codes AWS documents as transient: retried like a 5xx */
    if (strcmp(code, "Throttling") == 0 || strcmp(code, "IDPCommunicationError") == 0) {
        *retry = 1;
        return stow_error_set(err, STOW_ERR, "%s (HTTP %ld)", c->answer.msg, resp->status);
    }
    if (rc == STOW_EAUTH && resp->status < 500) {
        /* a refusal with Code and Message: say that, not just the status */
        *retry = 0;
        return stow_error_set(err, STOW_EAUTH, "%s (HTTP %ld)", c->answer.msg, resp->status);
    }
    return err ? err->code : STOW_ERR;
}

/* Host header as curl sends it and the path, from "scheme://host[:port][/path]". */
static int split_url(char *host, size_t hcap, char *path, size_t pcap, const char *url)
{
    int https = strncmp(url, "https://", 8) == 0;
    const char *h = url + (https ? 8 : 7);
    size_t hl = strcspn(h, "/");
    if (hl == 0 || hl >= hcap)
        return -1;
    memcpy(host, h, hl);
    host[hl] = '\0';
    const char *def = https ? ":443" : ":80";
    size_t dl = strlen(def);
    if (hl > dl && strcmp(host + hl - dl, def) == 0 && host[0] != '[')
        host[hl - dl] = '\0';
    const char *p = h[hl] ? h + hl : "/";
    return stow_strlcpy(path, p, pcap) == 0 ? 0 : -1;
}

static int form_add(stow_buf *b, const char *name, const char *value, stow_error *err)
{
    size_t cap = 3 * strlen(value) + 1;
    char *enc = malloc(cap);
    if (enc == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    int rc = stow_sigv4_uri_encode(enc, cap, value, 1);
    if (rc == STOW_OK)
        rc = stow_buf_addf(b, err, "%s%s=%s", b->len ? "&" : "", name, enc);
    OPENSSL_cleanse(enc, cap);
    free(enc);
    return rc == STOW_OK ? STOW_OK : stow_error_set(err, STOW_EUSAGE, "STS request too large");
}

static void default_session(char *out, size_t cap, const char *name)
{
    if (name != NULL && name[0] != '\0')
        stow_strlcpy(out, name, cap);
    else
        snprintf(out, cap, "stowage-%ld", (long)getpid());
}

/* One STS call: form already built, signer NULL for an unsigned call. */
static int sts_perform(stow_s3_creds *out, const stow_s3_sts_opts *o, stow_buf *form,
                       const stow_s3_creds *signer, const char *what, stow_error *err)
{
    char url[STOW_S3_STS_URL_MAX], shown[STOW_S3_STS_URL_MAX], region[STS_REGION_MAX];
    char host[STOW_S3_STS_URL_MAX], path[STOW_S3_STS_URL_MAX], fullurl[STOW_S3_STS_URL_MAX + 2];
    stow_httpc *h = NULL;
    sts_call c;
    int rc;

    memset(&c, 0, sizeof(c));
    stow_buf_init(&c.body.buf, STOW_S3_STS_BODY_MAX);
    if ((rc = stow_s3_sts_endpoint(url, sizeof(url), region, sizeof(region), o, err)) != STOW_OK)
        goto done;
    stow_redact_url(shown, sizeof(shown), url);
    if (split_url(host, sizeof(host), path, sizeof(path), url) != 0) {
        rc = stow_error_set(err, STOW_EUSAGE, "STS endpoint %s: cannot split host and path", shown);
        goto done;
    }
    snprintf(fullurl, sizeof(fullurl), "%s%s", url, strchr(url + 8, '/') ? "" : "/");
    c.form = stow_buf_str(form);
    c.form_len = form->len;
    c.signer = signer;
    c.host = host;
    c.path = path;
    c.region = region;
    c.what = what;
    stow_sigv4_payload_hash(c.payload_hash, c.form, c.form_len);

    stow_httpc_config cfg;
    stow_httpc_config_init(&cfg, NULL);
    cfg.connect_timeout_ms = STS_CONNECT_TIMEOUT_MS;
    cfg.deadline_ms = STS_DEADLINE_MS;
    cfg.max_retries = STS_RETRIES;
    cfg.parallel = 1;
    cfg.ca_bundle = o ? o->ca_bundle : NULL;
    if ((rc = stow_httpc_new(&h, &cfg, err)) != STOW_OK)
        goto done;

    const char *hdrs[] = {"Content-Type: application/x-www-form-urlencoded; charset=utf-8",
                          "Accept: application/xml", NULL};
    stow_httpc_request req;
    stow_httpc_result res;
    memset(&req, 0, sizeof(req));
    req.method = "POST";
    req.url = fullurl;
    req.headers = hdrs;
    req.no_resume = 1;
    req.body_type = STOW_HTTPC_BODY_BUFFER;
    req.body = c.form;
    req.body_len = c.form_len;
    req.sink = stow_httpc_collect;
    req.sink_ud = &c.body;
    req.prepare = sts_prepare;
    req.on_error = sts_on_error;
    req.ud = &c;
    stow_error e = {0};
    rc = stow_httpc_perform(h, &req, &res, &e);
    if (c.body.overflow) {
        rc = stow_error_set(err, STOW_ERR, "%s at %s: answer longer than %d bytes", what, shown,
                            STOW_S3_STS_BODY_MAX);
        goto done;
    }
    if (rc != STOW_OK) {
        rc = stow_error_set(err, rc, "%s at %s: %s", what, shown, e.msg);
        goto done;
    }
    if ((rc = stow_s3_sts_parse(out, c.body.buf.ptr ? c.body.buf.ptr : "", c.body.buf.len, what,
                                err)) != STOW_OK) {
        stow_error_wrap(err, "%s", shown);
        goto done;
    }
    char until[32] = "no expiry";
    struct tm tm;
    time_t exp = out->expiry;
    if (exp != 0 && gmtime_r(&exp, &tm) != NULL)
        strftime(until, sizeof(until), "until %Y-%m-%dT%H:%M:%SZ", &tm);
    stow_debug("%s at %s: temporary credentials (%s)", what, shown, until);
done:
    if (c.body.buf.ptr != NULL)
        OPENSSL_cleanse(c.body.buf.ptr, c.body.buf.cap);
    stow_buf_free(&c.body.buf);
    stow_httpc_free(h);
    return rc;
}

int stow_s3_sts_assume_role_web_identity(stow_s3_creds *out, const stow_s3_sts_opts *o,
                                         const char *role_arn, const char *session_name,
                                         const char *token, stow_error *err)
{
    char session[STOW_S3_STS_SESSION_NAME_MAX + 1];
    stow_buf form;
    int rc;

    memset(out, 0, sizeof(*out));
    if (role_arn == NULL || role_arn[0] == '\0' || token == NULL || token[0] == '\0')
        return stow_error_set(err, STOW_EUSAGE, "AssumeRoleWithWebIdentity: no role or no token");
    if (strlen(token) > STOW_S3_STS_WEB_TOKEN_MAX)
        return stow_error_set(err, STOW_EUSAGE,
                              "AssumeRoleWithWebIdentity: the web identity token is longer than "
                              "%d bytes",
                              STOW_S3_STS_WEB_TOKEN_MAX);
    default_session(session, sizeof(session), session_name);
    stow_buf_init(&form, STS_FORM_MAX);
    if ((rc = form_add(&form, "Action", "AssumeRoleWithWebIdentity", err)) != STOW_OK ||
        (rc = form_add(&form, "Version", STS_VERSION, err)) != STOW_OK ||
        (rc = form_add(&form, "RoleArn", role_arn, err)) != STOW_OK ||
        (rc = form_add(&form, "RoleSessionName", session, err)) != STOW_OK ||
        (rc = form_add(&form, "WebIdentityToken", token, err)) != STOW_OK)
        goto done;
    rc = sts_perform(out, o, &form, NULL, "STS AssumeRoleWithWebIdentity", err);
    if (rc == STOW_OK)
        snprintf(out->source, sizeof(out->source), "web identity, role %.400s", role_arn);
done:
    if (form.ptr != NULL)
        OPENSSL_cleanse(form.ptr, form.cap);
    stow_buf_free(&form);
    return rc;
}

int stow_s3_sts_assume_role(stow_s3_creds *out, const stow_s3_sts_opts *o, const stow_s3_creds *src,
                            const char *role_arn, const char *session_name, const char *external_id,
                            long duration_s, stow_error *err)
{
    char session[STOW_S3_STS_SESSION_NAME_MAX + 1], dur[24];
    stow_buf form;
    int rc;

    if (out == src)
        return stow_error_set(err, STOW_EUSAGE, "AssumeRole: out and src must differ");
    memset(out, 0, sizeof(*out));
    if (role_arn == NULL || role_arn[0] == '\0' || src == NULL)
        return stow_error_set(err, STOW_EUSAGE, "AssumeRole: no role or no source credentials");
    default_session(session, sizeof(session), session_name);
    stow_buf_init(&form, STS_FORM_MAX);
    if ((rc = form_add(&form, "Action", "AssumeRole", err)) != STOW_OK ||
        (rc = form_add(&form, "Version", STS_VERSION, err)) != STOW_OK ||
        (rc = form_add(&form, "RoleArn", role_arn, err)) != STOW_OK ||
        (rc = form_add(&form, "RoleSessionName", session, err)) != STOW_OK)
        goto done;
    if (external_id != NULL && external_id[0] != '\0' &&
        (rc = form_add(&form, "ExternalId", external_id, err)) != STOW_OK)
        goto done;
    if (duration_s > 0) {
        snprintf(dur, sizeof(dur), "%ld", duration_s);
        if ((rc = form_add(&form, "DurationSeconds", dur, err)) != STOW_OK)
            goto done;
    }
    rc = sts_perform(out, o, &form, src, "STS AssumeRole", err);
    if (rc == STOW_OK)
        snprintf(out->source, sizeof(out->source), "assumed role %.300s (from %.150s)", role_arn,
                 src->source);
done:
    stow_buf_free(&form);
    return rc;
}
