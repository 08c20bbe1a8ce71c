#!/usr/bin/env bash
# The integration suite against s3rver (npm, pinned by tests/integration/s3rver's lockfile;
# run `npm ci` there once), plus S3 cases: multipart, ranged resume, 503 retries, encoded
# keys, an unreachable endpoint, a missing bucket and TLS (verification on by default, a CA
# bundle, the explicit opt-out). s3rver does not check signatures: the authentication cases
# are in test_s3_moto.sh. s3rver is committed test infrastructure, so a server that cannot
# start fails the test.
# shellcheck disable=SC2088,SC2015
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_s3.sh"
trap _run_cleanups EXIT # lib_s3.sh replaced lib.sh's trap; run both cleanups
at_exit s3_cleanup
# suite.sh is checked on its own (test_shellcheck.sh); following it from each of the four
# store scripts cost shellcheck 2.4 CPU-s a script.
# shellcheck source=/dev/null
. "$(dirname "$0")/suite.sh"
. "$(dirname "$0")/s3_cases.sh"

s3_start_s3rver stowage-s3rver || { echo "FAIL: s3rver did not start" >&2; exit 1; }

# The suite runs below a prefix with a space, a '+', a '~' and a non-ASCII letter.
s3_store_setup "suite dir+ü~"
# shellcheck disable=SC2034 # read by suite.sh
STOW_TEST_BIG=0 # the >2 GiB case runs on the file store
run_suite
s3_case_encoded_keys "$S3_STORE_PREFIX"
s3_case_multipart
s3_case_resume
s3_case_retries
s3_case_unreachable
s3_case_no_bucket

# Last: this restarts s3rver with TLS.
case_begin "TLS: verified by default, a CA bundle, an explicit opt-out"
if openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/tls.key" -out "$T/tls.crt" -days 2 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 2>"$T/openssl.err" &&
    S3_TLS_CERT="$T/tls.crt" S3_TLS_KEY="$T/tls.key" s3_start_s3rver stowage-tls; then
    export S3_TLS_CERT="$T/tls.crt"
    [[ "$S3_ENDPOINT" == https://* ]] || fail "endpoint $S3_ENDPOINT"
    runner tls
    mkdir -p "$HOME/c" && echo secure >"$HOME/c/f"
    export STOWAGE_ENDPOINT="$S3_ENDPOINT" STOWAGE_URL="s3://stowage-tls/tls"
    stow save --key tls-1 --path '~/c' --strict
    expect_rc 1 && err_has "TLS verification failed" && ok "a certificate from an unknown CA is refused" ||
        fail "$(cat "$T/err")"
    stow save --key tls-1 --path '~/c' --strict --ca-bundle "$T/tls.crt"
    expect_rc 0 && ok "trusted through --ca-bundle" || fail "$(cat "$T/err")"
    runner tls2
    stow restore --key tls-1 --path '~/c' --strict --ca-bundle "$T/tls.crt"
    expect_rc 0 && [ "$(cat "$HOME/c/f")" = secure ] && ok "restore through --ca-bundle" || fail "$(cat "$T/err")"
    rm -rf "$HOME/c"
    stow restore --key tls-1 --path '~/c' --strict --no-verify-tls
    expect_rc 0 && [ "$(cat "$HOME/c/f")" = secure ] && ok "explicit opt-out: --no-verify-tls" || fail "$(cat "$T/err")"
else
    fail "cannot start s3rver with TLS: $(cat "$T/openssl.err")"
fi
finish
