# shellcheck shell=bash
# Shared helpers for integration tests. Source it; it sets -eu and a temp dir cleaned on exit.
# Tests call the real binary ($STOWAGE_BIN) and real servers; nothing is mocked.
set -euo pipefail

: "${STOWAGE_BIN:?STOWAGE_BIN must point to the stowage binary (CTest sets it)}"
: "${STOW_TEST_SRC:?STOW_TEST_SRC must point to the source tree (CTest sets it)}"
# manifest_json.py reads stored manifests of either version for the checks.
export PYTHONPATH="$STOW_TEST_SRC/tests/integration${PYTHONPATH:+:$PYTHONPATH}"

T=$(mktemp -d "${TMPDIR:-/tmp}/stowage-test.XXXXXX")
# The checks start python3 hundreds of times (JSON and tree checks, servers, free ports). A
# version-manager shim in front of it (pyenv: a bash script that runs pyenv, then the
# interpreter) costs 0.2 CPU-s per start, the system interpreter 0.04: the system one goes
# first when there is one. The tests' Python uses the standard library only.
if [ -x /usr/bin/python3 ] && [ "$(command -v python3)" != /usr/bin/python3 ]; then
    mkdir -p "$T/sys-bin" && ln -s /usr/bin/python3 "$T/sys-bin/python3" && PATH="$T/sys-bin:$PATH"
fi
_cleanups=()
at_exit() { _cleanups+=("$1"); }
_run_cleanups() {
    set +e # a failing command in an EXIT trap under set -e can hang bash 5.2
    local i
    for ((i = ${#_cleanups[@]} - 1; i >= 0; i--)); do eval "${_cleanups[$i]}" || true; done
    chmod -R u+rwX "$T" 2>/dev/null || true
    rm -rf "$T"
}
trap _run_cleanups EXIT

FAILS=0
CASE=""
# STOW_TEST_PROFILE=FILE (a cgroup's cpuacct.usage, nanoseconds): each case line also shows
# the wall seconds and the CPU seconds of that cgroup since the test started.
if [ -n "${STOW_TEST_PROFILE:-}" ]; then
    _prof_t0=$(date +%s%N) _prof_c0=$(cat "$STOW_TEST_PROFILE")
    case_begin() {
        CASE="$1"
        echo "--- $CASE [at $((($(date +%s%N) - _prof_t0) / 1000000)) ms, cpu $((($(cat "$STOW_TEST_PROFILE") - _prof_c0) / 1000000)) ms]"
    }
else
    case_begin() { CASE="$1"; echo "--- $CASE"; }
fi
fail() { echo "FAIL [$CASE]: $*" >&2; FAILS=$((FAILS + 1)); }
ok() { echo "ok [$CASE]: $*"; }
finish() {
    if [ "$FAILS" -ne 0 ]; then echo "$FAILS failure(s)" >&2; exit 1; fi
    echo "all cases passed"
}

# Isolated environment for one stowage "runner": its own HOME and state dir.
# Usage: runner NAME -> sets HOME and STOWAGE_STATE_DIR for subsequent commands.
runner() {
    export HOME="$T/home-$1"
    export STOWAGE_STATE_DIR="$HOME/.stowage-state"
    mkdir -p "$HOME"
}

# stow ARGS...: runs stowage, capturing stdout in $T/out, stderr in $T/err, status in $RC.
stow() {
    set +e
    "$STOWAGE_BIN" "$@" >"$T/out" 2>"$T/err"
    RC=$?
    set -e
    return 0
}
out_has() { grep -q -- "$1" "$T/out"; }
err_has() { grep -q -- "$1" "$T/err"; }
expect_rc() {
    if [ "$RC" -ne "$1" ]; then
        fail "expected exit $1, got $RC; stderr: $(head -c 2000 "$T/err")"
        return 1
    fi
    return 0
}

# A listing that captures type, path, size, mode, mtime (ns) and link target of every entry.
tree_listing() {
    (cd "$1" && find . -mindepth 1 -printf '%y %p %s %m %T@ %l\n' | awk '$1=="d"{$3="-"} {print}' | LC_ALL=C sort)
}
# same_tree A B: identical listings and contents.
same_tree() {
    if ! diff <(tree_listing "$1") <(tree_listing "$2") >"$T/tree.diff"; then
        fail "trees differ: $1 vs $2: $(head -20 "$T/tree.diff")"
        return 1
    fi
    if ! diff -r --no-dereference "$1" "$2" >"$T/tree.diff" 2>&1; then
        fail "contents differ: $(head -5 "$T/tree.diff")"
        return 1
    fi
    return 0
}

# A fixture tree with nested and empty directories, relative symlinks, spaces and non-ASCII
# names, empty files, unusual modes and fixed mtimes with nanoseconds.
make_fixture() {
    local d="$1"
    mkdir -p "$d/pip/wheels/sub dir" "$d/apt/lists/partial" "$d/empty/deeper/still-empty" "$d/ünïcødé"
    printf 'torch==2.7.1\n' >"$d/pip/requirements.txt"
    head -c 300000 /dev/urandom >"$d/pip/wheels/torch-fake.whl"
    head -c 70000 /dev/urandom >"$d/pip/wheels/sub dir/with space.whl"
    seq 1 20000 >"$d/apt/lists/deb.debian.org_dists_bookworm_Packages"
    : >"$d/apt/lists/partial/empty-file"
    printf 'naïve café\n' >"$d/ünïcødé/файл.txt"
    ln -s ../requirements.txt "$d/pip/wheels/req-link"
    ln -s "sub dir/with space.whl" "$d/pip/wheels/latest.whl"
    ln -s pip "$d/pip-link"
    printf '#!/bin/sh\necho hi\n' >"$d/apt/run.sh"
    chmod 0755 "$d/apt/run.sh"
    chmod 0600 "$d/pip/requirements.txt"
    chmod 0444 "$d/apt/lists/deb.debian.org_dists_bookworm_Packages"
    chmod 0700 "$d/empty/deeper"
    find "$d" -mindepth 1 -not -type l -exec touch -h -d '2024-03-04 05:06:07.123456789' {} +
    find "$d" -mindepth 1 -type l -exec touch -h -d '2023-01-02 03:04:05.5' {} +
    touch -d '2022-02-02 02:02:02.000000001' "$d/pip/wheels/torch-fake.whl"
}
