/* From a profile of the AWS shared files to credentials: assumed roles (chained through
 * source_profile), web identity, static keys, credential_process. See aws_config.h. */
#include "aws_config.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "log.h"
#include "readfile.h"
#include "util.h"

int stow_aws_web_identity(stow_s3_creds *out, const stow_s3_sts_opts *o, const char *role_arn,
                          const char *session_name, const char *token_file, stow_error *err)
{
    stow_buf tok;
    int rc;

    memset(out, 0, sizeof(*out));
    stow_buf_init(&tok, STOW_S3_STS_WEB_TOKEN_MAX + 64);
    rc = stow_read_file(&tok, token_file, STOW_S3_STS_WEB_TOKEN_MAX + 64, err);
    if (rc != STOW_OK) {
        stow_error_wrap(err, "web identity token file");
        if (err != NULL)
            err->code = STOW_EAUTH;
        rc = STOW_EAUTH;
        goto done;
    }
    /* trim blanks and the final newline that editors and `echo` add */
    char *t = tok.ptr ? tok.ptr : "";
    size_t n = tok.len;
    while (n > 0 && strchr(" \t\r\n", t[n - 1]) != NULL)
        t[--n] = '\0';
    while (*t != '\0' && strchr(" \t\r\n", *t) != NULL)
        t++;
    if (*t == '\0') {
        rc = stow_error_set(err, STOW_EAUTH, "web identity token file %s is empty", token_file);
        goto done;
    }
    rc = stow_s3_sts_assume_role_web_identity(out, o, role_arn, session_name, t, err);
done:
    if (tok.ptr != NULL)
        OPENSSL_cleanse(tok.ptr, tok.cap);
    stow_buf_free(&tok);
    return rc;
}

static long parse_duration(const char *s)
{
    if (s == NULL || s[0] == '\0')
        return 0;
    char *end = NULL;
    long v = strtol(s, &end, 10);
    return (end != NULL && *end == '\0' && v >= 900 && v <= 43200) ? v : -1;
}

