# shellcheck shell=bash
# S3-specific integration cases, shared by test_s3_s3rver.sh and test_s3_moto.sh. Source it
# after lib.sh and lib_s3.sh once a server runs (S3_* exported by lib_s3.sh).
#
#   s3_store_setup PREFIX   STOWAGE_URL=s3://$S3_BUCKET/<PREFIX, %-encoded> and the suite's
#                           store_put / store_get hooks on the decoded prefix
#   s3_proxy_start MODE [MATCH]
#                           flaky_proxy.py --all MODE in front of the server: PROXY_URL,
#                           PROXY_LOG (stopped at exit)
#   s3_case_*               one case each; they use their own prefixes
#
# '~/c' is literal on purpose (stowage expands it); "ok" never fails, so A && ok || fail is
# safe.
# shellcheck disable=SC2088,SC2015

S3_CASES_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# %-encodes a key prefix for curl paths and stowage URLs ('/' kept).
s3_pathenc() {
    python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe="/-_.~"))' "$1"
}

s3_store_setup() {
    S3_STORE_PREFIX=$1
    S3_STORE_PREFIX_ENC=$(s3_pathenc "$1")
    export STOWAGE_ENDPOINT="$S3_ENDPOINT"
    export STOWAGE_URL="s3://$S3_BUCKET/$S3_STORE_PREFIX_ENC"
}
store_put() { s3_put_file "$S3_STORE_PREFIX_ENC/$1" "$2"; }
store_get() { s3_get_file "$S3_STORE_PREFIX_ENC/$1" "$2"; }
store_del() { s3_request DELETE "/$S3_BUCKET/$S3_STORE_PREFIX_ENC/$1" -o /dev/null; }

s3_proxy_start() { # MODE [MATCH]
    local port pid
    port=$(s3_free_port)
    PROXY_LOG="$T/proxy-$port.log"
    : >"$PROXY_LOG"
    python3 "$S3_CASES_DIR/flaky_proxy.py" --port "$port" --upstream "${S3_ENDPOINT#http://}" \
        --log "$PROXY_LOG" --all "$1" ${2:+--match "$2"} >"$T/proxy-$port.out" 2>&1 &
    pid=$!
    at_exit "kill $pid 2>/dev/null; wait $pid 2>/dev/null"
    PROXY_URL="http://127.0.0.1:$port"
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    echo "FAIL: the fault proxy did not start: $(cat "$T/proxy-$port.out")" >&2
    exit 1
}

# An entry with one ~40 MB incompressible file, saved under its own prefix: its layer needs
# several 8 MiB parts. Leaves MP_URL and MP_EXPECTED for the resume case.
s3_case_multipart() {
    case_begin "multipart upload of more than one part"
    runner mp1
    mkdir -p "$HOME/c"
    head -c 40000000 /dev/urandom >"$HOME/c/blob.bin"
    echo small >"$HOME/c/small.txt"
    MP_URL="s3://$S3_BUCKET/multipart"
    MP_EXPECTED="$HOME/c"
    stow save --url "$MP_URL" --key mp-1 --path '~/c' --strict -v
    expect_rc 0 || return 0
    local parts
    parts=$(grep -o 'multipart upload complete, [0-9]* parts' "$T/err" | grep -o '[0-9]* parts' | grep -o '[0-9]*')
    [ -n "$parts" ] && [ "$parts" -ge 2 ] && ok "layer uploaded in $parts parts ($(grep -o '[0-9.]* MB/s)' "$T/err" | head -1)" ||
        fail "no multipart upload of several parts: $(grep -i 'multipart\|PUT' "$T/err" | head -5)"
    # A cold save splits files over several layers: the big file's layer is the largest.
    local layer size=0 big="" s
    for layer in $(s3_list_keys multipart | grep '^multipart/layers/'); do
        s3_get_file "$layer" "$T/mp-layer"
        s=$(stat -c %s "$T/mp-layer")
        if [ "$s" -gt "$size" ]; then size=$s big=$layer; fi
    done
    rm -f "$T/mp-layer"
    [ -n "$big" ] || { fail "no layer object in the listing"; return 0; }
    [ "$size" -gt 40000000 ] && ok "the server holds $big, $size bytes" || fail "largest layer has $size bytes"
    runner mp2
    stow restore --url "$MP_URL" --key mp-1 --path '~/c' --strict
    expect_rc 0 && cmp -s "$MP_EXPECTED/blob.bin" "$HOME/c/blob.bin" && ok "restored identically" ||
        fail "restore: $(tail -3 "$T/err")"
}

