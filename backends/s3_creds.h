/* AWS credentials for the S3 backend. Never from the stowage config file: the chain is
 *   1. the environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
 *      (AWS_SECURITY_TOKEN as a legacy fallback), AWS_CREDENTIAL_EXPIRATION if set;
 *   2. web identity: AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN (+ AWS_ROLE_SESSION_NAME,
 *      default "stowage-<pid>") through STS AssumeRoleWithWebIdentity (s3_sts.h);
 *   3. the shared files: AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials and
 *      AWS_CONFIG_FILE or ~/.aws/config, profile AWS_PROFILE, AWS_DEFAULT_PROFILE or
 *      "default": static keys, role_arn + source_profile or web_identity_token_file,
 *      credential_process (aws_config.h);
 *   4. container credentials: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI with
 *      AWS_CONTAINER_AUTHORIZATION_TOKEN(_FILE) (ECS, CodeBuild, EKS Pod Identity;
 *      s3_container.h);
 *   5. the EC2 instance metadata service, IMDSv2 only (token from PUT /latest/api/token),
 *      at AWS_EC2_METADATA_SERVICE_ENDPOINT or http://169.254.169.254, skipped when
 *      AWS_EC2_METADATA_DISABLED=true. Short timeouts, so a machine that is not on EC2
 *      falls through in about a second.
 * Instance credentials expire: keep the expiry and call stow_s3_creds_near_expiry before
 * each request of a long transfer, resolving again when it says so.
 * Secrets never reach logs or error messages; source says where credentials came from.
 */
#ifndef STOW_S3_CREDS_H
#define STOW_S3_CREDS_H

#include <time.h>

#include "buf.h"
#include "error.h"

#define STOW_S3_ACCESS_KEY_MAX 128
#define STOW_S3_SECRET_MAX 256
#define STOW_S3_TOKEN_MAX 8000 /* fits stow_sigv4's x-amz-security-token line */
#define STOW_S3_SOURCE_MAX 512
#define STOW_S3_CREDS_REFRESH_MARGIN 300 /* seconds before expiry to refresh */
#define STOW_S3_IMDS_DEFAULT_ENDPOINT "http://169.254.169.254"

typedef struct stow_s3_creds {
    char access_key[STOW_S3_ACCESS_KEY_MAX + 1];
    char secret_key[STOW_S3_SECRET_MAX + 1];
    char session_token[STOW_S3_TOKEN_MAX + 1]; /* "" when none */
    time_t expiry;                             /* 0 = does not expire */
    char source[STOW_S3_SOURCE_MAX];           /* for logs, e.g. "environment",
                                                * "shared credentials file F, profile P",
                                                * "instance metadata URL, role R" */
} stow_s3_creds;

/* Walks the chain. STOW_OK with out filled; STOW_EAUTH when nothing was found (the message
 * names every source tried and why it gave nothing) or when a source is broken: only one of
 * the two environment keys set, AWS_PROFILE names a profile that is missing, a profile has a
 * key id without secret, or the metadata service answers with an error. */
int stow_s3_creds_resolve(stow_s3_creds *out, stow_error *err);
/* The same with STS settings (endpoint, region, CA bundle) for the sources that call STS;
 * o may be NULL. */
struct stow_s3_sts_opts;
int stow_s3_creds_resolve_opts(stow_s3_creds *out, const struct stow_s3_sts_opts *o,
                               stow_error *err);

/* The individual steps, for the chain and for tests. Each returns STOW_OK, STOW_ENOTFOUND
 * when its source has nothing (with the reason in err), or STOW_EAUTH / STOW_ERR when the
 * source is there but unusable. */
int stow_s3_creds_from_env(stow_s3_creds *out, stow_error *err);
/* path: the credentials file; profile: section name ("default") (in aws_config.c). ENOTFOUND when the file
 * does not exist or has no such profile (or the profile has no aws_access_key_id). */
int stow_s3_creds_from_file(stow_s3_creds *out, const char *path, const char *profile,
                            stow_error *err);
/* endpoint: "http://host[:port]" without path; NULL for the default. ENOTFOUND when the
 * service cannot be reached, refuses tokens (403) or has no IAM role. */
int stow_s3_creds_from_imds(stow_s3_creds *out, const char *endpoint, stow_error *err);

/* 1 when c expires within margin_s seconds of now (or has expired), 0 otherwise and for
 * credentials without expiry. */
int stow_s3_creds_near_expiry(const stow_s3_creds *c, time_t now, long margin_s);

/* Wipes the secret and token. Accepts NULL. */
void stow_s3_creds_clear(stow_s3_creds *c);

/* Parses an ISO 8601 UTC time "YYYY-MM-DDTHH:MM:SS[.fff](Z|+00:00)", as IMDS and
 * AWS_CREDENTIAL_EXPIRATION give it. STOW_OK or STOW_EUSAGE. */
int stow_s3_creds_parse_time(time_t *out, const char *s, stow_error *err);

/* Fills out from an answer of IMDS or the container credentials service: a JSON object
 * {AccessKeyId, SecretAccessKey, Token, Expiration}, refused when it carries a Code other than
 * "Success"; what names the source in errors. */
int stow_s3_creds_from_json(stow_s3_creds *out, const stow_buf *body, const char *what,
                            stow_error *err);

#endif
