/* A small AWS STS client for the credential chain (s3_creds.c, aws_config.c): the two calls
 * that turn a web identity token or other credentials into temporary credentials.
 *
 *   AssumeRoleWithWebIdentity  unsigned POST (the token is the proof), form-encoded
 *   AssumeRole                 POST signed with SigV4 (service "sts") by the source credentials
 *
 * Both send Version=2011-06-15 and parse the XML answer with expat; an <ErrorResponse>
 * becomes an error naming its Code and Message. The endpoint is, in this order:
 * AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL, the sts_endpoint setting, else the regional
 * https://sts.<region>.amazonaws.com (the global https://sts.amazonaws.com for the SDKs'
 * legacy regions when AWS_STS_REGIONAL_ENDPOINTS=legacy). The token, secrets and session
 * tokens never reach logs or messages.
 */
#ifndef STOW_S3_STS_H
#define STOW_S3_STS_H

#include <stddef.h>

#include "error.h"
#include "s3_creds.h"

#define STOW_S3_STS_URL_MAX 1024
#define STOW_S3_STS_BODY_MAX (64 * 1024) /* cap on an STS answer */
#define STOW_S3_STS_WEB_TOKEN_MAX 20000  /* AWS allows 20000 characters */
#define STOW_S3_STS_SESSION_NAME_MAX 64

/* Where and how to reach STS. Every field may be NULL / 0. */
typedef struct stow_s3_sts_opts {
    const char *endpoint;  /* the sts_endpoint setting (after the environment variables) */
    const char *region;    /* region of the regional endpoint and of the signature; NULL:
                            * AWS_REGION, AWS_DEFAULT_REGION, else us-east-1 */
    const char *ca_bundle; /* CA bundle file for https endpoints */
} stow_s3_sts_opts;

/* The endpoint URL (without trailing '/') and the region to sign for. STOW_EUSAGE when a
 * variable or setting holds something that is not an http(s) URL. */
int stow_s3_sts_endpoint(char *url, size_t url_cap, char *region, size_t region_cap,
                         const stow_s3_sts_opts *o, stow_error *err);

/* AssumeRoleWithWebIdentity. token is the OIDC token (never logged). session_name NULL:
 * "stowage-<pid>". STOW_OK with out filled (source "web identity, role R"), STOW_EAUTH when
 * STS refuses, STOW_ERR/STOW_ETIMEOUT when it cannot be reached or answers nonsense. */
int stow_s3_sts_assume_role_web_identity(stow_s3_creds *out, const stow_s3_sts_opts *o,
                                         const char *role_arn, const char *session_name,
                                         const char *token, stow_error *err);

/* AssumeRole signed with src (which must not be out). external_id may be NULL; duration_s 0 for STS's default. */
int stow_s3_sts_assume_role(stow_s3_creds *out, const stow_s3_sts_opts *o, const stow_s3_creds *src,
                            const char *role_arn, const char *session_name, const char *external_id,
                            long duration_s, stow_error *err);

/* Parses an STS answer (for the calls above and for tests): the <Credentials> of an
 * AssumeRole*Response into out, or an <ErrorResponse> into an STOW_EAUTH error
 * "what: Code: Message". what names the call in messages. */
int stow_s3_sts_parse(stow_s3_creds *out, const char *body, size_t len, const char *what,
                      stow_error *err);

#endif