# The multipart entry again, through a proxy that resets every ranged part once after 1 MB.
s3_case_resume() {
    case_begin "ranged resume after the server drops the connection"
    [ -n "${MP_URL:-}" ] || { fail "needs s3_case_multipart first"; return 0; }
    s3_proxy_start cutparts/1000000
    runner rs1
    STOWAGE_ENDPOINT="$PROXY_URL" stow restore --url "$MP_URL" --key mp-1 --path '~/c' --strict -v
    expect_rc 0 && cmp -s "$MP_EXPECTED/blob.bin" "$HOME/c/blob.bin" && ok "restored identically through drops" ||
        fail "restore: $(grep -v debug "$T/err" | tail -3)"
    # a resumed part asks for a range that starts inside an 8 MiB part (not exactly at 1 MB:
    # the reset can drop bytes that were already on their way)
    local resumed
    resumed=$(python3 -c '
import re, sys
starts = [int(m.group(1)) for m in re.finditer(r"^GET .* range=bytes=(\d+)-", open(sys.argv[1]).read(), re.M)]
print(sum(1 for s in starts if s % 8388608))' "$PROXY_LOG")
    [ "$resumed" -ge 2 ] && err_has "with a range request" &&
        ok "$resumed dropped parts resumed with range requests" ||
        fail "no drop and resume seen ($resumed): $(head -20 "$PROXY_LOG")"
}

s3_case_unreachable() {
    case_begin "unreachable endpoint: warning and exit 0, error with --strict, fast"
    runner un
    mkdir -p "$HOME/c" && echo x >"$HOME/c/f"
    local port t0 t1
    port=$(s3_free_port) # nothing listens there
    t0=$(date +%s)
    STOWAGE_ENDPOINT="http://127.0.0.1:$port" STOWAGE_RETRIES=1 stow restore --key un-1 --path '~/c'
    expect_rc 0 && err_has "warning" && err_has "unreachable" && ok "restore fails open" || fail "$(cat "$T/err")"
    STOWAGE_ENDPOINT="http://127.0.0.1:$port" STOWAGE_RETRIES=1 stow save --key un-1 --path '~/c' --strict
    expect_rc 1 && err_has "unreachable" && ok "save --strict exits 1" || fail "check failed: err_has unreachable"
    t1=$(date +%s)
    [ $((t1 - t0)) -le 10 ] && ok "both in $((t1 - t0)) s" || fail "took $((t1 - t0)) s"
}

s3_case_no_bucket() {
    case_begin "a missing bucket is an error naming it, not a miss"
    runner nb
    mkdir -p "$HOME/c"
    stow restore --url "s3://no-such-bucket-$$/p" --key nb-1 --path '~/c' --strict
    expect_rc 1 && err_has "no-such-bucket-$$" && err_has "NoSuchBucket" && ok "$(grep -o 'bucket "[^"]*" does not exist' "$T/err")" ||
        fail "$(cat "$T/err")"
    stow restore --url "s3://no-such-bucket-$$/p" --key nb-1 --path '~/c'
    expect_rc 0 && err_has "warning" && ! err_has "restore miss" && ok "default: a warning, not a miss" ||
        fail "$(cat "$T/err")"
}

# Keys of the suite's store live under a prefix that needs %-encoding.
s3_case_encoded_keys() { # [prefix to list, default the store's]
    case_begin "keys with characters that need encoding"
    local listed
    listed=$(s3_list_keys "${1:-$S3_STORE_PREFIX}" | grep -c "^$S3_STORE_PREFIX/manifests/default/rt-1.json\$" || true)
    [ "$listed" = 1 ] && ok "the server stores \"$S3_STORE_PREFIX/manifests/...\" (URL $STOWAGE_URL)" ||
        fail "no key under \"$S3_STORE_PREFIX/\": $(s3_list_keys "${1:-$S3_STORE_PREFIX}" | head -3)"
}

# Every request of a multipart upload (each part, the completion) first gets a 503
# SlowDown: all are retried, re-signed, and the save succeeds.
s3_case_retries() {
    case_begin "503 SlowDown on every part and on the completion: retried"
    s3_proxy_start once503 uploadId=
    runner rt1
    mkdir -p "$HOME/c" && head -c 20000000 /dev/urandom >"$HOME/c/blob"
    STOWAGE_ENDPOINT="$PROXY_URL" stow save --url "s3://$S3_BUCKET/retries" --key rt-1 --path '~/c' --strict
    expect_rc 0 || return 0
    local parts503 complete503
    parts503=$(grep -c '^PUT .*partNumber=.* action=503' "$PROXY_LOG" || true)
    complete503=$(grep -c '^POST .*uploadId=.* action=503' "$PROXY_LOG" || true)
    [ "$parts503" -ge 3 ] && [ "$complete503" = 1 ] && ok "$parts503 parts and the completion retried after 503" ||
        fail "503s seen: parts $parts503, completion $complete503: $(cat "$PROXY_LOG")"
    runner rt2
    stow restore --url "s3://$S3_BUCKET/retries" --key rt-1 --path '~/c' --strict
    expect_rc 0 && cmp -s "$T/home-rt1/c/blob" "$HOME/c/blob" && ok "restored identically" || fail "$(tail -3 "$T/err")"
}
