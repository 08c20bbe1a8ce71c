#!/usr/bin/env bash
# The integration suite against a real nginx WebDAV store (anonymous location), then the
# HTTP-specific cases: basic auth, bearer token, a download resumed after a cut connection,
# an unreachable store, and prune's refusal on a store that cannot list.
. "$(dirname "$0")/lib.sh"
# suite.sh is checked on its own (test_shellcheck.sh); following it from each of the four
# store scripts cost shellcheck 2.4 CPU-s a script.
# shellcheck source=/dev/null
. "$(dirname "$0")/suite.sh"
. "$(dirname "$0")/lib_nginx.sh"

mkdir -p "$T/srv"
nginx_start "$T/srv" || { echo "FAIL: cannot start nginx" >&2; exit 1; }
proxy_start "$T/srv" || { echo "FAIL: cannot start the fault proxy" >&2; exit 1; }
# nginx_start took the EXIT trap: run both cleanups.
trap 'set +e; _lib_nginx_exit; _run_cleanups' EXIT

export STOWAGE_URL="$NGINX_URL/anon/store"
# shellcheck disable=SC2034 # read by suite.sh
STORE_CAN_LIST=0
store_put() { curl -sSf -T "$2" "$STOWAGE_URL/$1"; }
store_get() { curl -sSf -o "$2" "$STOWAGE_URL/$1"; }
store_del() { curl -sSf -X DELETE "$STOWAGE_URL/$1" >/dev/null; }

STOW_TEST_BIG=0 run_suite

case_begin "basic auth from the URL; a wrong password is an authentication error"
runner ba
make_fixture "$HOME/c"
enc_pass=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$NGINX_PASS")
base="${NGINX_URL#http://}"
stow save --key ba-1 --path '~/c' --url "http://$NGINX_USER:$enc_pass@$base/basic/store" --strict
expect_rc 0 && ok "saved behind basic auth"
runner ba2
stow restore --key ba-1 --path '~/c' --url "http://$NGINX_USER:$enc_pass@$base/basic/store" --strict
expect_rc 0 && { out_has "cache-hit=true" || fail "not a hit: $(cat "$T/out")"; } && same_tree "$T/home-ba/c" "$HOME/c" &&
    ok "restored behind basic auth"
runner ba3
stow restore --key ba-1 --path '~/c' --url "http://$NGINX_USER:wrong@$base/basic/store" --strict
expect_rc 1 && err_has "401" && ok "wrong password: $(grep -o 'restore failed.*' "$T/err" | head -c 160)" || fail "$(cat "$T/err")"
grep -q "$NGINX_PASS\|wrong@" "$T/err" && fail "credentials leaked into the message"
out_has "cache-result=error" && out_has "cache-hit=false" && ! err_has "restore miss" && ok "reported as an error, not as a miss" || fail "$(cat "$T/out")"

case_begin "bearer token from STOWAGE_HTTP_TOKEN, or from a variable named in the config"
runner be
make_fixture "$HOME/c"
STOWAGE_HTTP_TOKEN=$NGINX_TOKEN stow save --key be-1 --path '~/c' --url "$NGINX_URL/bearer/store" --strict
expect_rc 0 && ok "saved with a bearer token"
runner be2
MY_TOKEN=$NGINX_TOKEN stow restore --key be-1 --path '~/c' --url "$NGINX_URL/bearer/store" --token-env MY_TOKEN --strict
expect_rc 0 && out_has "cache-hit=true" && ok "restored with token_env" || fail "$(cat "$T/err")"
runner be3
stow restore --key be-1 --path '~/c' --url "$NGINX_URL/bearer/store" --strict
expect_rc 1 && err_has "401" && ok "no token: authentication error" || fail "$(cat "$T/err")"
grep -q "$NGINX_TOKEN" "$T/err" && fail "token leaked into the message"

case_begin "a download cut mid-stream resumes with a range request"
runner cut
mkdir -p "$HOME/c" && head -c 3000000 /dev/urandom >"$HOME/c/blob"
stow save --key cut-1 --path '~/c' --url "$NGINX_URL/anon/cutstore" --strict
expect_rc 0
: >"$PROXY_LOG"
runner cut2
stow restore --key cut-1 --path '~/c' --url "$PROXY_URL/cut/1000000/anon/cutstore" --strict --parallel 1
expect_rc 0 && cmp -s "$HOME/c/blob" "$T/home-cut/c/blob" && ok "restored intact through a cut connection" ||
    fail "$(cat "$T/err")"
grep -q "bytes=1000000-" "$PROXY_LOG" && ok "resumed at byte 1000000" || fail "no ranged resume in: $(cat "$PROXY_LOG")"

case_begin "unreachable store: warning and exit 0; --strict exit 1"
runner un
mkdir -p "$HOME/c" && echo x >"$HOME/c/f"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start=$(date +%s)
stow restore --key un-1 --path '~/c' --url "http://127.0.0.1:$port/store"
expect_rc 0 && err_has "warning" && out_has "cache-result=error" && ok "restore fails open, reports an error" || fail "$(cat "$T/err")"
stow save --key un-1 --path '~/c' --url "http://127.0.0.1:$port/store" --strict
expect_rc 1 && ok "save --strict exits 1: $(grep -o 'save failed.*' "$T/err" | head -c 160)"
[ $(($(date +%s) - start)) -lt 30 ] && ok "gave up in $(($(date +%s) - start)) s" || fail "took too long"

case_begin "prune needs a store that can list"
stow prune --max-age 7d
expect_rc 2 && err_has "can list" && ok "clear refusal" || fail "$(cat "$T/err")"

finish
