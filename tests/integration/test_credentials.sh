#!/usr/bin/env bash
# The credential sources that call STS or other programs, through the real binary against
# moto_server with authentication on: web identity (AWS_WEB_IDENTITY_TOKEN_FILE against
# sts_server.py, a strict AssumeRoleWithWebIdentity stand-in handing out keys that moto
# accepts), AssumeRole chains from ~/.aws/config (role_arn + source_profile, against moto's
# STS), credential_process, the precedence of the sources, and a refresh of expiring
# web-identity credentials during a save. Skipped (77) only when moto_server is missing.
#
# '~/c' is literal on purpose (stowage expands it); "ok" never fails, so A && ok || fail is
# safe.
# shellcheck disable=SC2088,SC2015,SC2016,SC2030,SC2031
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_s3.sh"
trap _run_cleanups EXIT
at_exit s3_cleanup

rc=0
s3_start_moto stowage-creds || rc=$?
[ "$rc" = 77 ] && { echo "moto_server is not installed: skipped"; exit 77; }
[ "$rc" = 0 ] || { echo "FAIL: moto_server did not start" >&2; exit 1; }

USER_AK=$AWS_ACCESS_KEY_ID
USER_SK=$AWS_SECRET_ACCESS_KEY
ROLE=arn:aws:iam::123456789012:role/stowage-role
export STOWAGE_ENDPOINT="$S3_ENDPOINT"
export AWS_CONFIG_FILE="$T/aws-config"
export AWS_SHARED_CREDENTIALS_FILE="$T/aws-credentials"
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE AWS_DEFAULT_PROFILE \
    AWS_WEB_IDENTITY_TOKEN_FILE AWS_ROLE_ARN AWS_ROLE_SESSION_NAME AWS_ENDPOINT_URL \
    AWS_ENDPOINT_URL_STS AWS_STS_REGIONAL_ENDPOINTS

# session credentials for stowage-role, handed out by the web identity stand-in
read -r WI_AK WI_SK WI_TOKEN _ < <(AWS_ACCESS_KEY_ID=$USER_AK AWS_SECRET_ACCESS_KEY=$USER_SK s3_moto_assume_role 3600) || true
[[ "${WI_AK:-}" == ASIA* ]] || { echo "FAIL: AssumeRole on moto gave no session keys" >&2; exit 1; }
OIDC_TOKEN="eyJhbGciOiJSUzI1NiJ9.$(head -c 600 /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '=').sig"
printf '%s\n' "$OIDC_TOKEN" >"$T/oidc-token"
chmod 600 "$T/oidc-token"

# the stand-in, handing out credentials valid for an hour
STS_LOG="$T/sts.log"
coproc STS (exec python3 "$STOW_TEST_SRC/tests/integration/sts_server.py" --port 0 \
    --token-file "$T/oidc-token" --role-arn "$ROLE" --access-key "$WI_AK" \
    --secret-key "$WI_SK" --session-token "$WI_TOKEN" --expires-in 3600 --log "$STS_LOG")
at_exit "kill $STS_PID 2>/dev/null"
read -r _ STS_PORT <&"${STS[0]}" || true
[ -n "${STS_PORT:-}" ] || { echo "FAIL: the STS stand-in did not start" >&2; exit 1; }
STS_URL="http://127.0.0.1:$STS_PORT"

no_secret_in_err() {
    ! grep -qF -- "$OIDC_TOKEN" "$T/err" && ! grep -qF -- "$WI_SK" "$T/err" &&
        ! grep -qF -- "$USER_SK" "$T/err" && ! grep -qF -- "$WI_TOKEN" "$T/err"
}

case_begin "web identity from the environment (AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN)"
export STOWAGE_URL="s3://$S3_BUCKET/wi"
runner wi
mkdir -p "$HOME/c" && echo web >"$HOME/c/f"
AWS_WEB_IDENTITY_TOKEN_FILE="$T/oidc-token" AWS_ROLE_ARN=$ROLE AWS_ENDPOINT_URL_STS=$STS_URL \
    stow save --key wi-1 --path '~/c' --strict -v
expect_rc 0 && err_has "web identity, role $ROLE" && ok "save with web identity credentials" ||
    fail "$(grep -v 'debug: [A-Z]* http' "$T/err" | tail -5)"
