#!/usr/bin/env bash
# docs/TRIM.md's measurement: a 10-build sequence on ephemeral runners (a fresh home every
# build) with one large package upgraded midway; prints, per build, the bytes restore
# downloads (every layer of the matched entry: the runner starts empty) and the bytes save
# uploads, with trim_unused_after = 0 (off) and = N. Prints numbers, asserts nothing.
#
#   tests/bench/trim_sequence.sh [STOWAGE_BIN] [N]
set -euo pipefail
BIN=${1:-build/stowage}
N=${2:-2}
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
W=$(mktemp -d "${TMPDIR:-/tmp}/stowage-trim-bench.XXXXXX")
trap 'rm -rf "$W"' EXIT
A=/var/cache/apt/archives
# Twenty ordinary packages read by every build, and the large one: old, then new.
mapfile -t BASE < <(find "$A" -maxdepth 1 -name '*.deb' -size +1M -size -3M | LC_ALL=C sort | head -n 20)
OLD=$(find "$A" -maxdepth 1 -name 'llvm-16-dev_*.deb' | sort | head -n 1)
NEW=$(find "$A" -maxdepth 1 -name 'llvm-19-dev_*.deb' | sort | head -n 1)
if [ "${#BASE[@]}" -lt 20 ] || [ -z "$OLD" ] || [ -z "$NEW" ]; then
    echo "needs 20 .deb files of 1-3 MB and llvm-16-dev / llvm-19-dev in $A" >&2
    exit 1
fi
UPGRADE_AT=6

PYTHONPATH="$(cd "$(dirname "$0")/../integration" && pwd)${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONPATH
layer_bytes() { python3 -c 'import manifest_json,sys; print(sum(l["size"] for l in manifest_json.load(sys.argv[1])["layers"]))' "$1"; }

run_variant() {
    local after=$1 store="$W/store-$1" i
    for i in $(seq 1 10); do
        local big=$OLD key=k-v1
        if [ "$i" -ge "$UPGRADE_AT" ]; then big=$NEW key=k-v2; fi
        export HOME="$W/home-$after-$i" STOWAGE_STATE_DIR="$W/home-$after-$i/state"
        mkdir -p "$HOME"
        local opts=(--url "file://$store" --key "$key" --restore-key k- --path '~/cache' --trim-unused-after "$after")
        "$BIN" restore "${opts[@]}" >"$W/out" 2>"$W/err"
        local matched down=0
        matched=$(sed -n 's/^cache-matched-key=//p' "$W/out")
        [ -n "$matched" ] && down=$(layer_bytes "$store/manifests/default/$matched.json")
        # The build: the package manager reads what it needs from the cache and downloads what
        # is missing into it.
        mkdir -p "$HOME/cache"
        local f
        for f in "${BASE[@]}" "$big"; do
            if [ -f "$HOME/cache/$(basename "$f")" ]; then
                cat "$HOME/cache/$(basename "$f")" >/dev/null
            else
                cp "$f" "$HOME/cache/"
            fi
        done
        "$BIN" save "${opts[@]}" >"$W/out" 2>"$W/err"
        local up
        up=$(find "$store/layers" -maxdepth 1 -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
        local trimmed
        trimmed=$(grep -o 'trimmed [0-9]* unused files ([^)]*)' "$W/err" || true)
        printf '%s\t%d\t%s\t%d\t%d\t%s\n' "$after" "$i" "$key" "$down" "$up" "${trimmed:-}"
    done
}

printf 'trim_after\tbuild\tkey\tdownloaded\tstore_layer_bytes\ttrim\n'
run_variant 0
run_variant "$N"
