#!/usr/bin/env bash
# Benchmark for docs/BUILDKIT.md: a ~500 MB BuildKit cache mount carried between two
# ephemeral "runners" (two dockerd data roots, one file store) by stowage run. Prints the
# stowage summaries (restore, inject, extract, save) and the build step's own time with and
# without the injected mount. Needs root and Debian's docker.io + busybox-static.
# usage: STOWAGE_BIN=build/stowage tests/bench/buildkit_mounts.sh [MB]
# shellcheck disable=SC2016 # the Dockerfile's shell text is literal
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
export STOW_TEST_SRC=$SRC
: "${STOWAGE_BIN:=$SRC/build/stowage}"
export STOWAGE_BIN
MB=${1:-500}
. "$SRC/tests/integration/lib.sh"
. "$SRC/tests/integration/lib_docker.sh"
unset STOWAGE_KEY STOWAGE_PATHS STOWAGE_URL

# The "download" source: real files (>= 16 KiB: wheels, .debs, HTTP cache entries) from
# /usr/lib and /usr/share in a fixed pseudo-random order, about MB megabytes. It is the build context; the step copies what the cache
# mount lacks and pays a simulated network cost per fetched file: 20 ms + size at 50 MB/s.
data="$T/app/ctx"
mkdir -p "$data"
find /usr/lib /usr/share -xdev -type f -size +16k -printf '%s %p\n' 2>/dev/null |
    python3 -c 'import hashlib, sys
rows = [l.rstrip("\n") for l in sys.stdin]
rows.sort(key=lambda l: hashlib.sha256(l.encode()).digest())
print("\n".join(rows))' >"$T/all"
awk -v max=$((MB * 1000000)) '{ if (s + $1 > max) exit; s += $1; print substr($0, index($0, " ") + 1) }' "$T/all" >"$T/files"
(cd / && sed 's|^/||' "$T/files" | tr '\n' '\0' | xargs -0 cp --parents -t "$data")
echo "data: $(wc -l <"$T/files") files, $(du -sm "$data" | cut -f1) MB"
cat >"$T/app/Dockerfile" <<'EOF'
FROM base
RUN --mount=type=bind,target=/src --mount=type=cache,id=downloads,target=/root/.cache/dl \
    set -e; t0=$(cut -d' ' -f1 /proc/uptime); cd /src; find . -type f > /tmp/list; : > /tmp/fetched; \
    while read -r f; do \
      if [ ! -f "/root/.cache/dl/$f" ]; then mkdir -p "/root/.cache/dl/${f%/*}"; cp "$f" "/root/.cache/dl/$f"; echo "$f" >> /tmp/fetched; fi; \
    done < /tmp/list; \
    n=$(wc -l < /tmp/fetched); b=$(tr '\n' '\0' < /tmp/fetched | xargs -0 -r stat -c %s | awk '{s+=$1} END {print s+0}'); \
    sleep $(awk "BEGIN {print $n * 0.02 + $b / 50000000}"); \
    t1=$(cut -d' ' -f1 /proc/uptime); echo "STEP fetched=$n bytes=$b seconds=$(awk "BEGIN {print $t1 - $t0}")"
EOF
cat >"$T/stowage.ini" <<EOF
[storage]
url = file://$T/store
[cache]
key = bench-mounts
paths = ~/.docker-cache
[buildkit]
dockerfile = $T/app/Dockerfile
docker = $DOCKER_CLI
EOF
export STOWAGE_CONFIG="$T/stowage.ini"

one_runner() {
    local name=$1
    docker_start "$name"
    docker_import_busybox busybox
    dk tag busybox base
    runner "$name"
    local t0 t1
    t0=$(date +%s.%N)
    "$STOWAGE_BIN" run -v -- "$DOCKER_CLI" build --network none --progress plain -f "$T/app/Dockerfile" "$T/app/ctx" \
        >"$T/$name.out" 2>"$T/$name.err"
    t1=$(date +%s.%N)
    echo "== runner $name: stowage run total $(awk "BEGIN {printf \"%.1f\", $t1 - $t0}") s"
    grep -E '^stowage: (restore|save|mounts|warning)|^stowage: debug: mounts .*(packed|unpacked)|^#[0-9]+ [0-9.]+ STEP' "$T/$name.err" | sed 's/^#[0-9]* [0-9.]* //'
    echo "   host cache: $(du -sm "$HOME/.docker-cache" | cut -f1) MB"
}
one_runner r1
echo "== store: $(du -sm "$T/store" | cut -f1) MB"
one_runner r2
