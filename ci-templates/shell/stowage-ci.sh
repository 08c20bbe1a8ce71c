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
# The binary, in this order: $STOWAGE_BIN (a path or a command name); the stowage release
# listed in the checksum list beside this script (ci-templates/checksums.txt) for this
# machine's arch, $STOWAGE_VERSION of it or the newest listed, taken from the cache or
# downloaded (curl or wget) from $STOWAGE_RELEASE_URL (default: the list's release-url) as
# <base>/v<version>/stowage-<version>-linux-<arch>.tar.gz, checked against the listed sha256
# and unpacked into $STOWAGE_BUILD_CACHE/<version>/<arch>/; a build of the stowage checkout
# this script sits in (ci-templates/shell/ of it; STOWAGE_VERSION=source goes straight here),
# cached in $STOWAGE_BUILD_CACHE (default ~/.cache/stowage/bin) under a sha256 of the
# sources; `stowage` on PATH. A failed download falls back to the build; a download whose
# sha256 differs is refused and never run (no fallback). Building installs missing
# Debian/Ubuntu packages with apt-get (as root, or through passwordless sudo) and compiles
# only the stowage target.
#
# Fail-open: when no binary can be had, restore and save print one warning and exit 0 (restore
# writes STOWAGE_CACHE_RESULT=error), and run runs the command without the cache; with
# --strict or STOWAGE_STRICT=true they exit 2 instead.
#
# Outputs: restore writes STOWAGE_CACHE_HIT, STOWAGE_CACHE_RESULT (hit, partial, miss, or
# error: the entry was not restored and STOWAGE_CACHE_HIT is false), STOWAGE_CACHE_PRIMARY_KEY
# and STOWAGE_CACHE_MATCHED_KEY as NAME=value lines (a dotenv file) to $STOWAGE_OUTPUT_FILE
# (default .stowage/outputs.env in the current directory) and prints stowage's own
# cache-hit=... lines. save reads the primary key back from that file, so the entry is saved
# under the key computed before the build even when the build changed the files it hashes.
#
# BuildKit cache mounts (docs/BUILDKIT.md): when STOWAGE_BUILDKIT_MOUNTS or
# STOWAGE_BUILDKIT_DOCKERFILE is set (or --buildkit-mount, --buildkit-mounts or --dockerfile
# is given), restore then runs `stowage mounts inject` and writes STOWAGE_MOUNTS_INJECTED
# (true/false) to the outputs file, and save runs `stowage mounts extract` first, only after
# an inject that happened, and only when it saves (so after a failed job only with
# STOWAGE_SAVE_ON_FAILURE). A failed transfer is a warning (strict: exit 1, after the save).
#
# Job status: save --job-status S (or $STOWAGE_JOB_STATUS) with S one of success, failed,
# canceled, or an exit status (0 = success). When the job did not succeed, save does nothing
# unless STOWAGE_SAVE_ON_FAILURE is true; it never saves a canceled job.
#
# Policy (GitLab's cache policy words): STOWAGE_POLICY=pull restores and never saves (save
# logs "read-only: not saving" and exits 0; the same as STOWAGE_READ_ONLY=true), push saves
# without restoring (restore only computes the key; outputs say miss), pull-push (default)
# does both. Trust and scopes: docs/TRUST.md.
#
# Exit status: stowage's (0 ok or fail-open warning, 1 storage error with --strict, 2 usage
# or configuration error, 3 miss with --fail-on-miss); 2 also for this script's own usage
# errors, for `bin` when no binary can be had, and with strict for the others then.
set -eu

me=stowage-ci
say() { printf '%s: %s\n' "$me" "$*" >&2; }
die() {
    say "error: $*"
    exit 2
}
# No binary can be had this way: exit 1 (find_bin runs in a subshell; callers fail open).
nobin() {
    say "$*"
    exit 1
}

