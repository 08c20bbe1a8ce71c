#!/usr/bin/env bash
# Measures one full save (wall, CPU seconds, peak RSS from /usr/bin/time -v) of a realistic
# tree against the file store and nginx, for comparing upload pipelines (issue 11.5).
# usage: tests/bench/save_hop.sh STOWAGE_BIN DATA_DIR [RUNS]
# DATA_DIR is a tree to save, e.g. made once with
#   mkdir -p /tmp/hopdata && cp -a /usr/lib/gcc /usr/lib/python3 /usr/lib/python3.11 \
#       /usr/lib/git-core /usr/lib/postgresql /usr/share/doc /tmp/hopdata/
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=$(readlink -f "$1")
DATA=$(readlink -f "$2")
RUNS=${3:-1}
T=$(mktemp -d "${TMPDIR:-/tmp}/stowage-hop.XXXXXX")
# shellcheck source=/dev/null
. tests/integration/lib_nginx.sh
nginx_start "$T/nginx"
one() { # label url
    local label=$1 url=$2 i
    for i in $(seq 1 "$RUNS"); do
        rm -rf "$T/state" "$T/store"
        mkdir -p "$T/state" "$T/store"
        STOWAGE_STATE_DIR="$T/state" /usr/bin/time -v -o "$T/time" \
            "$BIN" save -q --url "$url/run$i-$RANDOM" --key hop --path "$DATA" >/dev/null
        awk -v l="$label" -F': ' '
            /Elapsed \(wall/ {w=$2} /User time/ {u=$2} /System time/ {s=$2}
            /Maximum resident/ {r=$2}
            END {printf "%-6s wall %s  cpu %.1f s  peak RSS %.0f MB\n", l, w, u+s, r/1024}' "$T/time"
    done
}
one file "file://$T/store"
one http "$NGINX_URL/anon"