/* visited: the profiles on the way here, for loop detection. */
static int profile_creds(stow_s3_creds *out, const char *name, const stow_s3_sts_opts *o,
                         const char **visited, int depth, stow_error *err)
{
    enum { WHERE_MAX = 8300 };
    char *where = malloc(WHERE_MAX);
    stow_aws_profile *p = malloc(sizeof(*p));
    stow_s3_creds *src = NULL;
    int rc;

    memset(out, 0, sizeof(*out));
    if (p == NULL || where == NULL) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    if ((rc = stow_aws_profile_load(p, name, where, WHERE_MAX, err)) != STOW_OK)
        goto done;
    if (!p->found) {
        rc = stow_error_set(err, STOW_ENOTFOUND, "profile \"%s\" not found in %s", name, where);
        goto done;
    }
    visited[depth] = name;
    if (p->role_arn[0] != '\0') {
        long dur = parse_duration(p->duration_seconds);
        if (dur < 0) {
            rc = stow_error_set(err, STOW_EAUTH,
                                "profile \"%s\": duration_seconds must be 900..43200", name);
            goto done;
        }
        if (p->source_profile[0] != '\0') {
            if ((src = calloc(1, sizeof(*src))) == NULL) {
                rc = stow_error_set(err, STOW_ERR, "out of memory");
                goto done;
            }
            if (strcmp(p->source_profile, name) == 0) {
                /* a profile that is its own source uses its static keys */
                if (!p->has_key || !p->has_secret) {
                    rc = stow_error_set(err, STOW_EAUTH,
                                        "profile \"%s\" is its own source_profile but has no "
                                        "aws_access_key_id and aws_secret_access_key",
                                        name);
                    goto done;
                }
                memcpy(src->access_key, p->access_key, sizeof(src->access_key));
                memcpy(src->secret_key, p->secret_key, sizeof(src->secret_key));
                memcpy(src->session_token, p->session_token, sizeof(src->session_token));
                snprintf(src->source, sizeof(src->source), "profile %s", name);
            } else {
                for (int i = 0; i <= depth; i++)
                    if (strcmp(visited[i], p->source_profile) == 0) {
                        rc = stow_error_set(err, STOW_EAUTH,
                                            "profile \"%s\": source_profile \"%s\" loops back",
                                            name, p->source_profile);
                        goto done;
                    }
                if (depth + 1 >= STOW_AWS_PROFILE_DEPTH) {
                    rc = stow_error_set(err, STOW_EAUTH,
                                        "profile \"%s\": more than %d source_profile links", name,
                                        STOW_AWS_PROFILE_DEPTH);
                    goto done;
                }
                rc = profile_creds(src, p->source_profile, o, visited, depth + 1, err);
                if (rc != STOW_OK) {
                    stow_error_wrap(err, "source_profile of profile \"%s\"", name);
                    if (err != NULL)
                        err->code = STOW_EAUTH;
                    rc = STOW_EAUTH;
                    goto done;
                }
            }
            rc = stow_s3_sts_assume_role(out, o, src, p->role_arn, p->role_session_name,
                                         p->external_id, dur, err);
        } else if (p->web_identity_token_file[0] != '\0') {
            rc = stow_aws_web_identity(out, o, p->role_arn, p->role_session_name,
                                       p->web_identity_token_file, err);
        } else if (p->credential_source[0] != '\0') {
            rc = stow_error_set(err, STOW_EAUTH,
                                "profile \"%s\": credential_source is not supported (use "
                                "source_profile, or no profile on EC2/ECS)",
                                name);
        } else {
            rc = stow_error_set(err, STOW_EAUTH,
                                "profile \"%s\" has role_arn but neither source_profile nor "
                                "web_identity_token_file",
                                name);
        }
        if (rc != STOW_OK) {
            stow_error_wrap(err, "profile \"%s\"", name);
            goto done;
        }
        char inner[STOW_S3_SOURCE_MAX];
        stow_strlcpy(inner, out->source, sizeof(inner));
        snprintf(out->source, sizeof(out->source), "profile %s: %.400s", name, inner);
    } else if (p->has_key) {
        if (!p->has_secret) {
            rc = stow_error_set(err, STOW_EAUTH,
                                "profile \"%s\" in %s has aws_access_key_id but no "
                                "aws_secret_access_key",
                                name, where);
            goto done;
        }
        memcpy(out->access_key, p->access_key, sizeof(out->access_key));
        memcpy(out->secret_key, p->secret_key, sizeof(out->secret_key));
        memcpy(out->session_token, p->session_token, sizeof(out->session_token));
        snprintf(out->source, sizeof(out->source), "shared credentials file %.400s, profile %s",
                 where, name);
    } else if (p->credential_process[0] != '\0') {
        if ((rc = stow_aws_process_creds(out, p->credential_process, err)) != STOW_OK) {
            stow_error_wrap(err, "profile \"%s\"", name);
            goto done;
        }
        snprintf(out->source, sizeof(out->source), "credential_process of profile %s", name);
    } else {
        rc = stow_error_set(err, STOW_ENOTFOUND,
                            "profile \"%s\" in %s has no aws_access_key_id, role_arn or "
                            "credential_process",
                            name, where);
        goto done;
    }
    rc = STOW_OK;
done:
    if (rc != STOW_OK)
        stow_s3_creds_clear(out);
    stow_s3_creds_clear(src);
    free(src);
    if (p != NULL)
        OPENSSL_cleanse(p, sizeof(*p));
    free(p);
    free(where);
    return rc;
}

int stow_aws_profile_creds(stow_s3_creds *out, const char *name, const stow_s3_sts_opts *o,
                           stow_error *err)
{
    const char *visited[STOW_AWS_PROFILE_DEPTH] = {0};
    return profile_creds(out, name, o, visited, 0, err);
}
