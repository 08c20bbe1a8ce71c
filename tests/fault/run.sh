#!/usr/bin/env bash
# The fault campaign: kill -9 sweeps, a faulty store, a full destination, concurrency and the
# issue-12 defects as black-box cases, against the real binary and real servers (file store,
# nginx WebDAV, moto). Prints a table per category and "N passed, N failed"; exits 1 on any
# failure. See tests/fault/README.md.
#
# Environment:
#   STOWAGE_BIN, STOW_TEST_SRC   as for the integration tests (defaults: ./build/stowage, the
#                                source tree holding this script)
#   FAULT_SEED                   seed of the kill offsets (default: from the clock; printed)
#   FAULT_KILLS                  kills per store and direction (5; kill I in the I-th fifth)
#   FAULT_CONC_ROUNDS            rounds of the concurrency case (1)
#   FAULT_ONLY                   space-separated categories to run (default: all):
#                                kill-file kill-nginx kill-s3 proxy enospc concurrency defects
# shellcheck disable=SC2088,SC2015
here=$(cd "$(dirname "$0")" && pwd)
# As root, run in a private mount namespace: the tmpfs of the enospc category then goes away
# with the run even when the run itself is killed (FAULT_NO_UNSHARE=1 to skip).
if [ "$(id -u)" = 0 ] && [ -z "${FAULT_UNSHARED:-}" ] && [ -z "${FAULT_NO_UNSHARE:-}" ] &&
    unshare -m --propagation private true 2>/dev/null; then
    FAULT_UNSHARED=1 exec unshare -m --propagation private bash "$0" "$@"
fi
: "${STOW_TEST_SRC:=$(cd "$here/../.." && pwd)}"
: "${STOWAGE_BIN:=$STOW_TEST_SRC/build/stowage}"
export STOW_TEST_SRC STOWAGE_BIN
. "$STOW_TEST_SRC/tests/integration/lib.sh"
. "$STOW_TEST_SRC/tests/integration/lib_s3.sh"
. "$STOW_TEST_SRC/tests/integration/lib_nginx.sh"
trap 'set +e; _lib_nginx_exit; s3_cleanup; _run_cleanups' EXIT
# (lib.sh puts the system python3 before a version-manager shim.)
set +e # checks count failures (lib.sh fail); one failed check must not end the campaign
. "$here/lib_fault.sh"
. "$here/kill.sh"
. "$here/proxy.sh"
. "$here/enospc.sh"
. "$here/concurrency.sh"
. "$here/defects.sh"

FAULT_SEED=${FAULT_SEED:-$(($(date +%s) % 100000))}
RANDOM=$FAULT_SEED
echo "fault campaign: seed $FAULT_SEED (replay with FAULT_SEED=$FAULT_SEED), ${FAULT_KILLS:-5} kills per store and direction"
unset STOWAGE_CONFIG GITHUB_OUTPUT
export STOWAGE_PARALLEL=2 STOWAGE_THREADS=1 # two cores shared with other work

want() { [ -z "${FAULT_ONLY:-}" ] || [[ " $FAULT_ONLY " == *" $1 "* ]]; }

NGINX_UP=0
if want kill-nginx || want proxy || want defects; then
    mkdir -p "$T/nginx"
    # nginx_start exits the shell when nginx cannot start: run it in a probe first so the
    # failure is reported as a failed category instead of a silent exit.
    if (nginx_start "$T/nginx-probe" >/dev/null 2>&1; servers_stop); then
        nginx_start "$T/nginx" && NGINX_UP=1
        trap 'set +e; _lib_nginx_exit; s3_cleanup; _run_cleanups' EXIT
    fi
fi

if want kill-file; then timed kill-file kill_sweep file; fi
if want kill-nginx; then
    if [ "$NGINX_UP" = 1 ]; then timed kill-nginx kill_sweep nginx; else cat_broken kill-nginx "nginx did not start"; fi
fi
# Against moto, whose PUT is atomic like S3's. s3rver writes an object's body straight into
# its final file, so a save killed in the middle of a manifest PUT left a truncated manifest
# there (seed 4994, 1 of 8 kills): a fault of that server, not of a real store.
if want kill-s3; then
    if s3_start_moto stowage-fault; then
        timed kill-s3 kill_sweep s3
        s3_stop
    else
        cat_broken kill-s3 "moto_server did not start"
    fi
fi
if want proxy; then
    if [ "$NGINX_UP" = 1 ]; then timed proxy proxy_cases; else cat_broken proxy "nginx did not start"; fi
fi
if want enospc; then timed enospc enospc_cases; fi
if want concurrency; then timed concurrency concurrency_cases; fi
if want defects; then timed defects defect_cases; fi

echo "seed $FAULT_SEED"
print_table || exit 1
