#!/usr/bin/env bash
# Credentials and endpoints the way cloud runners hand them out, against moto_server with
# authentication on: container credentials (AWS_CONTAINER_CREDENTIALS_FULL_URI to a loopback
# agent that checks the authorization token and hands out moto session credentials), the
# S3 endpoint from AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL (and the endpoint option beating
# both), and stowage doctor on S3: what it prints (never a secret) and a failing step named.
# Skipped (77) only when moto_server is not installed.
# '~/c' is literal on purpose (stowage expands it); "ok" never fails, so A && ok || fail is safe.
# shellcheck disable=SC2088,SC2015,SC2030,SC2031
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_s3.sh"
trap _run_cleanups EXIT # lib_s3.sh replaced lib.sh's trap; run both cleanups
at_exit s3_cleanup

rc=0
s3_start_moto stowage-cloud || rc=$?
[ "$rc" = 77 ] && { echo "moto_server is not installed: skipped"; exit 77; }
[ "$rc" = 0 ] || { echo "FAIL: moto_server did not start" >&2; exit 1; }
unset STOWAGE_ENDPOINT AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3 AWS_CA_BUNDLE
unset AWS_CONTAINER_CREDENTIALS_RELATIVE_URI AWS_CONTAINER_CREDENTIALS_FULL_URI
unset AWS_CONTAINER_AUTHORIZATION_TOKEN AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE
export STOWAGE_URL="s3://$S3_BUCKET/cloud"
DEAD="http://127.0.0.1:$(s3_free_port)" # nothing listens there

case_begin "the S3 endpoint from AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL; the option wins"
runner ep
make_fixture "$HOME/c"
AWS_ENDPOINT_URL_S3="$S3_ENDPOINT" AWS_ENDPOINT_URL="$DEAD" stow save --key ep-1 --path '~/c' --strict -v
expect_rc 0 && err_has "endpoint from AWS_ENDPOINT_URL_S3" && ok "saved through AWS_ENDPOINT_URL_S3 (it beats AWS_ENDPOINT_URL)" ||
    fail "$(grep -v 'debug: [A-Z]* http' "$T/err" | tail -5)"
runner ep2
AWS_ENDPOINT_URL="$S3_ENDPOINT" stow restore --key ep-1 --path '~/c' --strict -v
expect_rc 0 && out_has "cache-hit=true" && same_tree "$T/home-ep/c" "$HOME/c" && err_has "endpoint from AWS_ENDPOINT_URL)" &&
    ok "restored through AWS_ENDPOINT_URL" || fail "$(grep -v 'debug: [A-Z]* http' "$T/err" | tail -5)"
runner ep3
AWS_ENDPOINT_URL_S3="$DEAD" AWS_ENDPOINT_URL="$DEAD" stow restore --endpoint "$S3_ENDPOINT" --key ep-1 --path '~/c' --strict
expect_rc 0 && out_has "cache-hit=true" && ok "--endpoint beats both variables" || fail "$(tail -5 "$T/err")"
runner ep4
AWS_ENDPOINT_URL_S3="$DEAD" STOWAGE_RETRIES=0 stow restore --key ep-1 --path '~/c' --strict
expect_rc 1 && err_has "127.0.0.1:${DEAD##*:}" && ok "a dead AWS_ENDPOINT_URL_S3 is where requests went" || fail "$(tail -5 "$T/err")"
AWS_ENDPOINT_URL_S3="ftp://x" stow restore --key ep-1 --path '~/c' --strict
expect_rc 2 && err_has "AWS_ENDPOINT_URL_S3" && ok "a bad AWS_ENDPOINT_URL_S3 is named: $(grep -o 'AWS_ENDPOINT_URL_S3.*' "$T/err" | head -c 120)" ||
    fail "rc $RC: $(tail -3 "$T/err")"

case_begin "container credentials: full URI with an authorization token file"
read -r CT_AK CT_SK CT_TOKEN _ < <(s3_moto_assume_role 3600) || true
CT_AUTH="ctr-auth-$RANDOM$RANDOM-token"
coproc CTR (exec python3 "$STOW_TEST_SRC/tests/integration/container_creds_server.py" --port 0 \
    --auth-token "$CT_AUTH" --access-key "$CT_AK" --secret-key "$CT_SK" --token "$CT_TOKEN" --log "$T/ctr.log")
