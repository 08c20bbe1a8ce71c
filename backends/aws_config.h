/* The AWS shared files as the SDKs read them: the credentials file (AWS_SHARED_CREDENTIALS_FILE
 * or ~/.aws/credentials, sections "[name]") and the config file (AWS_CONFIG_FILE or
 * ~/.aws/config, sections "[default]" and "[profile name]"), and the credentials a profile
 * leads to (aws_profile.c):
 *
 *   role_arn + source_profile           AssumeRole with the source profile's credentials
 *                                       (chained; a loop is an error; source_profile naming
 *                                       the profile itself uses its own keys)
 *   role_arn + web_identity_token_file  AssumeRoleWithWebIdentity
 *   aws_access_key_id, ...              static keys (credentials file first, then config)
 *   credential_process                  an external command (aws_process.c)
 *
 * For the same profile, a key in the credentials file wins over the same key in the config
 * file. The profile is AWS_PROFILE, else AWS_DEFAULT_PROFILE, else "default".
 */
#ifndef STOW_AWS_CONFIG_H
#define STOW_AWS_CONFIG_H

#include <stddef.h>

#include "error.h"
#include "s3_creds.h"
#include "s3_sts.h"

#define STOW_AWS_PROFILE_MAX 128
#define STOW_AWS_CMD_MAX 4096
#define STOW_AWS_PROFILE_DEPTH 8 /* source_profile links followed */
#define STOW_AWS_PROCESS_OUT_MAX (64 * 1024)

/* The settings of one profile that the credential chain uses. */
typedef struct stow_aws_profile {
    int found; /* the section exists */
    int has_key, has_secret;
    char access_key[STOW_S3_ACCESS_KEY_MAX + 1];
    char secret_key[STOW_S3_SECRET_MAX + 1];
    char session_token[STOW_S3_TOKEN_MAX + 1];
    char region[64];
    char role_arn[2048];
    char source_profile[STOW_AWS_PROFILE_MAX + 1];
    char web_identity_token_file[4096];
    char role_session_name[STOW_S3_STS_SESSION_NAME_MAX + 1];
    char credential_process[STOW_AWS_CMD_MAX];
    char credential_source[64];
    char external_id[1300];
    char duration_seconds[16];
} stow_aws_profile;

/* Reads the keys of section `section` of the INI file at path into out (cleared first).
 * STOW_ENOTFOUND when the file does not exist; STOW_OK otherwise, with out->found telling
 * whether the section is there; STOW_EAUTH when the file is unreadable, not a regular file,
 * malformed, or a value is too long (the message names the file and line or key). */
int stow_aws_ini_read(stow_aws_profile *out, const char *path, const char *section,
                      stow_error *err);

/* The credentials file (config 0) or config file (config 1) path: the variable, with a
 * leading "~/" expanded, else $HOME/.aws/credentials or $HOME/.aws/config. */
int stow_aws_file_path(char *out, size_t cap, int config, stow_error *err);

/* Both files merged for profile name (credentials file first, key by key). STOW_OK with
 * out->found set when either file has the profile; where gets "F" or "F and G" naming the
 * files that have it (or, when none does, "F or G"). */
int stow_aws_profile_load(stow_aws_profile *out, const char *name, char *where, size_t wcap,
                          stow_error *err);

/* AWS_PROFILE, else AWS_DEFAULT_PROFILE, else "default"; *named is 1 when a variable set it
 * (then a missing profile is an error rather than a reason to try the next source). */
const char *stow_aws_profile_name(int *named);

/* The region setting of the current profile (stow_aws_profile_name) into out, "" when there
 * is none or the files cannot be read (the credential chain reports those). */
void stow_aws_profile_region(char *out, size_t cap);

/* The credentials profile name leads to (see the top of this file). STOW_ENOTFOUND when the
 * profile does not exist or holds nothing that gives credentials (only region, say). */
int stow_aws_profile_creds(stow_s3_creds *out, const char *name, const stow_s3_sts_opts *o,
                           stow_error *err);

/* AssumeRoleWithWebIdentity with the token read from token_file (a regular file of at most
 * STOW_S3_STS_WEB_TOKEN_MAX bytes; surrounding blanks trimmed). */
int stow_aws_web_identity(stow_s3_creds *out, const stow_s3_sts_opts *o, const char *role_arn,
                          const char *session_name, const char *token_file, stow_error *err);

/* credential_process (aws_process.c): runs cmdline with posix_spawn, no shell; the line is
 * split on blanks, "double quotes" group (no escapes). stdout (at most
 * STOW_AWS_PROCESS_OUT_MAX bytes) is the JSON {"Version": 1, "AccessKeyId", "SecretAccessKey",
 * "SessionToken", "Expiration"}. A non-zero exit is STOW_EAUTH naming the command and the first
 * line of its stderr; so are bad JSON and expired credentials. */
int stow_aws_process_creds(stow_s3_creds *out, const char *cmdline, stow_error *err);

#endif
