#!/bin/sh
# build-cached.sh - build the example image with caches that survive ephemeral runners.
#
#   ./build-cached.sh build [--plain]   restore the caches, download missing wheels, build,
#                                       save what changed (stowage run; saves also when the
#                                       build fails, so downloaded wheels are kept)
#   ./build-cached.sh wheels            only download missing wheels into ~/.docker-cache/pip/wheels
#   ./build-cached.sh setup             create the cache directories and the buildx builder
#   ./build-cached.sh stats             show local and store sizes (stowage stats)
#   ./build-cached.sh clean             empty the cache directories (local only)
#   ./build-cached.sh help              this text
#
# build uses Dockerfile.wheels: wheels are downloaded on the host (in a container of the same
# Python image, so their tags match) into ~/.docker-cache/pip/wheels, handed to BuildKit as
# the named build context "wheels" and installed with pip --no-index --find-links. Image
# layers go to a buildx local cache (--cache-from/--cache-to type=local, mode=max) in
# $BUILDX_CACHE. stowage keeps both directories in its store between runners. build --plain
# uses Dockerfile instead, whose BuildKit cache mounts (apt, pip) stowage moves into the
# builder before the build and back into ~/.docker-cache/<id> after it (stowage run
# --dockerfile Dockerfile, docs/BUILDKIT.md), so their downloads are kept too.
#
# Environment: STOWAGE_URL (the store; default a local directory), STOWAGE_BIN (the stowage
# binary; default `stowage` on PATH, or a build of the checkout this script is in),
# BUILDX_CACHE (default /tmp/.buildx-cache), BUILDX_BUILDER (default stowage, created with
# the docker-container driver, which type=local cache export needs), IMAGE (default
# stowage-example:latest), PYTHON_IMAGE (default python:3.11-slim; keep it equal to FROM).
set -eu

here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
IMAGE=${IMAGE:-stowage-example:latest}
PYTHON_IMAGE=${PYTHON_IMAGE:-python:3.11-slim}
BUILDER=${BUILDX_BUILDER:-stowage}
CACHE_DIR="$HOME/.docker-cache"
export BUILDX_CACHE="${BUILDX_CACHE:-/tmp/.buildx-cache}"
export STOWAGE_CONFIG="${STOWAGE_CONFIG:-$here/stowage.ini}"

say() { printf 'build-cached: %s\n' "$*" >&2; }
die() {
    say "error: $*"
    exit 2
}

find_stowage() {
    if [ -n "${STOWAGE_BIN:-}" ]; then
        printf '%s\n' "$STOWAGE_BIN"
    elif command -v stowage >/dev/null 2>&1; then
        command -v stowage
    elif [ -f "$here/../ci-templates/shell/stowage-ci.sh" ]; then
        sh "$here/../ci-templates/shell/stowage-ci.sh" bin
    else
        die "stowage not found: put it on PATH or set STOWAGE_BIN"
    fi
}

need_docker() {
    command -v docker >/dev/null 2>&1 || die "docker is not installed"
    docker buildx version >/dev/null 2>&1 || die "docker buildx is not available (install the buildx plugin)"
}

ensure_builder() {
    if ! docker buildx inspect "$BUILDER" >/dev/null 2>&1; then
        say "creating the buildx builder $BUILDER (docker-container driver, for type=local cache export)"
        docker buildx create --name "$BUILDER" --driver docker-container >/dev/null
    fi
}

cmd_setup() {
    "$STOWAGE" setup
    mkdir -p "$CACHE_DIR/pip/wheels" "$CACHE_DIR/pip/http" "$CACHE_DIR/apt"
    if command -v docker >/dev/null 2>&1 && docker buildx version >/dev/null 2>&1; then
        ensure_builder
    else
        say "docker buildx not found: skipped creating the builder"
    fi
    say "cache directories ready under $CACHE_DIR and $BUILDX_CACHE"
}

# Downloads what requirements.txt needs into ~/.docker-cache/pip/wheels; pip skips files that
# are already there, and its HTTP cache sits beside them in pip/http.
cmd_wheels() {
    need_docker
    mkdir -p "$CACHE_DIR/pip/wheels" "$CACHE_DIR/pip/http"
    say "downloading missing wheels for requirements.txt with $PYTHON_IMAGE"
    docker run --rm --user "$(id -u):$(id -g)" --env HOME=/tmp \
        --volume "$CACHE_DIR/pip:/cache" \
        --volume "$here/requirements.txt:/requirements.txt:ro" \
        "$PYTHON_IMAGE" \
        pip download --disable-pip-version-check --cache-dir /cache/http \
        --dest /cache/wheels -r /requirements.txt
}

# The build proper (stowage run calls this between restore and save).
cmd_inner_build() {
    variant=$1
    need_docker
    ensure_builder
    set -- --builder "$BUILDER" \
        --cache-from "type=local,src=$BUILDX_CACHE" \
        --cache-to "type=local,dest=$BUILDX_CACHE,mode=max" \
        --tag "$IMAGE" --load
    if [ "$variant" = wheels ]; then
        cmd_wheels
        set -- "$@" --file Dockerfile.wheels --build-context "wheels=$CACHE_DIR/pip/wheels"
    else
        set -- "$@" --file Dockerfile
    fi
    say "docker buildx build $*"
    docker buildx build "$@" .
}

cmd_build() {
    variant=wheels
    case "${1:-}" in
    --plain) variant=plain ;;
    "") ;;
    *) die "build takes only --plain" ;;
    esac
    mkdir -p "$CACHE_DIR/pip/wheels" "$CACHE_DIR/apt" "$BUILDX_CACHE"
    # restore, build, save; the exit status is the build's. --plain: also inject the
    # Dockerfile's cache mounts before the build and extract them after it.
    if [ "$variant" = plain ]; then
        set -- --dockerfile "$here/Dockerfile" --builder "$BUILDER"
    fi
    "$STOWAGE" run "$@" -- sh "$here/build-cached.sh" _build "$variant"
}

cmd_stats() {
    # Local directory sizes and the store's entries, stored and shared bytes.
    "$STOWAGE" stats || true
    if [ -d "$CACHE_DIR/pip/wheels" ]; then
        printf '%s wheels in %s\n' "$(find "$CACHE_DIR/pip/wheels" -name '*.whl' | wc -l | tr -d ' ')" "$CACHE_DIR/pip/wheels"
    fi
    "$STOWAGE" key >/dev/null 2>&1 && printf 'key: %s\n' "$("$STOWAGE" key)"
    return 0
}

cmd_clean() {
    "$STOWAGE" clean
    say "emptied $CACHE_DIR and $BUILDX_CACHE (the store keeps its entries);"
    say "BuildKit's own cache mounts are cleared with: docker buildx prune --builder $BUILDER"
}

usage() { sed -n '2,/^set -eu/p' "$here/build-cached.sh" | sed -e '$d' -e 's/^# \{0,1\}//'; }

cmd=${1:-help}
[ $# -gt 0 ] && shift
cd "$here"
case "$cmd" in
help | -h | --help)
    usage
    exit 0
    ;;
esac
case "$cmd" in
build | setup | stats | clean) STOWAGE=$(find_stowage) ;;
esac
case "$cmd" in
build) cmd_build "$@" ;;
_build) cmd_inner_build "$@" ;;
wheels) cmd_wheels ;;
setup) cmd_setup ;;
stats) cmd_stats ;;
clean) cmd_clean ;;
*)
    usage >&2
    exit 2
    ;;
esac