CTR_SAVED_PID=$CTR_PID # bash unsets CTR_PID once the coprocess has gone
at_exit "kill $CTR_PID 2>/dev/null"
read -r _ CTR_PORT <&"${CTR[0]}" || true
if [ -n "${CTR_PORT:-}" ]; then
    printf '%s\n' "$CT_AUTH" >"$T/ctr-token"
    (
        FAILS=0
        unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN
        export AWS_ENDPOINT_URL_S3="$S3_ENDPOINT"
        export AWS_CONTAINER_CREDENTIALS_FULL_URI="http://127.0.0.1:$CTR_PORT/full/v1/credentials"
        export AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE="$T/ctr-token"
        runner ct
        make_fixture "$HOME/c"
        stow save --key ct-1 --path '~/c' --strict -v
        expect_rc 0 && err_has "credentials from container credentials http://127.0.0.1:$CTR_PORT" &&
            ok "saved with container credentials" || fail "$(grep -v 'debug: [A-Z]* http' "$T/err" | tail -5)"
        grep -q "GET /full/v1/credentials 200 auth=yes" "$T/ctr.log" && ok "the agent saw the token" || fail "$(cat "$T/ctr.log")"
        grep -q -- "$CT_AUTH" "$T/err" "$T/out" && fail "the authorization token reached the output"
        runner ct2
        stow doctor
        expect_rc 0 && out_has "^credentials: container credentials http://127.0.0.1:$CTR_PORT/full/v1/credentials" &&
            out_has "^key id:      \*\{1,16\}${CT_AK: -4}$" && out_has "(from AWS_ENDPOINT_URL_S3)" &&
            out_has "^region:      us-east-1 (from AWS_REGION)" && out_has "^addressing:  path-style" &&
            out_has "^DELETE  ok" && out_has "doctor: all checks passed" && ok "doctor: $(grep -c . "$T/out") lines, all passed" ||
            fail "rc $RC: $(cat "$T/out" "$T/err")"
        grep -q -e "$CT_SK" -e "$CT_TOKEN" -e "$CT_AUTH" -e "$CT_AK" "$T/out" "$T/err" &&
            fail "doctor printed a secret, token or the whole key id"
        # a wrong token: the chain stops with the agent's answer, never the token
        printf 'not-the-token\n' >"$T/ctr-token"
        stow restore --key ct-1 --path '~/c' --strict
        expect_rc 1 && err_has "container credentials" && err_has "401" && ok "wrong token: $(grep -o 'container credentials.*' "$T/err" | head -c 140)" ||
            fail "$(tail -3 "$T/err")"
        grep -q "not-the-token" "$T/err" && fail "the wrong token reached the message"
        # the SDKs' host rule: plain http to anything but loopback or the ECS/EKS agents is refused
        AWS_CONTAINER_CREDENTIALS_FULL_URI="http://192.0.2.7/creds" stow restore --key ct-1 --path '~/c' --strict
        # (a credentials problem: exit 1 with --strict, like every other one)
        expect_rc 1 && err_has "plain http is only allowed" && ok "http://192.0.2.7 refused before any request" ||
            fail "rc $RC: $(tail -3 "$T/err")"
        AWS_CONTAINER_CREDENTIALS_FULL_URI="http://169.254.169.254/latest/meta-data/" stow doctor
        expect_rc 1 && out_has "FAILED at open" && out_has "plain http is only allowed" && ok "doctor names the refused credential URI at open" || fail "rc $RC: $(cat "$T/out")"
        exit "$FAILS"
    ) || FAILS=$((FAILS + $?))
else
    fail "the container credentials server did not start"
fi

case_begin "container credentials that expire soon are fetched again during a multipart save"
kill "$CTR_SAVED_PID" 2>/dev/null || true
wait "$CTR_SAVED_PID" 2>/dev/null || true
coproc CTR2 (exec python3 "$STOW_TEST_SRC/tests/integration/container_creds_server.py" --port 0 \
    --auth-token "$CT_AUTH" --access-key "$CT_AK" --secret-key "$CT_SK" --token "$CT_TOKEN" \
    --expires-in 200 --log "$T/ctr2.log")
at_exit "kill $CTR2_PID 2>/dev/null"
read -r _ CTR2_PORT <&"${CTR2[0]}" || true
if [ -n "${CTR2_PORT:-}" ]; then
    printf '%s\n' "$CT_AUTH" >"$T/ctr-token"
    (
        FAILS=0
        unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN
        export AWS_ENDPOINT_URL_S3="$S3_ENDPOINT"
        export AWS_CONTAINER_CREDENTIALS_FULL_URI="http://localhost:$CTR2_PORT/full/v1/credentials"
        export AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE="$T/ctr-token"
        runner cr
        mkdir -p "$HOME/c" && head -c 20000000 /dev/urandom >"$HOME/c/blob"
        stow save --key cr-1 --path '~/c' --strict -v
        expect_rc 0 && err_has "credentials refreshed from container credentials" && ok "save (20 MB, multipart) with a refresh" ||
            fail "$(grep -v 'debug: [A-Z]* http' "$T/err" | tail -5)"
        n=$(grep -c "GET /full/v1/credentials 200 auth=yes" "$T/ctr2.log" || true)
        [ "$n" -ge 2 ] && ok "fetched $n times, the token file read each time (http://localhost allowed)" || fail "$n fetches: $(cat "$T/ctr2.log")"
        exit "$FAILS"
    ) || FAILS=$((FAILS + $?))
else
    fail "the second container credentials server did not start"
fi

case_begin "doctor on S3 with a wrong secret: fails at HEAD, naming the S3 error"
runner dr
AWS_ENDPOINT_URL_S3="$S3_ENDPOINT" AWS_SECRET_ACCESS_KEY=wrong-secret-123 stow doctor
expect_rc 1 && out_has "^HEAD    FAIL" && out_has "SignatureDoesNotMatch" && out_has "doctor: FAILED at HEAD" &&
    out_has "^credentials: environment" && ok "$(grep '^HEAD' "$T/out" | head -c 120)" || fail "rc $RC: $(cat "$T/out" "$T/err")"
grep -q "wrong-secret-123" "$T/out" "$T/err" && fail "the secret reached the output"
keys=$(s3_list_keys cloud/doctor) || keys="(list failed)"
[ -z "$keys" ] && ok "no probe object left behind" || fail "left: $keys"

finish
