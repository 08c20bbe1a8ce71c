# shellcheck shell=bash
# Helpers for the fault campaign (tests/fault/run.sh). Sourced after tests/integration/lib.sh.
#
#   att_begin CAT TEXT / att_end   one attempt of category CAT: it passed when no `fail`
#                                  happened between the two calls
#   use_store file|nginx|s3 NAME   points STOWAGE_URL (and STOWAGE_ENDPOINT) at a fresh store
#                                  named NAME; STORE_FS is its directory on disk ("" for S3)
#   store_ok                       every manifests/ object parses, every layer it names exists
#   snap DIR FILE / tree_is DIR FILE / tree_mix DIR OLD NEW / no_tmps DIR
#   rand_ms MAX                    sets R_MS to a seeded random number in [0, MAX)
# shellcheck disable=SC2034,SC2088,SC2015

FAULT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TC="$FAULT_DIR/treecheck.py"

declare -A CAT_ATT=() CAT_PASS=() CAT_FAIL=() CAT_SECS=()
CAT_ORDER=()
CUR_CAT=""
ATT_FAILS0=0

att_begin() {
    CUR_CAT=$1
    if [ -z "${CAT_ATT[$1]+x}" ]; then
        CAT_ATT[$1]=0 CAT_PASS[$1]=0 CAT_FAIL[$1]=0
        CAT_ORDER+=("$1")
    fi
    ATT_FAILS0=$FAILS
    case_begin "$1: $2"
}
att_end() {
    CAT_ATT[$CUR_CAT]=$((CAT_ATT[$CUR_CAT] + 1))
    if [ "$FAILS" -eq "$ATT_FAILS0" ]; then
        CAT_PASS[$CUR_CAT]=$((CAT_PASS[$CUR_CAT] + 1))
    else
        CAT_FAIL[$CUR_CAT]=$((CAT_FAIL[$CUR_CAT] + 1))
    fi
}
# A category that could not even set up (a server did not start): one failed attempt.
cat_broken() {
    att_begin "$1" "set-up"
    fail "$2"
    att_end
}

# timed CAT CMD...: runs CMD and adds its wall-clock seconds to CAT's row.
timed() {
    local c=$1 t0
    shift
    t0=$(date +%s)
    "$@"
    CAT_SECS[$c]=$((${CAT_SECS[$c]:-0} + $(date +%s) - t0))
}

print_table() {
    local c tp=0 tf=0
    printf '\n%-14s %8s %8s %8s %8s\n' category attempts passed failed seconds
    for c in "${CAT_ORDER[@]}"; do
        printf '%-14s %8d %8d %8d %8d\n' "$c" "${CAT_ATT[$c]}" "${CAT_PASS[$c]}" "${CAT_FAIL[$c]}" "${CAT_SECS[$c]:-0}"
        tp=$((tp + CAT_PASS[$c]))
        tf=$((tf + CAT_FAIL[$c]))
    done
    echo
    echo "$tp passed, $tf failed"
    [ "$tf" -eq 0 ]
}

ms_now() { date +%s%3N; }
rand_ms() { R_MS=$(((RANDOM * 32768 + RANDOM) % ($1 > 0 ? $1 : 1))); }
sleep_ms() { sleep "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))"; }

snap() { python3 "$TC" snap "$1" "$2"; }
tree_is() { # DIR SNAP [what]
    local d
    if ! d=$(python3 "$TC" eq "$1" "$2"); then
        fail "${3:-tree} is not the expected tree: $d"
        return 1
    fi
}
tree_mix() { # DIR OLD NEW
    local d
    if ! d=$(python3 "$TC" mix "$1" "$2" "$3"); then
        fail "destination holds files that are neither the old nor the new version: $d"
        return 1
    fi
}
no_tmps() {
    local d
    if ! d=$(python3 "$TC" tmps "$1"); then
        fail "temp files left under $1: $d"
        return 1
    fi
}
hit_true() { grep -qx 'cache-hit=true' "$T/out"; }

