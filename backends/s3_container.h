/* AWS container credentials (ECS task roles, CodeBuild, EKS Pod Identity), a source of the
 * credential chain in s3_creds.h, between the profile source and the instance metadata:
 *
 *   AWS_CONTAINER_CREDENTIALS_RELATIVE_URI  GET http://169.254.170.2<uri>
 *   AWS_CONTAINER_CREDENTIALS_FULL_URI      GET <uri>, with an Authorization header from
 *       AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE (read each time, it wins) or
 *       AWS_CONTAINER_AUTHORIZATION_TOKEN.
 *
 * The relative form wins when both are set, as in the SDKs. A full URI may be https to any
 * host; plain http only to a loopback address (127.0.0.0/8, ::1, or a name that resolves only
 * to loopback addresses) or to the ECS / EKS agents 169.254.170.2, 169.254.170.23 and
 * fd00:ec2::23. Anything else is refused before a request is sent, so the token never goes
 * to an arbitrary host in clear. The answer is JSON: AccessKeyId, SecretAccessKey, Token,
 * Expiration. The token is never logged nor put into a message.
 */
#ifndef STOW_S3_CONTAINER_H
#define STOW_S3_CONTAINER_H

#include "error.h"
#include "s3_creds.h"

#define STOW_S3_CONTAINER_HOST "http://169.254.170.2"
#define STOW_S3_CONTAINER_TOKEN_MAX 16384 /* Authorization token / token file cap */

/* relative_base: the origin a relative URI goes to, NULL for STOW_S3_CONTAINER_HOST (the
 * chain always passes NULL; tests pass a loopback server). STOW_ENOTFOUND (reason in err)
 * when neither variable is set; STOW_EUSAGE for a URI or host the rule refuses; STOW_EAUTH
 * when the service is configured but fails or answers something unusable. */
int stow_s3_creds_from_container(stow_s3_creds *out, const char *relative_base, stow_error *err);

/* 0 when url may be used as a full URI (scheme and host rule above), else STOW_EUSAGE with
 * the reason in err. Exposed for tests. */
int stow_s3_container_url_ok(const char *url, stow_error *err);

#endif
