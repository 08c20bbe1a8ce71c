#!/usr/bin/env bash
# A store that accepts and then stalls (issue 12.6): with short limits set, restore and save
# give up within the deadline, say how long they waited, and fail open unless --strict.
# The defaults keep a stalled store from costing more than about a minute.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_nginx.sh"

mkdir -p "$T/srv"
nginx_start "$T/srv" || { echo "FAIL: cannot start nginx" >&2; exit 1; }
proxy_start "$T/srv" || { echo "FAIL: cannot start the fault proxy" >&2; exit 1; }
trap 'set +e; _lib_nginx_exit; _run_cleanups' EXIT

LIMITS=(--low-speed-timeout 1 --deadline 3 --parallel 1)
now_ms() { date +%s%3N; }
# timed ARGS...: stow with the wall time in $MS
timed() {
    local t0
    t0=$(now_ms)
    stow "$@"
    MS=$(($(now_ms) - t0))
}

case_begin "the default deadline is at most 90 s and the low-speed window fits inside it"
stow help
# the default is the number in parentheses on the line after the option's name
help_default() { awk -v o="$1" '$1 == o { getline; if (match($0, /\([0-9]+\)/)) print substr($0, RSTART + 1, RLENGTH - 2) }' "$T/out"; }
dl=$(help_default deadline)
ls=$(help_default low_speed_timeout)
if [ -z "$dl" ] || [ -z "$ls" ]; then
    fail "stowage help names no default deadline / low_speed_timeout: $(cat "$T/out")"
elif [ "$dl" -le 90 ] && [ "$ls" -lt "$dl" ]; then
    ok "deadline $dl s, low-speed window $ls s"
else
    fail "deadline $dl s, low-speed window $ls s"
fi

runner seed
mkdir -p "$HOME/c" && head -c 3000000 /dev/urandom >"$HOME/c/blob"
stow save --key st-1 --path '~/c' --url "$NGINX_URL/anon/st" --strict
expect_rc 0 && ok "seeded the store"

case_begin "restore: the layer stalls after 100 kB; --strict fails with how long it waited"
runner r1
timed restore --key st-1 --path '~/c' --url "$PROXY_URL/stallall/100000/anon/st" --strict "${LIMITS[@]}"
if expect_rc 1 && err_has "store stalled: no progress for [0-9]* s, gave up after [0-9]* s"; then
    ok "$(grep -o 'store stalled[^)]*' "$T/err" | head -1) [$MS ms]"
else
    fail "rc $RC: $(cat "$T/err")"
fi
[ "$MS" -lt 9000 ] && ok "gave up in $MS ms (deadline 3 s)" || fail "took $MS ms with a 3 s deadline"
[ ! -e "$HOME/c/blob" ] || fail "a stalled restore left a file behind"

case_begin "restore: a store that never answers; without --strict the build goes on"
runner r2
timed restore --key st-1 --path '~/c' --url "$PROXY_URL/stallhead/anon/st" "${LIMITS[@]}"
if expect_rc 0 && err_has "store stalled" && out_has "cache-hit=false"; then
    ok "fail-open after $MS ms: $(grep -o 'store stalled[^)]*' "$T/err" | head -1)"
else
    fail "rc $RC: $(cat "$T/out" "$T/err")"
fi
[ "$MS" -lt 9000 ] || fail "took $MS ms with a 3 s deadline"

case_begin "save: a store that reads the layer upload and never answers"
servers_stop_proxy() { kill "$PROXY_PID" 2>/dev/null; wait "$PROXY_PID" 2>/dev/null || true; PROXY_PID=; }
servers_stop_proxy
proxy_start "$T/srv" --all stallhead --match /layers/
runner s1
mkdir -p "$HOME/c" && head -c 500000 /dev/urandom >"$HOME/c/blob2"
timed save --key st-2 --path '~/c' --url "$PROXY_URL/anon/st" --strict "${LIMITS[@]}"
if expect_rc 1 && err_has "store stalled: no progress for [0-9]* s, gave up after [0-9]* s"; then
    ok "$(grep -o 'store stalled[^)]*' "$T/err" | head -1) [$MS ms]"
else
    fail "rc $RC: $(cat "$T/err")"
fi
[ "$MS" -lt 9000 ] || fail "took $MS ms with a 3 s deadline"
grep -q 'PUT /anon/st/layers/.* action=stallhead' "$PROXY_LOG" && ok "the layer PUT was the one that stalled" ||
    fail "no stalled layer PUT in the proxy log: $(cat "$PROXY_LOG")"

finish