# ---- stores ----
use_store() { # KIND NAME
    STORE_KIND=$1
    unset STOWAGE_ENDPOINT
    case $1 in
    file)
        STORE_FS="$T/stores/$2"
        mkdir -p "$STORE_FS"
        export STOWAGE_URL="file://$STORE_FS"
        ;;
    nginx)
        STORE_FS="$NGINX_ROOT/anon/$2"
        export STOWAGE_URL="$NGINX_URL/anon/$2"
        ;;
    s3)
        STORE_FS=""
        S3_PFX=$2
        export STOWAGE_ENDPOINT="$S3_ENDPOINT"
        export STOWAGE_URL="s3://$S3_BUCKET/$2"
        ;;
    esac
}
store_get() { # NAME FILE
    if [ -n "$STORE_FS" ]; then cp "$STORE_FS/$1" "$2"; else s3_get_file "$S3_PFX/$1" "$2"; fi
}
store_put() { # NAME FILE
    if [ -n "$STORE_FS" ]; then
        mkdir -p "$(dirname "$STORE_FS/$1")" && cp "$2" "$STORE_FS/$1"
    else
        s3_put_file "$S3_PFX/$1" "$2"
    fi
}
store_keys() {
    if [ -n "$STORE_FS" ]; then
        [ -d "$STORE_FS" ] || return 0
        (cd "$STORE_FS" && find . -type f | sed 's|^\./||')
    else
        s3_list_keys "$S3_PFX/" | sed "s|^$S3_PFX/||"
    fi
}
store_snapshot() { # DIR
    local k
    rm -rf "$1" && mkdir -p "$1/obj"
    store_keys >"$1/keys.txt" || return 1
    while IFS= read -r k; do
        case $k in
        manifests/*.json)
            mkdir -p "$(dirname "$1/obj/$k")"
            store_get "$k" "$1/obj/$k" || return 1
            ;;
        esac
    done <"$1/keys.txt"
}
store_ok() {
    local d
    if ! store_snapshot "$T/snapstore"; then
        fail "cannot read the store"
        return 1
    fi
    if ! d=$(python3 "$TC" store "$T/snapstore" 2>/dev/null); then
        fail "store inconsistent: $d"
        return 1
    fi
}
store_has() { store_keys | grep -qxF "$1"; }
# Layer object names of a key's manifest, in manifest order.
layers_of() { # KEY [SCOPE]
    store_get "manifests/${2:-default}/$1.json" "$T/lo.json" &&
        python3 -c 'import sys,manifest_json; [print("layers/%s.tar.zst" % l["id"]) for l in manifest_json.load(sys.argv[1])["layers"]]' "$T/lo.json"
}
flip_byte() { # FILE: flips one bit in the middle
    python3 -c 'import sys; p=sys.argv[1]; b=bytearray(open(p,"rb").read()); b[len(b)//2]^=0x01; open(p,"wb").write(b)' "$1"
}

# ---- trees: A is the cache a job has, B the one the next job restores or saves ----
# make_tree_a DIR [NBIG]: NBIG (24) incompressible 100 kB files, 60 small text files in
# subdirectories, a symlink; about 2.5 MB.
make_tree_a() {
    local d=$1 n=${2:-24} i
    mkdir -p "$d/big" "$d/src/a" "$d/src/b"
    for i in $(seq 1 "$n"); do head -c 100000 /dev/urandom >"$d/big/f$i.bin"; done
    for i in $(seq 1 30); do
        echo "a $i $RANDOM" >"$d/src/a/t$i.txt"
        echo "b $i $RANDOM" >"$d/src/b/t$i.txt"
    done
    ln -s big/f1.bin "$d/first"
}
# mutate_tree DIR: 8 big files changed, 4 added, 2 removed, 10 small ones changed, one link
# retargeted (B = mutate_tree(A)).
mutate_tree() {
    local d=$1 i
    for i in 3 5 7 9 11 13 15 17; do head -c 100000 /dev/urandom >"$d/big/f$i.bin"; done
    for i in 1 2 3 4; do head -c 120000 /dev/urandom >"$d/big/new$i.bin"; done
    rm -f "$d/big/f20.bin" "$d/big/f21.bin"
    for i in $(seq 1 10); do echo "changed $i $RANDOM" >"$d/src/a/t$i.txt"; done
    rm -f "$d/first" && ln -s big/new1.bin "$d/first"
}

# ---- a fault proxy in --all mode in front of an upstream host:port ----
fproxy_start() { # UPSTREAM MODE [MATCH]: sets FPROXY_URL, FPROXY_LOG
    local port pid i
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    FPROXY_LOG="$T/proxy-$port.log"
    : >"$FPROXY_LOG"
    python3 "$STOW_TEST_SRC/tests/integration/flaky_proxy.py" --port "$port" --upstream "$1" \
        --log "$FPROXY_LOG" --all "$2" ${3:+--match "$3"} >"$T/proxy-$port.out" 2>&1 &
    pid=$!
    FPROXY_PID=$pid
    at_exit "kill $pid 2>/dev/null; wait $pid 2>/dev/null"
    FPROXY_URL="http://127.0.0.1:$port"
    for i in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    fail "the fault proxy did not start: $(cat "$T/proxy-$port.out")"
    return 1
}
fproxy_stop() { kill "$FPROXY_PID" 2>/dev/null; wait "$FPROXY_PID" 2>/dev/null || true; }

# lib.sh's stow turns `set -e` back on; the campaign runs without it (a failed check is
# counted, never the end of the run).
stow() {
    "$STOWAGE_BIN" "$@" >"$T/out" 2>"$T/err"
    RC=$?
    return 0
}
# stow_bounded SECS ARGS...: stow, killed (RC 137) when still running after SECS seconds.
stow_bounded() {
    local secs=$1
    shift
    timeout -s KILL "$secs" "$STOWAGE_BIN" "$@" >"$T/out" 2>"$T/err"
    RC=$?
    return 0
}
