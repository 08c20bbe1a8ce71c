#!/usr/bin/env bash
# stowage doctor on a file store and on a real nginx WebDAV store (anonymous, bearer token,
# and TLS with the test CA): the resolved settings, the timed HEAD/PUT/GET/DELETE probe,
# exit 0 when all pass; and failures that name the failing step (a store below a regular
# file fails at PUT, a wrong bearer token at HEAD) without printing the token. The S3 side
# (credential source, endpoint origin, masked key id) is in test_cloud_creds.sh.
# '~/c' is literal on purpose; "ok" never fails, so A && ok || fail is safe.
# shellcheck disable=SC2015
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_nginx.sh"

mkdir -p "$T/srv"
nginx_start "$T/srv" || { echo "FAIL: cannot start nginx" >&2; exit 1; }
trap 'set +e; _lib_nginx_exit; _run_cleanups' EXIT
unset STOWAGE_URL STOWAGE_HTTP_TOKEN

all_steps_ok() {
    local s
    for s in open HEAD PUT GET DELETE; do
        grep -q "^$s *ok *[0-9]* ms" "$T/out" || return 1
    done
    out_has "doctor: all checks passed"
}

case_begin "file store: every step passes, the probe is removed"
runner f
stow doctor --url "file://$T/fstore/pre fix"
expect_rc 0 && all_steps_ok && out_has "^backend:     file" && out_has "^store:       file://$T/fstore/pre fix (from flag)" &&
    ok "$(grep -c ' ms ' "$T/out") timed steps" || fail "$(cat "$T/out" "$T/err")"
left=$(find "$T/fstore" -type f | head -3)
[ -z "$left" ] && ok "no probe left" || fail "left: $left"

case_begin "file store below a regular file: fails at PUT"
echo x >"$T/plain"
STOWAGE_URL="file://$T/plain/store" stow doctor
expect_rc 1 && out_has "^PUT *FAIL" && out_has "doctor: FAILED at PUT" && out_has "(from environment)" &&
    ok "$(grep '^PUT' "$T/out" | head -c 120)" || fail "rc $RC: $(cat "$T/out" "$T/err")"

case_begin "nginx: anonymous, bearer token, TLS"
stow doctor --url "$NGINX_URL/anon/doc"
expect_rc 0 && all_steps_ok && out_has "^backend:     http" && ok "anonymous http store" || fail "rc $RC: $(cat "$T/out" "$T/err")"
[ -z "$(find "$NGINX_ROOT/anon" -type f -path '*doctor*' | head -1)" ] && ok "probe removed from nginx" ||
    fail "left: $(find "$NGINX_ROOT/anon" -type f)"
STOWAGE_HTTP_TOKEN="$NGINX_TOKEN" stow doctor --url "$NGINX_URL/bearer/doc"
expect_rc 0 && all_steps_ok && out_has "^credentials: bearer token from the environment" && out_has "^token from:  STOWAGE_HTTP_TOKEN" &&
    ok "bearer store" || fail "rc $RC: $(cat "$T/out" "$T/err")"
grep -q -- "$NGINX_TOKEN" "$T/out" "$T/err" && fail "the token was printed"
stow doctor --url "$NGINX_TLS_URL/anon/doc" --ca-bundle "$NGINX_CA"
expect_rc 0 && all_steps_ok && ok "https store with the test CA" || fail "rc $RC: $(cat "$T/out" "$T/err")"

case_begin "nginx with a wrong bearer token: fails at HEAD"
STOWAGE_HTTP_TOKEN="wrong-$NGINX_TOKEN" stow doctor --url "$NGINX_URL/bearer/doc"
expect_rc 1 && out_has "^HEAD *FAIL" && out_has "401" && out_has "doctor: FAILED at HEAD" && ! out_has "^PUT" &&
    ok "$(grep '^HEAD' "$T/out" | head -c 120)" || fail "rc $RC: $(cat "$T/out" "$T/err")"
grep -q -- "$NGINX_TOKEN" "$T/out" "$T/err" && fail "the token was printed"

case_begin "help names the command"
stow help
out_has "doctor \[options\]" && out_has "AWS_ENDPOINT_URL_S3" && ok "in stowage help" || fail "$(head -40 "$T/out")"

finish
