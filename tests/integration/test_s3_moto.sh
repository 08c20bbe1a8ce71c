#!/usr/bin/env bash
# The integration suite against moto_server with authentication on (signatures verified),
# plus the S3 cases and the credential cases: a wrong secret or key is an authentication
# error naming the S3 code (never a miss), session credentials from moto's STS, the shared
# credentials file with two profiles, a loopback IMDSv2 (with a refresh before expiry) and
# no multipart parts left behind when an upload fails. Skipped (77) only when moto_server is
# not installed; a moto that is installed but does not start fails the test.
#
# moto refuses correct signatures over %XX in query values and over most escapes in the path
# (lib_s3.sh): the suite's prefix has a space, which moto accepts in the path (%20), and
# stowage's listings switch to an unencoded prefix with client-side filtering (s3.c).
#
# '~/c' is literal on purpose (stowage expands it); "ok" never fails, so A && ok || fail is
# safe; the credential cases run in subshells that report their failures as exit status.
# shellcheck disable=SC2088,SC2015,SC2030,SC2031
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_s3.sh"
trap _run_cleanups EXIT # lib_s3.sh replaced lib.sh's trap; run both cleanups
at_exit s3_cleanup
# suite.sh is checked on its own (test_shellcheck.sh); following it from each of the four
# store scripts cost shellcheck 2.4 CPU-s a script.
# shellcheck source=/dev/null
. "$(dirname "$0")/suite.sh"
. "$(dirname "$0")/s3_cases.sh"

rc=0
s3_start_moto stowage-moto || rc=$?
[ "$rc" = 77 ] && { echo "moto_server is not installed: skipped"; exit 77; }
[ "$rc" = 0 ] || { echo "FAIL: moto_server did not start" >&2; exit 1; }

s3_store_setup "suite dir"
# shellcheck disable=SC2034 # read by suite.sh
STOW_TEST_BIG=0 # the >2 GiB case runs on the file store
run_suite
s3_case_encoded_keys suite # moto: list queries without escapes
s3_case_multipart
s3_case_resume
s3_case_retries
s3_case_unreachable
s3_case_no_bucket

GOOD_AK=$AWS_ACCESS_KEY_ID
GOOD_SK=$AWS_SECRET_ACCESS_KEY
export STOWAGE_URL="s3://$S3_BUCKET/creds"

case_begin "wrong secret or unknown key: authentication error naming the S3 code, never a miss"
runner au
mkdir -p "$HOME/c" && echo one >"$HOME/c/f"
stow save --key au-1 --path '~/c' --strict
expect_rc 0
runner au2
AWS_SECRET_ACCESS_KEY=wrong-secret stow restore --key au-1 --path '~/c' --strict
expect_rc 1 && err_has "SignatureDoesNotMatch" && err_has "S3 refused the request" && ! err_has "restore miss" &&
    ok "$(grep -o 'HTTP 403 SignatureDoesNotMatch' "$T/err")" || fail "$(cat "$T/err")"
AWS_SECRET_ACCESS_KEY=wrong-secret stow restore --key au-1 --path '~/c'
expect_rc 0 && err_has "warning" && err_has "SignatureDoesNotMatch" && ! err_has "restore miss" &&
    ok "default: a warning, exit 0" || fail "$(cat "$T/err")"
AWS_ACCESS_KEY_ID=AKIANOSUCHKEY0000000 stow save --key au-2 --path '~/c' --strict
expect_rc 1 && err_has "InvalidAccessKeyId" && ok "unknown key: InvalidAccessKeyId" || fail "$(cat "$T/err")"
AWS_SECRET_ACCESS_KEY=wrong-secret stow list --strict
expect_rc 1 && err_has "SignatureDoesNotMatch" && ok "list: SignatureDoesNotMatch" || fail "$(cat "$T/err")"
[ ! -d "$HOME/c" ] || [ -z "$(ls -A "$HOME/c")" ] || fail "files restored with a wrong secret"

case_begin "session credentials from moto's STS (AssumeRole)"
read -r SESS_AK SESS_SK SESS_TOKEN _ < <(s3_moto_assume_role 3600) || true
if [[ "${SESS_AK:-}" == ASIA* ]]; then
    runner st
    mkdir -p "$HOME/c" && echo session >"$HOME/c/f"
    AWS_ACCESS_KEY_ID=$SESS_AK AWS_SECRET_ACCESS_KEY=$SESS_SK AWS_SESSION_TOKEN=$SESS_TOKEN \
        stow save --key st-1 --path '~/c' --strict
    expect_rc 0 && ok "save with a session token"
    runner st2
    AWS_ACCESS_KEY_ID=$SESS_AK AWS_SECRET_ACCESS_KEY=$SESS_SK AWS_SESSION_TOKEN=$SESS_TOKEN \
        stow restore --key st-1 --path '~/c' --strict
    expect_rc 0 && [ "$(cat "$HOME/c/f")" = session ] && ok "restore with a session token" || fail "$(cat "$T/err")"
    runner st3
    AWS_ACCESS_KEY_ID=$SESS_AK AWS_SECRET_ACCESS_KEY=$SESS_SK AWS_SESSION_TOKEN="${SESS_TOKEN}x" \
        stow restore --key st-1 --path '~/c' --strict
    expect_rc 1 && err_has "InvalidToken" && ok "a wrong token: InvalidToken" || fail "$(cat "$T/err")"
    AWS_ACCESS_KEY_ID=$SESS_AK AWS_SECRET_ACCESS_KEY=$SESS_SK stow restore --key st-1 --path '~/c' --strict
    expect_rc 1 && err_has "InvalidAccessKeyId" && ok "session key without its token refused" || fail "$(cat "$T/err")"
