#!/usr/bin/env bash
# Caches that stay lean (issue 18, docs/TRIM.md): a cache with packages A, B, C whose builds
# read only A and C. After trim_unused_after saves B leaves the entry and a fresh runner
# downloads less; a build that needs B again puts it back. On a noatime mount nothing is
# trimmed and the log says why; a failed build trims nothing. Run against the file store and
# against nginx (bytes from nginx's access log).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_nginx.sh"

N=2
PKG="$T/pkgs"
mkdir -p "$PKG"
# Real packages when the machine has some (already compressed, like real caches), else random
# bytes. B is the largest so that its layer is mostly dead once it goes.
pick() { find /var/cache/apt/archives /var/cache/apt/archives/partial -maxdepth 1 -name '*.deb' -size "+$1" -size "-$2" 2>/dev/null | LC_ALL=C sort | sed -n 1p; } # sed reads all: no SIGPIPE under pipefail
src_a=$(pick 1M 3M); src_b=$(pick 6M 12M); src_c=$(pick 1M 3M)
[ -n "$src_c" ] && src_c=$(find /var/cache/apt/archives -maxdepth 1 -name '*.deb' -size +1M -size -3M | LC_ALL=C sort | sed -n 2p)
for x in a:"$src_a":1500000 b:"$src_b":8000000 c:"$src_c":1200000; do
    name=${x%%:*}; rest=${x#*:}; src=${rest%:*}; size=${rest##*:}
    if [ -n "$src" ] && [ -f "$src" ]; then cp "$src" "$PKG/$name.deb"; else head -c "$size" /dev/urandom >"$PKG/$name.deb"; fi
done
echo "packages: A $(stat -c %s "$PKG/a.deb") B $(stat -c %s "$PKG/b.deb") C $(stat -c %s "$PKG/c.deb") bytes"

# seed DIR: the cache as a first build left it.
seed() {
    mkdir -p "$1/A" "$1/B" "$1/C"
    cp "$PKG/a.deb" "$1/A/"; cp "$PKG/b.deb" "$1/B/"; cp "$PKG/c.deb" "$1/C/"
}
# The build: reads A and C (a package manager verifying its cached files).
build_ac() { cat "$1/A/a.deb" "$1/C/c.deb" >/dev/null; }

# manifest_has MANIFEST PATH -> 0 when the entry lists PATH
manifest_has() {
    python3 - "$1" "$2" <<'PY'
import manifest_json, sys
m = manifest_json.load(sys.argv[1])
sys.exit(0 if any(f["p"] == sys.argv[2] for f in m["files"]) else 1)
PY
}
# layer_bytes MANIFEST -> stored bytes of its layers (what an ephemeral runner downloads)
layer_bytes() { python3 -c 'import manifest_json,sys; print(sum(l["size"] for l in manifest_json.load(sys.argv[1])["layers"]))' "$1"; }
unread_of() {
    python3 - "$1" "$2" <<'PY'
import manifest_json, sys
m = manifest_json.load(sys.argv[1])
print(next((f.get("u", 0) for f in m["files"] if f["p"] == sys.argv[2]), "absent"))
PY
}

# sequence NAME URL MANIFEST_FILE [LOGBYTES_FN]: the whole story on one store.
sequence() {
    local name=$1 url=$2 mf=$3 bytes_fn=${4:-}
    local opts=(--url "$url" --key "$name-k" --path '~/c' --trim-unused-after "$N")
    case_begin "$name: B unread for $N saves leaves the entry"
    runner "$name-seed"
    seed "$HOME/c"
    stow save "${opts[@]}"
    expect_rc 0 || return 0
    local full; full=$(layer_bytes "$mf")
    local i dl_before="" dl_after=""
    for i in $(seq 1 "$N"); do
        runner "$name-e$i" # ephemeral: a fresh home every build
        [ -n "$bytes_fn" ] && $bytes_fn reset
        stow restore "${opts[@]}"
        expect_rc 0 || return 0
        [ -n "$bytes_fn" ] && dl_before=$($bytes_fn)
        [ -f "$HOME/c/B/b.deb" ] || fail "build $i: B was not restored"
        build_ac "$HOME/c"
        stow save "${opts[@]}"
        expect_rc 0 || return 0
        if [ "$i" -lt "$N" ]; then
            manifest_has "$mf" B/b.deb && [ "$(unread_of "$mf" B/b.deb)" = "$i" ] &&
                [ "$(unread_of "$mf" A/a.deb)" = 0 ] && ok "save $i: B kept, unread $i, A read" ||
                fail "save $i: B unread $(unread_of "$mf" B/b.deb), A $(unread_of "$mf" A/a.deb)"
        fi
    done
    if manifest_has "$mf" B/b.deb; then
        fail "B still in the entry after $N saves: $(cat "$T/err")"
    else
        ok "B gone after $N saves"
    fi
    manifest_has "$mf" A/a.deb && manifest_has "$mf" C/c.deb && ok "A and C kept" || fail "A or C lost"
    err_has "trimmed 1 unused files" && ok "summary: $(grep -o 'trimmed [^)]*)' "$T/err")" ||
        fail "save does not say what it trimmed: $(cat "$T/err")"
    local lean; lean=$(layer_bytes "$mf")
    [ "$lean" -lt "$full" ] && ok "entry layers: $full -> $lean bytes" || fail "layers did not shrink: $full -> $lean"

    case_begin "$name: a fresh runner downloads less"
    runner "$name-fresh"
    [ -n "$bytes_fn" ] && $bytes_fn reset
    stow restore "${opts[@]}"
    expect_rc 0 || return 0
    [ -n "$bytes_fn" ] && dl_after=$($bytes_fn)
    [ ! -e "$HOME/c/B/b.deb" ] && [ -f "$HOME/c/A/a.deb" ] && ok "restored A and C only" || fail "B restored"
    if [ -n "$bytes_fn" ]; then
        [ "$dl_after" -lt "$dl_before" ] && ok "layer bytes served: $dl_before before, $dl_after after trimming" ||
            fail "downloads did not shrink: $dl_before -> $dl_after"
    fi
    grep -o 'restore hit:.*' "$T/err" | head -1

    case_begin "$name: a build that needs B again puts it back"
    build_ac "$HOME/c"
    mkdir -p "$HOME/c/B" && cp "$PKG/b.deb" "$HOME/c/B/" # the package manager downloads it again
    stow save "${opts[@]}"
    expect_rc 0 && manifest_has "$mf" B/b.deb && [ "$(unread_of "$mf" B/b.deb)" = 0 ] && ok "B back, unread 0" ||
        fail "B not re-populated: $(cat "$T/err")"
}

# ---------------------------------------------------------------------------- file store
STORE="$T/store"
sequence file "file://$STORE" "$STORE/manifests/default/file-k.json"

case_begin "persistent runner, trim_local = false: a trimmed file stays local but out of the entry"
P_OPTS=(--url "file://$STORE" --key pers-k --path '~/c' --trim-unused-after 1)
runner pers
seed "$HOME/c"
stow save "${P_OPTS[@]}"
stow restore "${P_OPTS[@]}"
build_ac "$HOME/c"
stow save "${P_OPTS[@]}"
manifest_has "$STORE/manifests/default/pers-k.json" B/b.deb && fail "B not trimmed with N=1"
[ -f "$HOME/c/B/b.deb" ] && ok "B left on the runner (trim_local off)" || fail "B deleted locally"
stow restore "${P_OPTS[@]}"
build_ac "$HOME/c"
echo "new" >"$HOME/c/A/new.txt"
stow save "${P_OPTS[@]}"
expect_rc 0
manifest_has "$STORE/manifests/default/pers-k.json" B/b.deb && fail "the local leftover B was uploaded again" ||
    ok "leftover B not added again: $(grep -o 'trim: .*' "$T/err" | head -1)"
cat "$HOME/c/B/b.deb" >/dev/null # a build reads it: it belongs again
stow save "${P_OPTS[@]}"
manifest_has "$STORE/manifests/default/pers-k.json" B/b.deb && ok "read leftover B is saved again" ||
    fail "read B not saved: $(cat "$T/err")"

case_begin "a file read between two restores is marked again (the warm restore re-marks what moved)"
R_OPTS=(--url "file://$STORE" --key rr-k --path '~/c' --trim-unused-after 1)
R_MF="$STORE/manifests/default/rr-k.json"
runner rr
seed "$HOME/c"
stow save "${R_OPTS[@]}"
stow restore "${R_OPTS[@]}"
cat "$HOME/c/B/b.deb" >/dev/null # a build that read B and saved nothing (cancelled)
stow restore "${R_OPTS[@]}"       # warm: everything present, B's atime moved
expect_rc 0
build_ac "$HOME/c"
stow save "${R_OPTS[@]}"
expect_rc 0 && ! manifest_has "$R_MF" B/b.deb && manifest_has "$R_MF" A/a.deb &&
    ok "B, read only before the last restore, is trimmed" || fail "B not marked again: $(cat "$T/err")"

case_begin "trim_local = true deletes the trimmed file from the runner"
runner plocal
L_OPTS=(--url "file://$STORE" --key plocal-k --path '~/c' --trim-unused-after 1 --trim-local)
seed "$HOME/c"
stow save "${L_OPTS[@]}"
stow restore "${L_OPTS[@]}"
build_ac "$HOME/c"
stow save "${L_OPTS[@]}"
[ ! -e "$HOME/c/B/b.deb" ] && [ -f "$HOME/c/A/a.deb" ] && ok "B deleted locally, A kept" || fail "trim_local: $(ls -R "$HOME/c")"

case_begin "a failed build trims nothing (stowage run, and save --build-status)"
F_OPTS=(--url "file://$STORE" --key fail-k --path '~/c' --trim-unused-after 1)
F_MF="$STORE/manifests/default/fail-k.json"
runner fseed
seed "$HOME/c"
stow save "${F_OPTS[@]}"
runner f1
# shellcheck disable=SC2016 # expanded by the build's shell
stow run "${F_OPTS[@]}" -- sh -c 'cat "$HOME/c/A/a.deb" "$HOME/c/C/c.deb" >/dev/null; exit 3'
expect_rc 3 && manifest_has "$F_MF" B/b.deb && [ "$(unread_of "$F_MF" B/b.deb)" = 0 ] && err_has "without trimming" &&
    ok "failed run: B kept, its count not advanced" || fail "failed run trimmed or counted: u=$(unread_of "$F_MF" B/b.deb) $(cat "$T/err")"
runner f2
stow restore "${F_OPTS[@]}"
build_ac "$HOME/c"
STOWAGE_BUILD_STATUS=failed stow save "${F_OPTS[@]}"
expect_rc 0 && manifest_has "$F_MF" B/b.deb && err_has "the build failed" && ok "STOWAGE_BUILD_STATUS=failed: nothing trimmed" ||
    fail "$(cat "$T/err")"
stow save "${F_OPTS[@]}" --build-status maybe
expect_rc 2 && err_has "build_status" && ok "a bad build status is a usage error" || fail "$(cat "$T/err")"
stow save "${F_OPTS[@]}" --no-trim
expect_rc 0 && manifest_has "$F_MF" B/b.deb && ok "--no-trim keeps B" || fail "--no-trim trimmed: $(cat "$T/err")"
runner f3
# shellcheck disable=SC2016 # expanded by the build's shell
stow run "${F_OPTS[@]}" -- sh -c 'cat "$HOME/c/A/a.deb" "$HOME/c/C/c.deb" >/dev/null'
expect_rc 0 && ! manifest_has "$F_MF" B/b.deb && ok "the next good run trims B" || fail "good run did not trim: $(cat "$T/err")"

case_begin "stats shows dead weight per entry"
runner dw
D_OPTS=(--url "file://$STORE" --key dw-k --path '~/c' --trim-unused-after 5)
seed "$HOME/c"
stow save "${D_OPTS[@]}"
for i in 1 2; do
    stow restore "${D_OPTS[@]}"
    build_ac "$HOME/c"
    stow save "${D_OPTS[@]}"
done
stow stats --url "file://$STORE" --path '~/c' --trim-unused-after 2 --json
python3 - "$T/out" "$(stat -c %s "$PKG/b.deb")" <<'PY' && ok "dw-k: B's bytes are dead weight over 2 builds" || fail "stats: $(cat "$T/out")"
import json, sys
s = json.load(open(sys.argv[1]))
e = next(e for e in s["entries"] if e["key"] == "dw-k")
sys.exit(0 if e["dead_bytes"] == int(sys.argv[2]) and e["dead_files"] == 1 and e["dead_after"] == 2 else 1)
PY
stow stats --url "file://$STORE" --path '~/c' --trim-unused-after 2
out_has "dead weight" && ok "$(grep 'dw-k' "$T/out" | tr -s ' ')" || fail "$(cat "$T/out")"

# ------------------------------------------------------------------------------ noatime
case_begin "noatime: nothing is trimmed and the log says why"
if [ "$(id -u)" -ne 0 ]; then
    echo "skip: mounting a noatime tmpfs needs root"
else
    mkdir -p "$T/noatime"
    mount -t tmpfs -o noatime,size=64m stowage-noatime "$T/noatime" || fail "cannot mount a tmpfs"
    at_exit "umount '$T/noatime'"
    findmnt -no OPTIONS "$T/noatime" | grep -q noatime || fail "the tmpfs is not noatime"
    NA_OPTS=(--url "file://$STORE" --key na-k --path "$T/noatime/c" --trim-unused-after 1)
    runner na
    seed "$T/noatime/c"
    stow save "${NA_OPTS[@]}"
    for i in 1 2 3; do
        [ "$i" = 3 ] || rm -rf "$T/noatime/c" # the last restore is warm
        stow restore "${NA_OPTS[@]}"
        expect_rc 0
        [ "$i" = 1 ] && { err_has "use tracking off for $T/noatime/c" && err_has "noatime" && ok "restore: $(grep -o 'use tracking off.*' "$T/err")" || fail "restore: $(cat "$T/err")"; }
        build_ac "$T/noatime/c"
        stow save "${NA_OPTS[@]}"
        expect_rc 0
    done
    manifest_has "$STORE/manifests/default/na-k.json" B/b.deb && err_has "trimming unavailable" && err_has "noatime" &&
        ok "B kept; $(grep -o 'trimming unavailable.*' "$T/err")" || fail "noatime: $(cat "$T/err")"
fi

# ---------------------------------------------------------------------------------- nginx
mkdir -p "$T/srv"
nginx_start "$T/srv" || { echo "FAIL: cannot start nginx" >&2; exit 1; }
trap 'set +e; _lib_nginx_exit; _run_cleanups' EXIT
# Bytes nginx sent for layer GETs since the last reset (access log: "GET ... 200 <bytes>").
nginx_layer_bytes() {
    if [ "${1:-}" = reset ]; then
        wc -l <"$T/srv/logs/access.log" >"$T/srv/mark"
        return 0
    fi
    tail -n +"$(($(cat "$T/srv/mark") + 1))" "$T/srv/logs/access.log" |
        awk '$6 == "\"GET" && $7 ~ /\/layers\// && ($9 == 200 || $9 == 206) { s += $10 } END { print s + 0 }'
}
sequence nginx "$NGINX_URL/anon/store" "$NGINX_ROOT/anon/store/manifests/default/nginx-k.json" nginx_layer_bytes

finish
