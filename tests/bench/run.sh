#!/usr/bin/env bash
# Runs the benchmark: builds a Release stowage, starts nginx and s3rver on loopback (as the
# integration tests do), and runs tests/bench/bench.py with the arguments given.
# The servers' data and the default work directory live under $TMPDIR: run it once with
# TMPDIR=/dev/shm and once with TMPDIR=/var/tmp for tmpfs and disk.
# usage: tests/bench/run.sh --corpus realistic --stores file,http [--runs 3] [--json out.jsonl]
#        tests/bench/run.sh --corpus random --size 1G --stores file,http,s3 --out docs/BENCHMARKS.md
set -euo pipefail
cd "$(dirname "$0")/../.."
SRC=$PWD
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-bench -j"$(nproc)" --target stowage >/dev/null
export STOWAGE_BIN="$SRC/build-bench/stowage" STOW_TEST_SRC="$SRC"
args=("$@")
stores="file"
for ((i = 0; i < ${#args[@]}; i++)); do
    [ "${args[$i]}" = --stores ] && stores=${args[$((i + 1))]}
done
T=$(mktemp -d "${TMPDIR:-/tmp}/stowage-bench-srv.XXXXXX")
cleanup() {
    set +e
    if declare -F _lib_nginx_exit >/dev/null; then _lib_nginx_exit; fi
    if declare -F s3_cleanup >/dev/null; then s3_cleanup; fi
    rm -rf "$T"
}
trap cleanup EXIT
if [[ $stores == *http* ]]; then
    # shellcheck source=/dev/null
    . tests/integration/lib_nginx.sh
    nginx_start "$T/nginx"
    trap cleanup EXIT
    export BENCH_HTTP_URL="$NGINX_URL/anon" BENCH_HTTP_DIR="$NGINX_ROOT/anon"
fi
if [[ $stores == *s3* ]]; then
    # shellcheck source=/dev/null
    . tests/integration/lib_s3.sh
    s3_start_s3rver bench
    trap cleanup EXIT
    export BENCH_S3_URL="s3://$S3_BUCKET" STOWAGE_ENDPOINT="$S3_ENDPOINT"
fi
python3 tests/bench/bench.py "$@"
