#!/bin/sh
# stowage-ci.sh - run stowage from any CI runner: ephemeral cloud runners (cloud-init user
# data), Buildkite or Jenkins hooks, plain shell jobs. POSIX sh; needs only the stowage binary
# (or, to build it, a stowage source checkout around this script).
#
#   stowage-ci.sh bin                     print the path of a usable stowage binary
#   stowage-ci.sh restore [OPTIONS]       restore; write the outputs to $STOWAGE_OUTPUT_FILE
#   stowage-ci.sh save [--job-status S] [OPTIONS]
#                                         save, unless the job failed (see below)
#   stowage-ci.sh run [OPTIONS] -- CMD    restore, run CMD, save, exit with CMD's status
#   stowage-ci.sh key|setup|clean [OPTIONS]  passed through to stowage
#
# OPTIONS are stowage's own flags (stowage help); every option also has a STOWAGE_* variable
# and a stowage.ini form, which is how CI systems usually pass them.
#
# The binary, in this order: $STOWAGE_BIN (a path or a command name); a build of the stowage
# checkout this script sits in (ci-templates/shell/ of it), cached in $STOWAGE_BUILD_CACHE
# (default ~/.cache/stowage/bin) under a sha256 of the sources, so one machine builds each
# version once; `stowage` on PATH. Building installs missing Debian/Ubuntu packages with
# apt-get (as root, or through passwordless sudo) and compiles only the stowage target.
#
# Outputs: restore writes STOWAGE_CACHE_HIT, STOWAGE_CACHE_RESULT (hit, partial, miss, or
# error: the entry was not restored and STOWAGE_CACHE_HIT is false), STOWAGE_CACHE_PRIMARY_KEY
# and STOWAGE_CACHE_MATCHED_KEY as NAME=value lines (a dotenv file) to $STOWAGE_OUTPUT_FILE
# (default .stowage/outputs.env in the current directory) and prints stowage's own
# cache-hit=... lines. save reads the primary key back from that file, so the entry is saved
# under the key computed before the build even when the build changed the files it hashes.
#
# Job status: save --job-status S (or $STOWAGE_JOB_STATUS) with S one of success, failed,
# canceled, or an exit status (0 = success). When the job did not succeed, save does nothing
# unless STOWAGE_SAVE_ON_FAILURE is true; it never saves a canceled job.
#
# Exit status: stowage's (0 ok or fail-open warning, 1 storage error with --strict, 2 usage
# or configuration error, 3 miss with --fail-on-miss); 2 also for this script's own usage
# errors and when no binary can be found or built.
set -eu

me=stowage-ci
say() { printf '%s: %s\n' "$me" "$*" >&2; }
die() {
    say "error: $*"
    exit 2
}

# The stowage checkout this script belongs to, if any.
script_dir=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
src_root=$(CDPATH='' cd -- "$script_dir/../.." && pwd)

BUILD_DEPS="build-essential cmake pkg-config libcurl4-openssl-dev libarchive-dev libzstd-dev libssl-dev libinih-dev libjansson-dev libexpat1-dev"

is_true() {
    case "$1" in
    [Tt][Rr][Uu][Ee] | [Yy][Ee][Ss] | [Oo][Nn] | 1) return 0 ;;
    *) return 1 ;;
    esac
}

have_source() {
    [ -f "$src_root/CMakeLists.txt" ] && [ -f "$src_root/agent/main.c" ] &&
        grep -q 'project(stowage' "$src_root/CMakeLists.txt"
}

# sha256 over the names and contents of everything that goes into the binary.
source_hash() {
    (
        cd "$src_root"
        find CMakeLists.txt common backends agent -type f \( -name '*.c' -o -name '*.h' -o -name CMakeLists.txt \) |
            LC_ALL=C sort | while IFS= read -r f; do
            printf '%s\n' "$f"
            cat -- "$f"
        done | sha256sum | cut -c1-16
    )
}

install_build_deps() {
    missing=""
    for p in $BUILD_DEPS; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
    done
    [ -n "$missing" ] || return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        die "cannot build stowage: missing packages$missing and no apt-get; set STOWAGE_BIN to a prebuilt binary"
    fi
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if ! command -v sudo >/dev/null 2>&1 || ! sudo -n true 2>/dev/null; then
            die "cannot build stowage: missing packages$missing and no root or passwordless sudo"
        fi
        sudo="sudo -n"
    fi
    say "installing build dependencies:$missing"
    started=$(date +%s)
    $sudo apt-get update -qq >&2
    # shellcheck disable=SC2086 # word splitting of the package list is intended
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >&2
    say "build dependencies installed in $(($(date +%s) - started)) s"
}

# Builds the checkout once per source hash and machine architecture; prints the binary path.
build_from_source() {
    cache_root=${STOWAGE_BUILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stowage/bin}
    dest="$cache_root/$(source_hash)-$(uname -m)"
    if [ -x "$dest/stowage" ] && "$dest/stowage" --version >/dev/null 2>&1; then
        printf '%s\n' "$dest/stowage"
        return 0
    fi
    install_build_deps
    if [ -x "$dest/stowage" ] && "$dest/stowage" --version >/dev/null 2>&1; then
        # The cached binary only lacked its shared libraries.
        printf '%s\n' "$dest/stowage"
        return 0
    fi
    mkdir -p "$cache_root"
    work=$(mktemp -d "$cache_root/build.XXXXXX")
    say "building stowage from $src_root"
    started=$(date +%s)
    jobs=$(nproc 2>/dev/null || echo 2)
    if ! cmake -S "$src_root" -B "$work/build" -DCMAKE_BUILD_TYPE=Release >"$work/log" 2>&1 ||
        ! cmake --build "$work/build" --target stowage -j "$jobs" >>"$work/log" 2>&1; then
        tail -n 40 "$work/log" >&2
        rm -rf "$work"
        die "building stowage failed (the end of the build log is above)"
    fi
    mkdir -p "$dest"
    cp "$work/build/stowage" "$dest/stowage.tmp.$$"
    mv -f "$dest/stowage.tmp.$$" "$dest/stowage"
    rm -rf "$work"
    say "built $dest/stowage in $(($(date +%s) - started)) s"
    printf '%s\n' "$dest/stowage"
}