grep -q "^POST / 200 OK role=$ROLE session=stowage-[0-9]* token=ok auth=no" "$STS_LOG" &&
    ok "one unsigned AssumeRoleWithWebIdentity, session stowage-<pid>" || fail "$(cat "$STS_LOG")"
no_secret_in_err && ok "no token or secret in the -v log" || fail "a secret reached stderr"
runner wi2
AWS_WEB_IDENTITY_TOKEN_FILE="$T/oidc-token" AWS_ROLE_ARN=$ROLE AWS_ROLE_SESSION_NAME=ci-job-42 \
    AWS_ENDPOINT_URL_STS=$STS_URL stow restore --key wi-1 --path '~/c' --strict
expect_rc 0 && [ "$(cat "$HOME/c/f")" = web ] && ok "restore with web identity credentials" || fail "$(cat "$T/err")"
grep -q "session=ci-job-42 token=ok" "$STS_LOG" && ok "AWS_ROLE_SESSION_NAME sent" || fail "$(cat "$STS_LOG")"
# AWS_ENDPOINT_URL is the fallback for STS; the sts_endpoint setting comes after it
AWS_WEB_IDENTITY_TOKEN_FILE="$T/oidc-token" AWS_ROLE_ARN=$ROLE STOWAGE_STS_ENDPOINT=$STS_URL \
    stow restore --key wi-1 --path '~/c' --strict
expect_rc 0 && ok "sts_endpoint setting (STOWAGE_STS_ENDPOINT)" || fail "$(cat "$T/err")"
AWS_WEB_IDENTITY_TOKEN_FILE="$T/oidc-token" AWS_ROLE_ARN=$ROLE AWS_ENDPOINT_URL_STS=$STS_URL \
    STOWAGE_STS_ENDPOINT=http://127.0.0.1:1 stow restore --key wi-1 --path '~/c' --strict
expect_rc 0 && ok "AWS_ENDPOINT_URL_STS wins over sts_endpoint" || fail "$(cat "$T/err")"

case_begin "web identity refused: the STS error is named, the token is not printed"
printf 'not-the-token\n' >"$T/wrong-token"
AWS_WEB_IDENTITY_TOKEN_FILE="$T/wrong-token" AWS_ROLE_ARN=$ROLE AWS_ENDPOINT_URL_STS=$STS_URL \
    stow restore --key wi-1 --path '~/c' --strict
expect_rc 1 && err_has "InvalidIdentityToken" && err_has "AssumeRoleWithWebIdentity" &&
    ! err_has "not-the-token" && ok "$(grep -o 'STS AssumeRoleWithWebIdentity[^;]*' "$T/err" | head -1)" ||
    fail "$(cat "$T/err")"
AWS_WEB_IDENTITY_TOKEN_FILE="$T/oidc-token" AWS_ROLE_ARN=arn:aws:iam::123456789012:role/other \
    AWS_ENDPOINT_URL_STS=$STS_URL stow restore --key wi-1 --path '~/c' --strict
expect_rc 1 && err_has "AccessDenied" && ok "another role: AccessDenied" || fail "$(cat "$T/err")"
AWS_WEB_IDENTITY_TOKEN_FILE="$T/no-such-token" AWS_ROLE_ARN=$ROLE AWS_ENDPOINT_URL_STS=$STS_URL \
    stow restore --key wi-1 --path '~/c' --strict
expect_rc 1 && err_has "no-such-token" && ok "a missing token file is named" || fail "$(cat "$T/err")"
AWS_WEB_IDENTITY_TOKEN_FILE="$T/oidc-token" AWS_ENDPOINT_URL_STS=$STS_URL \
    stow restore --key wi-1 --path '~/c' --strict
expect_rc 1 && err_has "AWS_ROLE_ARN" && ok "token file without AWS_ROLE_ARN is an error" || fail "$(cat "$T/err")"

case_begin "AssumeRole chains from ~/.aws/config against moto's STS"
cat >"$T/aws-credentials" <<INI
[base]
aws_access_key_id = $USER_AK
aws_secret_access_key = $USER_SK
INI
cat >"$T/aws-config" <<INI
[default]
region = us-east-1

[profile ci]
role_arn = $ROLE
source_profile = base
role_session_name = chain