else
    fail "AssumeRole gave no session credentials"
fi

case_begin "shared credentials file with two profiles"
cat >"$T/aws-credentials" <<INI
[default]
aws_access_key_id = AKIANOSUCHKEY0000000
aws_secret_access_key = not-used

[ci-good]
aws_access_key_id = $GOOD_AK
aws_secret_access_key = $GOOD_SK

[ci-bad]
aws_access_key_id = $GOOD_AK
aws_secret_access_key = wrong-secret
INI
runner cf
mkdir -p "$HOME/c" && echo profile >"$HOME/c/f"
(
    FAILS=0
    unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
    export AWS_SHARED_CREDENTIALS_FILE="$T/aws-credentials"
    AWS_PROFILE=ci-good stow save --key cf-1 --path '~/c' --strict -v
    expect_rc 0 && err_has "profile ci-good" && ok "profile ci-good works" || fail "$(grep -v 'debug: [A-Z]* http' "$T/err")"
    runner cf2
    AWS_PROFILE=ci-bad stow restore --key cf-1 --path '~/c' --strict
    expect_rc 1 && err_has "SignatureDoesNotMatch" && err_has "profile ci-bad" && ok "profile ci-bad: refused, named" ||
        fail "$(cat "$T/err")"
    AWS_PROFILE=ci-good stow restore --key cf-1 --path '~/c' --strict
    expect_rc 0 && [ "$(cat "$HOME/c/f")" = profile ] && ok "restore with ci-good" || fail "$(cat "$T/err")"
    AWS_PROFILE=ci-missing stow restore --key cf-1 --path '~/c' --strict
    expect_rc 1 && err_has "ci-missing" && ok "a missing profile is named" || fail "$(cat "$T/err")"
    exit "$FAILS"
) || FAILS=$((FAILS + $?))

case_begin "credentials from a loopback IMDSv2, refreshed before they expire"
read -r IM_AK IM_SK IM_TOKEN _ < <(s3_moto_assume_role 3600) || true
# Expiring in 200 s, inside the 300 s refresh margin: the first request refreshes them.
coproc IMDS (exec python3 "$STOW_TEST_SRC/tests/integration/imds_server.py" --port 0 \
    --access-key "$IM_AK" --secret-key "$IM_SK" --token "$IM_TOKEN" --expires-in 200 --log "$T/imds.log")
at_exit "kill $IMDS_PID 2>/dev/null"
read -r _ IMDS_PORT <&"${IMDS[0]}" || true
if [ -n "${IMDS_PORT:-}" ]; then
    runner im
    mkdir -p "$HOME/c" && head -c 20000000 /dev/urandom >"$HOME/c/blob"
    (
        FAILS=0
        unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN
        export AWS_EC2_METADATA_DISABLED=false AWS_EC2_METADATA_SERVICE_ENDPOINT="http://127.0.0.1:$IMDS_PORT"
        stow save --key im-1 --path '~/c' --strict -v
        expect_rc 0 && err_has "instance metadata" && ok "save with instance credentials" ||
            fail "$(grep -v 'debug: [A-Z]* http' "$T/err" | tail -5)"
        n=$(grep -c "GET /latest/meta-data/iam/security-credentials/stowage-test-role 200 token=yes" "$T/imds.log" || true)
        [ "$n" -ge 2 ] && err_has "credentials refreshed from instance metadata" && ok "credentials fetched $n times (refreshed)" ||
            fail "no refresh: $n fetches; $(cat "$T/imds.log")"
        runner im2
        stow restore --key im-1 --path '~/c' --strict
        expect_rc 0 && cmp -s "$T/home-im/c/blob" "$HOME/c/blob" && ok "restore with instance credentials" ||
            fail "$(tail -3 "$T/err")"
        exit "$FAILS"
    ) || FAILS=$((FAILS + $?))
else
    fail "the IMDS server did not start"
fi

case_begin "a failed multipart upload is aborted: no parts left behind"
s3_proxy_start always503 partNumber=2
runner ab
mkdir -p "$HOME/c" && head -c 30000000 /dev/urandom >"$HOME/c/blob"
STOWAGE_ENDPOINT="$PROXY_URL" STOWAGE_RETRIES=1 stow save --url "s3://$S3_BUCKET/abort" --key ab-1 --path '~/c' --strict -v
expect_rc 1 && err_has "part 2" && ok "save fails: $(grep -o 'part 2[^;]*' "$T/err" | head -1)" || fail "$(grep -v debug "$T/err")"
grep -q '^DELETE .*uploadId=.* action=pass' "$PROXY_LOG" && err_has "multipart upload aborted" && ok "AbortMultipartUpload sent" ||
    fail "no abort: $(grep -v '^PUT' "$PROXY_LOG")"
# "uploads=": curl signs a bare "uploads" differently from moto
if s3_request GET "/$S3_BUCKET?uploads=" >"$T/uploads.xml"; then
    grep -q 'ListMultipartUploadsResult' "$T/uploads.xml" && ! grep -q '<UploadId>' "$T/uploads.xml" &&
        ok "ListMultipartUploads: none in progress" || fail "uploads left: $(cat "$T/uploads.xml")"
else
    fail "ListMultipartUploads failed: $(cat "$T/uploads.xml")"
fi
if keys=$(s3_list_keys abort); then
    if grep -q layers/ <<<"$keys"; then fail "layer left: $keys"; else ok "no layer object"; fi
else
    fail "cannot list the bucket"
fi

finish