# The stowage checkout this script belongs to, if any.
script_dir=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
src_root=$(CDPATH='' cd -- "$script_dir/../.." && pwd)
checksums="$script_dir/../checksums.txt"

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
        nobin "cannot build stowage: missing packages$missing and no apt-get"
    fi
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if ! command -v sudo >/dev/null 2>&1 || ! sudo -n true 2>/dev/null; then
            nobin "cannot build stowage: missing packages$missing and no root or passwordless sudo"
        fi
        sudo="sudo -n"
    fi
    say "installing build dependencies:$missing"
    started=$(date +%s)
    $sudo apt-get update -qq >&2 || nobin "cannot build stowage: apt-get update failed"
    # shellcheck disable=SC2086 # word splitting of the package list is intended
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >&2 ||
        nobin "cannot build stowage: installing$missing failed"
    say "build dependencies installed in $(($(date +%s) - started)) s"
}

cache_root() { printf '%s\n' "${STOWAGE_BUILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stowage/bin}"; }

# The release artifact's arch for this machine; fails where no Linux artifact can run.
release_arch() {
    [ "$(uname -s)" = Linux ] || return 1
    case $(uname -m) in
    x86_64 | amd64) echo x86_64 ;;
    aarch64 | arm64) echo aarch64 ;;
    *) return 1 ;;
    esac
}