[profile chained]
role_arn = $ROLE
source_profile = ci

[profile self]
role_arn = $ROLE
source_profile = self
aws_access_key_id = $USER_AK
aws_secret_access_key = $USER_SK

[profile loop-a]
role_arn = $ROLE
source_profile = loop-b

[profile loop-b]
role_arn = $ROLE
source_profile = loop-a

[profile webid]
role_arn = $ROLE
web_identity_token_file = $T/oidc-token

[profile bare-role]
role_arn = $ROLE
INI
export STOWAGE_URL="s3://$S3_BUCKET/ar" STOWAGE_STS_ENDPOINT=$S3_ENDPOINT
runner ar
mkdir -p "$HOME/c" && echo role >"$HOME/c/f"
AWS_PROFILE=ci stow save --key ar-1 --path '~/c' --strict -v
expect_rc 0 && err_has "profile ci: assumed role $ROLE" && ok "role_arn + source_profile" ||
    fail "$(grep -v 'debug: [A-Z]* http' "$T/err" | tail -5)"
no_secret_in_err && ok "no secret in the -v log" || fail "a secret reached stderr"
runner ar2
AWS_PROFILE=chained stow restore --key ar-1 --path '~/c' --strict -v
expect_rc 0 && [ "$(cat "$HOME/c/f")" = role ] && err_has "profile chained: assumed role" &&
    ok "two links: chained -> ci -> base" || fail "$(grep -v 'debug: [A-Z]* http' "$T/err" | tail -5)"
AWS_DEFAULT_PROFILE=self stow restore --key ar-1 --path '~/c' --strict
expect_rc 0 && ok "AWS_DEFAULT_PROFILE; a profile that is its own source_profile" || fail "$(cat "$T/err")"
AWS_PROFILE=loop-a stow restore --key ar-1 --path '~/c' --strict
expect_rc 1 && err_has "loops back" && ok "source_profile loop detected" || fail "$(cat "$T/err")"
AWS_PROFILE=bare-role stow restore --key ar-1 --path '~/c' --strict
expect_rc 1 && err_has "neither source_profile nor web_identity_token_file" && ok "role_arn alone: named" ||
    fail "$(cat "$T/err")"
AWS_PROFILE=webid STOWAGE_STS_ENDPOINT=$STS_URL stow restore --key ar-1 --path '~/c' --strict -v
expect_rc 0 && err_has "profile webid: web identity" && ok "role_arn + web_identity_token_file" ||
    fail "$(grep -v 'debug: [A-Z]* http' "$T/err" | tail -5)"
cat >"$T/aws-credentials" <<INI
[base]
aws_access_key_id = $USER_AK
aws_secret_access_key = wrong-secret
INI
AWS_PROFILE=ci stow restore --key ar-1 --path '~/c' --strict
expect_rc 1 && err_has "STS AssumeRole" && err_has "SignatureDoesNotMatch\|InvalidClientTokenId" &&
    ok "a bad source key: $(grep -o 'STS AssumeRole[^;]*' "$T/err" | head -1 | cut -c1-150)" || fail "$(cat "$T/err")"

case_begin "credential_process"
cat >"$T/creds-ok.sh" <<SH
#!/bin/sh
printf '{"Version": 1, "AccessKeyId": "%s", "SecretAccessKey": "%s", "SessionToken": "%s", "Expiration": "%s"}\n' \
    "$WI_AK" "$WI_SK" "$WI_TOKEN" "\$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)"
