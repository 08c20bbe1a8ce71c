#!/usr/bin/env bash
# Benchmark for docs/BUILDKIT.md: a ~500 MB BuildKit cache mount carried between two
# ephemeral "runners" (two dockerd data roots, one file store) by stowage run. Prints the
# stowage summaries (restore, inject, extract, save), and for each step (run one at a time, as
# stowage run runs them) its wall time and CPU seconds: its own process tree and the daemon's. Needs root and Debian's docker.io + busybox-static.
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

# daemon_cpu: CPU seconds (user+sys) of this runner's dockerd and its child processes
# (containerd, and the runc processes BuildKit's executor starts, once they are reaped).
daemon_cpu() {
    local pid kids p ticks=0
    pid=$(cat "$T/docker-$RUNNER/pid")
    kids=$(cat /proc/"$pid"/task/*/children 2>/dev/null)
    for p in $pid $kids; do
        # fields 14-17 of /proc/PID/stat: utime stime cutime cstime (after the "(comm)" field)
        ticks=$((ticks + $(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12 + $13 + $14 + $15 }' || echo 0)))
    done
    awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }'
}

# phase NAME CMD...: runs one step of the flow; prints its wall time, the CPU time of its own
# process tree (stowage, the docker client, tar) and of the daemon while it ran.
phase() {
    local name=$1 d0 d1 rc=0
    shift
    d0=$(daemon_cpu)
    /usr/bin/time -f "%e %U %S" -o "$T/time" "$@" >>"$T/$RUNNER.out" 2>>"$T/$RUNNER.err" || rc=$?
    d1=$(daemon_cpu)
    read -r wall user sys <"$T/time" || true
    printf '   %-16s wall %6.1f s   CPU: client %5.1f s (user %.1f, sys %.1f), daemon %5.1f s%s\n' "$name" \
        "$wall" "$(awk "BEGIN { print $user + $sys }")" "$user" "$sys" "$(awk "BEGIN { print $d1 - $d0 }")" \
        "$([ "$rc" -eq 0 ] || echo "   (exit $rc)")"
}

one_runner() {
    local name=$1
    RUNNER=$name
    docker_start "$name"
    docker_import_busybox busybox
    dk tag busybox base
    runner "$name"
    : >"$T/$name.out"
    : >"$T/$name.err"
    echo "== runner $name (the steps of stowage run, one at a time)"
    phase restore "$STOWAGE_BIN" restore -v
    phase "mounts inject" "$STOWAGE_BIN" mounts inject -v
    phase "build step" "$DOCKER_CLI" build --network none --progress plain -f "$T/app/Dockerfile" "$T/app/ctx"
    phase "mounts extract" "$STOWAGE_BIN" mounts extract -v
    phase save "$STOWAGE_BIN" save -v
    grep -E '^stowage: (restore|save|mounts|warning)|^stowage: debug: mounts .*(packed|unpacked)|^#[0-9]+ [0-9.]+ STEP' "$T/$name.err" | sed 's/^#[0-9]* [0-9.]* //; s/^/   /'
    echo "   host cache: $(du -sm "$HOME/.docker-cache" | cut -f1) MB"
}
one_runner r1
echo "== store: $(du -sm "$T/store" | cut -f1) MB"
one_runner r2
