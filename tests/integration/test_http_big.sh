#!/bin/bash
# A 2 GiB entry through the plain HTTP backend against a real nginx (WebDAV): streamed
# up with chunked transfer encoding from generated data, downloaded with parallel ranged
# GETs, compared by sha256; never held in memory. The size can be lowered with
# STOW_TEST_BIG_MB for quick runs. Prints the measured times (it asserts none).
set -u
: "${STOW_TEST_SRC:?STOW_TEST_SRC must point at the source tree}"
: "${STOW_TEST_BUILD:?STOW_TEST_BUILD must point at the build tree}"
bin=$STOW_TEST_BUILD/test_http
if [ ! -x "$bin" ]; then
    echo "test_http_big: $bin is not built" >&2
    exit 1
fi
mb=${STOW_TEST_BIG_MB:-2048}
free_mb=$(df -Pm "${TMPDIR:-/tmp}" | awk 'NR==2 {print $4}')
if [ "${free_mb:-0}" -lt $((mb + 512)) ]; then
    echo "test_http_big: FATAL: needs $((mb + 512)) MiB free in ${TMPDIR:-/tmp}, has ${free_mb} MiB" >&2
    exit 1
fi
exec bash "$STOW_TEST_SRC/tests/integration/with_nginx.sh" "$bin" --big