# release_entry ARCH: "VERSION SHA256" of $STOWAGE_VERSION (or the newest listed) for ARCH
# from the checksum list; nothing when none is listed.
release_entry() {
    [ -f "$checksums" ] || return 0
    want=${STOWAGE_VERSION:-}
    want=${want#v}
    while read -r sum file; do
        case "$sum" in '' | \#* | release-url) continue ;; esac
        case "$file" in
        stowage-*-linux-"$1".tar.gz)
            v=${file#stowage-}
            v=${v%-linux-"$1".tar.gz}
            if [ -z "$want" ] || [ "$v" = "$want" ]; then printf '%s %s\n' "$v" "$sum"; fi
            ;;
        esac
    done <"$checksums" | sort -V | tail -n 1
}

release_base() {
    if [ -n "${STOWAGE_RELEASE_URL:-}" ]; then
        printf '%s\n' "${STOWAGE_RELEASE_URL%/}"
    elif [ -f "$checksums" ]; then
        sed -n 's|^release-url[[:space:]]\{1,\}\([^[:space:]]*\)/*[[:space:]]*$|\1|p' "$checksums" | tail -n 1
    fi
}

# fetch_release VERSION ARCH SHA256: prints bin/stowage of the release, from the cache or
# downloaded, verified and unpacked into <cache>/<version>/<arch>/. Exit 1: not available (a
# build may follow); exit 3: the download's sha256 is wrong (refused; no build may follow).
fetch_release() {
    v=$1 a=$2 want=$3
    root=$(cache_root)
    dir="$root/$v/$a"
    if [ -x "$dir/bin/stowage" ] && [ "$(cat "$dir/.stowage-release" 2>/dev/null)" = "$want" ]; then
        say "stowage $v from the cache $dir"
        printf '%s\n' "$dir/bin/stowage"
        return 0
    fi
    base=$(release_base)
    [ -n "$base" ] || nobin "no release URL for stowage $v (set STOWAGE_RELEASE_URL)"
    file="stowage-$v-linux-$a.tar.gz"
    url="$base/v$v/$file"
    mkdir -p "$root/$v" || nobin "cannot create $root/$v"
    tmp=$(mktemp -d "$root/$v/.$a.tmp-XXXXXX") || nobin "cannot create a temp dir in $root/$v"
    say "downloading $url"
    if command -v curl >/dev/null 2>&1; then
        curl -fsSL --retry 2 --connect-timeout 10 --max-time 300 -o "$tmp/$file" "$url" >&2 || {
            rm -rf "$tmp"
            nobin "could not download $url"
        }
    elif command -v wget >/dev/null 2>&1; then
        wget -q -T 30 -O "$tmp/$file" "$url" >&2 || {
            rm -rf "$tmp"
            nobin "could not download $url"
        }
    else
        rm -rf "$tmp"
        nobin "neither curl nor wget to download $url"
    fi
    got=$(sha256sum "$tmp/$file" | cut -d' ' -f1)
    if [ "$got" != "$want" ]; then
        rm -rf "$tmp"
        say "$file has sha256 $got, but the checksum list says $want: refused, not run"
        exit 3
    fi
    mkdir "$tmp/tree"
    if ! tar -xzf "$tmp/$file" -C "$tmp/tree" --strip-components=1 --no-same-owner >&2 ||
        ! "$tmp/tree/bin/stowage" --version >/dev/null 2>&1; then
        rm -rf "$tmp"
        nobin "the downloaded stowage $v does not unpack or run here"
    fi
    printf '%s\n' "$want" >"$tmp/tree/.stowage-release"
    if ! mv "$tmp/tree" "$dir" 2>/dev/null; then
        # Another job was first, or an incomplete tree is in the way.
        if [ "$(cat "$dir/.stowage-release" 2>/dev/null)" != "$want" ]; then
            rm -rf "$dir"
            mv "$tmp/tree" "$dir" || nobin "cannot move the release into $dir"
        fi
    fi
    rm -rf "$tmp"
    say "stowage $v downloaded, sha256 verified, in $dir"
    printf '%s\n' "$dir/bin/stowage"
}

# Builds the checkout once per source hash and machine architecture; prints the binary path.
build_from_source() {
    cache_root=$(cache_root)
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
    command -v cmake >/dev/null 2>&1 || nobin "cannot build stowage: no cmake"
    if ! cmake -S "$src_root" -B "$work/build" -DCMAKE_BUILD_TYPE=Release >"$work/log" 2>&1 ||
        ! cmake --build "$work/build" --target stowage -j "$jobs" >>"$work/log" 2>&1; then
        tail -n 40 "$work/log" >&2
        rm -rf "$work"
        nobin "building stowage failed (the end of the build log is above)"
    fi
    mkdir -p "$dest"
    cp "$work/build/stowage" "$dest/stowage.tmp.$$"
    mv -f "$dest/stowage.tmp.$$" "$dest/stowage"
    rm -rf "$work"
    say "built $dest/stowage in $(($(date +%s) - started)) s"
    printf '%s\n' "$dest/stowage"
}

# Prints the binary's path. Exit 2: a bad STOWAGE_BIN (a configuration error); exit 1: none
# could be had (the reasons are on stderr); exit 3: a download was refused (wrong sha256).
find_bin() {
    if [ -n "${STOWAGE_BIN:-}" ]; then
        case "$STOWAGE_BIN" in
        */*) [ -x "$STOWAGE_BIN" ] || die "STOWAGE_BIN=$STOWAGE_BIN is not an executable file" ;;
        *) command -v "$STOWAGE_BIN" >/dev/null 2>&1 || die "STOWAGE_BIN=$STOWAGE_BIN is not on PATH" ;;
        esac
        printf '%s\n' "$STOWAGE_BIN"
        return 0
    fi
    if [ "${STOWAGE_VERSION:-}" != source ] && a=$(release_arch); then
        entry=$(release_entry "$a")
        if [ -n "$entry" ]; then
            rc=0
            (fetch_release "${entry% *}" "$a" "${entry#* }") || rc=$?
            [ "$rc" -eq 0 ] && return 0
            [ "$rc" -eq 3 ] && exit 3
            say "building from source instead"
        elif [ -n "${STOWAGE_VERSION:-}" ]; then
            say "stowage $STOWAGE_VERSION is not in $checksums for $a"
        fi
    fi
    if have_source; then
        build_from_source
    elif command -v stowage >/dev/null 2>&1; then
        command -v stowage
    else
        nobin "no stowage binary: no release listed, no stowage checkout around this script, none on PATH (set STOWAGE_BIN)"
    fi
}

is_strict() {
    is_true "${STOWAGE_STRICT:-false}" && return 0
    for a in "$@"; do
        case "$a" in
        --strict) return 0 ;;
        --) return 1 ;;
        esac
    done
    return 1
}

# get_bin WHAT ARGS...: sets bin, or (no binary) prints one warning and fails; exits 2 for a
# configuration error and, with strict, for no binary.
get_bin() {
    what=$1
    shift
    rc=0
    bin=$(find_bin) || rc=$?
    [ "$rc" -eq 0 ] && return 0
    [ "$rc" -eq 2 ] && exit 2
    if is_strict "$@"; then
        say "error: no stowage binary (see above); failing ($what, strict)"
        exit 2
    fi
    say "warning: no stowage binary (see above); $what without the cache (--strict or STOWAGE_STRICT=true would fail)"
    return 1
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

# STOWAGE_POLICY: pull (read-only), push (no restore), pull-push (default).
apply_policy() {
    case "${STOWAGE_POLICY:-pull-push}" in
    pull-push | "") ;;
    pull)
        STOWAGE_READ_ONLY=true
        STOWAGE_READ_ONLY_REASON="STOWAGE_POLICY=pull"
        export STOWAGE_READ_ONLY STOWAGE_READ_ONLY_REASON
        ;;
    push) ;;
    *) die "unknown STOWAGE_POLICY \"$STOWAGE_POLICY\" (pull, push or pull-push)" ;;
    esac
}

mounts_wanted() {
    [ -n "${STOWAGE_BUILDKIT_MOUNTS:-}${STOWAGE_BUILDKIT_DOCKERFILE:-}" ] ||
        has_flag --buildkit-mount "$@" || has_flag --buildkit-mounts "$@" || has_flag --dockerfile "$@"
}

cmd_restore() {
    f=$(outputs_file)
    mkdir -p "$(dirname -- "$f")"
    if ! get_bin "the job continues" "$@"; then
        printf 'STOWAGE_CACHE_HIT=false\nSTOWAGE_CACHE_RESULT=error\nSTOWAGE_CACHE_PRIMARY_KEY=\nSTOWAGE_CACHE_MATCHED_KEY=\n' >"$f"
        echo "cache-hit=false"
        echo "cache-result=error"
        return 0
    fi
    if [ "${STOWAGE_POLICY:-}" = push ]; then
        # save only: the key is computed now (before the build), nothing is restored
        say "STOWAGE_POLICY=push: not restoring"
        primary=$("$bin" key "$@") || return $?
        printf 'STOWAGE_CACHE_HIT=false\nSTOWAGE_CACHE_RESULT=miss\nSTOWAGE_CACHE_PRIMARY_KEY=%s\nSTOWAGE_CACHE_MATCHED_KEY=\n' "$primary" >"$f"
        printf 'cache-hit=false\ncache-result=miss\ncache-primary-key=%s\ncache-matched-key=\n' "$primary"
        return 0
    fi
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
    # BuildKit cache mounts: the restored host directories into the builder.
    if [ "$rc" -eq 0 ] && mounts_wanted "$@"; then
        "$bin" mounts inject "$@" >"$out" || rc=$?
        cat "$out"
        if grep -qx 'mounts-result=done' "$out"; then inj=true; else inj=false; fi
        printf 'STOWAGE_MOUNTS_INJECTED=%s\n' "$inj" >>"$f"
    fi
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
    get_bin "not saving" "$@" || return 0
    mrc=0
    if mounts_wanted "$@"; then
        if [ "$(output_value STOWAGE_MOUNTS_INJECTED)" = true ]; then
            "$bin" mounts extract "$@" || mrc=$?
        else
            say "BuildKit cache mounts not extracted: the restore did not inject them"
        fi
    fi
    key=$(output_value STOWAGE_CACHE_PRIMARY_KEY)
    if [ -n "$key" ] && ! has_flag --key "$@"; then
        set -- --key "$key" "$@"
    fi
    "$bin" save "$@" || return $?
    return "$mrc"
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
apply_policy
case "$cmd" in
bin)
    rc=0
    (find_bin) || rc=$?
    [ "$rc" -eq 0 ] || exit 2
    ;;
restore) cmd_restore "$@" ;;
save) cmd_save "$@" ;;
run)
    [ "${STOWAGE_POLICY:-}" != push ] || die "STOWAGE_POLICY=push: use restore and save, not run"
    if get_bin "running the command" "$@"; then exec "$bin" run "$@"; fi
    while [ $# -gt 0 ] && [ "$1" != -- ]; do shift; done
    [ $# -gt 1 ] || die "run needs -- COMMAND"
    shift
    exec "$@"
    ;;
key | setup | clean)
    rc=0
    bin=$(find_bin) || rc=$?
    [ "$rc" -eq 0 ] || exit 2
    exec "$bin" "$cmd" "$@"
    ;;
help | -h | --help) usage ;;
*) die "unknown command \"$cmd\" (bin, restore, save, run, key, setup, clean, help)" ;;
esac