SH
printf '#!/bin/sh\necho "no login for $1" >&2\necho second line >&2\nexit 3\n' >"$T/creds-fail.sh"
printf '#!/bin/sh\necho "{\\"Version\\": 1, \\"AccessKeyId\\": "\n' >"$T/creds-badjson.sh"
printf '#!/bin/sh\necho "{\\"Version\\": 1, \\"AccessKeyId\\": \\"A\\", \\"SecretAccessKey\\": \\"B\\", \\"Expiration\\": \\"2020-01-01T00:00:00Z\\"}"\n' >"$T/creds-expired.sh"
chmod +x "$T"/creds-*.sh
mkdir -p "$T/dir with space" && cp "$T/creds-fail.sh" "$T/dir with space/creds fail.sh"
cat >"$T/aws-config" <<INI
[profile proc]
credential_process = $T/creds-ok.sh
[profile proc-fail]
credential_process = "$T/dir with space/creds fail.sh" "the user"
[profile proc-badjson]
credential_process = $T/creds-badjson.sh
[profile proc-expired]
credential_process = $T/creds-expired.sh
[profile proc-shell]
credential_process = echo \$HOME; exit 1
INI
: >"$T/aws-credentials"
export STOWAGE_URL="s3://$S3_BUCKET/cp"
runner cp
mkdir -p "$HOME/c" && echo proc >"$HOME/c/f"
AWS_PROFILE=proc stow save --key cp-1 --path '~/c' --strict -v
expect_rc 0 && err_has "credential_process of profile proc" && ok "save with credential_process credentials" ||
    fail "$(grep -v 'debug: [A-Z]* http' "$T/err" | tail -5)"
AWS_PROFILE=proc-fail stow restore --key cp-1 --path '~/c' --strict
expect_rc 1 && err_has 'creds fail.sh" exited with 3: no login for the user' && ! err_has "second line" &&
    ok "non-zero exit: command and first stderr line" || fail "$(cat "$T/err")"
AWS_PROFILE=proc-badjson stow restore --key cp-1 --path '~/c' --strict
expect_rc 1 && err_has "not a JSON object" && ok "bad JSON refused" || fail "$(cat "$T/err")"
AWS_PROFILE=proc-expired stow restore --key cp-1 --path '~/c' --strict
expect_rc 1 && err_has "expired at 2020-01-01" && ok "expired credentials refused" || fail "$(cat "$T/err")"
AWS_PROFILE=proc-shell stow restore --key cp-1 --path '~/c' --strict
expect_rc 1 && err_has "JSON" && ok "no shell: 'echo \$HOME; exit 1' is echo with arguments" || fail "$(cat "$T/err")"

case_begin "precedence: environment > web identity > profile; credentials file > config file"
cat >"$T/aws-credentials" <<INI
[default]
aws_access_key_id = $USER_AK
aws_secret_access_key = $USER_SK
INI
cat >"$T/aws-config" <<INI
[default]
aws_access_key_id = AKIANOSUCHKEY0000000
aws_secret_access_key = bad
INI
export STOWAGE_URL="s3://$S3_BUCKET/pr"
runner pr
mkdir -p "$HOME/c" && echo prec >"$HOME/c/f"
stow save --key pr-1 --path '~/c' --strict -v
expect_rc 0 && err_has "shared credentials file $T/aws-credentials and $T/aws-config, profile default" &&
    ok "credentials file keys beat config file keys" || fail "$(grep -v 'debug: [A-Z]* http' "$T/err" | tail -3)"
n0=$(wc -l <"$STS_LOG")
AWS_ACCESS_KEY_ID=$USER_AK AWS_SECRET_ACCESS_KEY=$USER_SK AWS_WEB_IDENTITY_TOKEN_FILE="$T/oidc-token" \
    AWS_ROLE_ARN=$ROLE AWS_ENDPOINT_URL_STS=$STS_URL stow restore --key pr-1 --path '~/c' --strict -v
expect_rc 0 && err_has "credentials from environment" && [ "$(wc -l <"$STS_LOG")" = "$n0" ] &&
    ok "environment keys beat web identity (STS not called)" || fail "$(grep -v 'debug: [A-Z]* http' "$T/err" | tail -3)"
mv "$T/aws-config" "$T/aws-config.bad"
cat >"$T/aws-credentials" <<INI
[default]
aws_access_key_id = AKIANOSUCHKEY0000000
aws_secret_access_key = bad
INI
AWS_WEB_IDENTITY_TOKEN_FILE="$T/oidc-token" AWS_ROLE_ARN=$ROLE AWS_ENDPOINT_URL_STS=$STS_URL \
    stow restore --key pr-1 --path '~/c' --strict -v
expect_rc 0 && err_has "credentials from web identity" && ok "web identity beats the default profile" ||
    fail "$(grep -v 'debug: [A-Z]* http' "$T/err" | tail -3)"