find_bin() {
    if [ -n "${STOWAGE_BIN:-}" ]; then
        case "$STOWAGE_BIN" in
        */*) [ -x "$STOWAGE_BIN" ] || die "STOWAGE_BIN=$STOWAGE_BIN is not an executable file" ;;
        *) command -v "$STOWAGE_BIN" >/dev/null 2>&1 || die "STOWAGE_BIN=$STOWAGE_BIN is not on PATH" ;;
        esac
        printf '%s\n' "$STOWAGE_BIN"
    elif have_source; then
        build_from_source
    elif command -v stowage >/dev/null 2>&1; then
        command -v stowage
    else
        die "no stowage binary: set STOWAGE_BIN, put stowage on PATH, or run this script from a stowage checkout"
    fi
}

outputs_file() { printf '%s\n' "${STOWAGE_OUTPUT_FILE:-.stowage/outputs.env}"; }

# Reads NAME's value from the outputs file (NAME=value lines; values never contain newlines).
output_value() {
    f=$(outputs_file)
    [ -f "$f" ] || return 0
    while IFS= read -r line; do
        case "$line" in
        "$1"=*) printf '%s\n' "${line#*=}" ;;
        esac
    done <"$f"
}

has_flag() {
    want=$1
    shift
    for a in "$@"; do
        case "$a" in
        "$want" | "$want"=*) return 0 ;;
        --) return 1 ;;
        esac
    done
    return 1
}

cmd_restore() {
    bin=$(find_bin)
    f=$(outputs_file)
    mkdir -p "$(dirname -- "$f")"
    out=$(mktemp "${TMPDIR:-/tmp}/stowage-ci.XXXXXX")
    rc=0
    "$bin" restore "$@" >"$out" || rc=$?
    cat "$out"
    # Translate stowage's cache-x=y lines into a dotenv file; a failed restore still leaves
    # the file (cache-hit=false) so later steps can read it.
    {
        hit=false result="" primary="" matched=""
        while IFS= read -r line; do
            case "$line" in
            cache-hit=*) hit=${line#*=} ;;
            cache-result=*) result=${line#*=} ;;
            cache-primary-key=*) primary=${line#*=} ;;
            cache-matched-key=*) matched=${line#*=} ;;
            esac
        done <"$out"
        # No outputs and a failure (not a --fail-on-miss miss): the entry was not restored.
        if [ -z "$result" ]; then
            if [ "$rc" -ne 0 ] && [ "$rc" -ne 3 ]; then result=error; else result=miss; fi
        fi
        [ "$result" = hit ] || hit=false
        printf 'STOWAGE_CACHE_HIT=%s\nSTOWAGE_CACHE_RESULT=%s\nSTOWAGE_CACHE_PRIMARY_KEY=%s\nSTOWAGE_CACHE_MATCHED_KEY=%s\n' \
            "$hit" "$result" "$primary" "$matched"
    } >"$f.tmp"
    mv -f "$f.tmp" "$f"
    rm -f "$out"
    return "$rc"
}

cmd_save() {
    status=${STOWAGE_JOB_STATUS:-success}
    if [ "${1:-}" = "--job-status" ]; then
        [ $# -ge 2 ] || die "--job-status needs a value"
        status=$2
        shift 2
    else
        case "${1:-}" in
        --job-status=*)
            status=${1#--job-status=}
            shift
            ;;
        esac
    fi
    case "$status" in
    success | 0) ;;
    canceled | cancelled)
        say "job canceled: not saving"
        return 0
        ;;
    failed | failure | [1-9] | [1-9][0-9] | [1-9][0-9][0-9])
        if ! is_true "${STOWAGE_SAVE_ON_FAILURE:-false}"; then
            say "job status $status: not saving (set STOWAGE_SAVE_ON_FAILURE=true to save anyway)"
            return 0
        fi
        say "job status $status: saving anyway (STOWAGE_SAVE_ON_FAILURE)"
        ;;
    *) die "unknown job status \"$status\" (success, failed, canceled or an exit status)" ;;
    esac
    bin=$(find_bin)
    key=$(output_value STOWAGE_CACHE_PRIMARY_KEY)
    if [ -n "$key" ] && ! has_flag --key "$@"; then
        set -- --key "$key" "$@"
    fi
    "$bin" save "$@"
}

usage() {
    sed -n '2,/^set -eu/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

[ $# -ge 1 ] || {
    usage >&2
    exit 2
}
cmd=$1
shift
case "$cmd" in
bin) find_bin ;;
restore) cmd_restore "$@" ;;
save) cmd_save "$@" ;;
run | key | setup | clean)
    bin=$(find_bin)
    exec "$bin" "$cmd" "$@"
    ;;
help | -h | --help) usage ;;
*) die "unknown command \"$cmd\" (bin, restore, save, run, key, setup, clean, help)" ;;
esac
