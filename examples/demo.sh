#!/bin/sh
# Demo: two ephemeral "runners" (two HOME directories) share a cache through a local store.
# Runner 1 misses, "builds" (fills ~/.docker-cache/pip), saves. Runner 2 restores it.
set -eu
STOWAGE=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
W=$(mktemp -d "${TMPDIR:-/tmp}/stowage-demo.XXXXXX")
trap 'rm -rf "$W"' EXIT
export STOWAGE_URL="file://$W/store"
mkdir -p "$W/project"
cd "$W/project"
printf 'torch==2.7.1\ntransformers==4.46.3\n' >requirements.txt
cat >stowage.ini <<'INI'
[cache]
key = demo-{os}-{arch}-{hash:requirements.txt}
restore_keys = demo-{os}-{arch}-
paths = ~/.docker-cache
INI

build() {
    # Stand-in for `pip download` / `apt-get install`: fill the cache only when it is empty.
    if [ -f "$HOME/.docker-cache/pip/wheels/torch.whl" ]; then
        echo "build: wheels found in ~/.docker-cache, nothing to download"
    else
        echo "build: downloading wheels (simulated: 40 MB of random data)"
        mkdir -p "$HOME/.docker-cache/pip/wheels" "$HOME/.docker-cache/apt"
        head -c 40000000 /dev/urandom >"$HOME/.docker-cache/pip/wheels/torch.whl"
        seq 1 100000 >"$HOME/.docker-cache/apt/Packages"
    fi
}

for runner in 1 2; do
    export HOME="$W/runner$runner" STOWAGE_STATE_DIR="$W/runner$runner/state"
    mkdir -p "$HOME"
    echo "== runner $runner: stowage restore"
    "$STOWAGE" restore
    echo "== runner $runner: build"
    build
    echo "== runner $runner: stowage save"
    "$STOWAGE" save
done
if cmp -s "$W/runner1/.docker-cache/pip/wheels/torch.whl" "$W/runner2/.docker-cache/pip/wheels/torch.whl"; then
    echo "demo ok: runner 2 got runner 1's cache from the store"
else
    echo "demo FAILED: runner 2 does not have runner 1's files" >&2
    exit 1
fi