: >"$T/aws-credentials"
AWS_EC2_METADATA_DISABLED=true stow restore --key pr-1 --path '~/c' --strict
expect_rc 1 && err_has "no AWS credentials found" && err_has "web identity: AWS_WEB_IDENTITY_TOKEN_FILE not set" &&
    err_has "shared files: profile \"default\" not found in $T/aws-credentials or $T/aws-config" &&
    ok "nothing found: every source named" || fail "$(cat "$T/err")"

case_begin "region from the profile when no setting or variable names one"
mv "$T/aws-config.bad" "$T/aws-config"
cat >"$T/aws-config" <<INI
[profile reg]
region = eu-west-3
INI
printf '[reg]\naws_access_key_id = %s\naws_secret_access_key = %s\n' "$USER_AK" "$USER_SK" >"$T/aws-credentials"
(
    FAILS=0
    unset AWS_REGION AWS_DEFAULT_REGION
    AWS_PROFILE=reg stow list -v
    expect_rc 0 && err_has "region eu-west-3" && ok "region eu-west-3 from [profile reg]" ||
        fail "$(grep -v 'debug: [A-Z]* http' "$T/err" | tail -3)"
    AWS_DEFAULT_REGION=ap-south-1 AWS_PROFILE=reg stow list -v
    expect_rc 0 && err_has "region ap-south-1" && ok "AWS_DEFAULT_REGION wins over the profile" ||
        fail "$(grep -v 'debug: [A-Z]* http' "$T/err" | tail -3)"
    exit "$FAILS"
) || FAILS=$((FAILS + $?))

case_begin "web identity credentials near expiry are refreshed during a save"
# expiring in 200 s, inside the 300 s refresh margin: the first signed request refreshes
RF_LOG="$T/sts-refresh.log"
coproc STSR (exec python3 "$STOW_TEST_SRC/tests/integration/sts_server.py" --port 0 \
    --token-file "$T/oidc-token" --role-arn "$ROLE" --access-key "$WI_AK" \
    --secret-key "$WI_SK" --session-token "$WI_TOKEN" --expires-in 200 --log "$RF_LOG")
at_exit "kill $STSR_PID 2>/dev/null"
read -r _ RF_PORT <&"${STSR[0]}" || true
export STOWAGE_URL="s3://$S3_BUCKET/rf"
runner rf
mkdir -p "$HOME/c" && head -c 20000000 /dev/urandom >"$HOME/c/blob"
AWS_WEB_IDENTITY_TOKEN_FILE="$T/oidc-token" AWS_ROLE_ARN=$ROLE \
    AWS_ENDPOINT_URL_STS="http://127.0.0.1:${RF_PORT:-1}" stow save --key rf-1 --path '~/c' --strict -v
n=$(grep -c "200 OK" "$RF_LOG" || true)
expect_rc 0 && [ "$n" -ge 2 ] && err_has "credentials refreshed from web identity" &&
    ok "AssumeRoleWithWebIdentity called $n times (refreshed)" ||
    fail "no refresh: $n calls; $(grep -v 'debug: [A-Z]* http' "$T/err" | tail -3)"
# the same for credential_process: credentials that expire in 200 s, one line per run
cat >"$T/creds-short.sh" <<SH
#!/bin/sh
echo run >>"$T/process-runs"
printf '{"Version": 1, "AccessKeyId": "%s", "SecretAccessKey": "%s", "SessionToken": "%s", "Expiration": "%s"}\n' \
    "$WI_AK" "$WI_SK" "$WI_TOKEN" "\$(date -u -d '+200 seconds' +%Y-%m-%dT%H:%M:%SZ)"
SH
chmod +x "$T/creds-short.sh"
printf '[profile short]\ncredential_process = %s\n' "$T/creds-short.sh" >"$T/aws-config"
: >"$T/aws-credentials"
runner rf2
mkdir -p "$HOME/c" && head -c 20000000 /dev/urandom >"$HOME/c/blob"
AWS_PROFILE=short stow save --url "s3://$S3_BUCKET/rf2" --key rf-2 --path '~/c' --strict -v
n=$(wc -l <"$T/process-runs" 2>/dev/null || echo 0)
expect_rc 0 && [ "$n" -ge 2 ] && err_has "credentials refreshed from credential_process of profile short" &&
    ok "credential_process run $n times (refreshed)" ||
    fail "no refresh: $n runs; $(grep -v 'debug: [A-Z]* http' "$T/err" | tail -3)"

finish
