#!/bin/sh
# The whole test suite, as CI runs it: installs what it needs, builds with -Werror and runs
# every test, then again under AddressSanitizer + UndefinedBehaviorSanitizer, then builds with
# clang -Werror and runs the fuzz harnesses briefly.
set -eu
cd "$(dirname "$0")/.."
tests/install-deps.sh
if [ -f tests/integration/s3rver/package-lock.json ]; then
    (cd tests/integration/s3rver && npm ci --no-audit --no-fund --loglevel=error)
fi
# npm tools of the CI-integration tests (action-validator, gitlab-ci-local, dockerfile-utils).
(cd tests/ci-tools && npm ci --no-audit --no-fund --loglevel=error)
JOBS=$(nproc)
echo "== build (-Wall -Wextra -Werror)"
cmake -S . -B build -DSTOW_WERROR=ON >/dev/null
cmake --build build -j"$JOBS"
# One more job than cores: the integration tests also wait on their servers and daemons.
(cd build && ctest --output-on-failure -j"$((JOBS + 1))")
echo "== build under ASan + UBSan"
cmake -S . -B build-asan -DSTOW_WERROR=ON -DSTOW_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build-asan -j"$JOBS"
# Every test that runs the C code on its own paths; left out are those that drive the same
# binary through the CI templates, shell and JS (the plain pass runs them), the fault
# campaign (kills and faulty stores: no memory-safety question the suites do not ask), the
# shell/lint checks, the release artifact (refused in sanitizer builds) and the duplicate moto
# suite (its C unit twin, integration.backends.test_s3_moto, runs) and the suite on s3rver (the
# S3 backend's C paths run in backends.test_s3 and test_s3_moto, the agent's in test_file_store).
# Keeps the suite < 10 min.
ASAN_SKIP='test_github_action|test_gitlab_template|test_shell_wrapper|test_shellcheck|test_examples'
ASAN_SKIP="$ASAN_SKIP|test_install|test_dist|test_buildkit_mounts|test_examples_docker|^fault$|^lint$|test_http_big|integration.test_s3_moto|integration.test_s3_s3rver"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --output-on-failure -j"$JOBS" -E "$ASAN_SKIP")
echo "== build with clang (-Werror) and short fuzz runs"
# Only the binary and the libFuzzer harnesses: the product code under clang's warnings, and
# each harness for a fixed number of runs over its seed corpus (tests/fuzz/README.md).
CC=clang cmake -S . -B build-clang -DSTOW_WERROR=ON -DSTOW_FUZZ=ON >/dev/null
cmake --build build-clang -j"$JOBS" --target stowage fuzz
(cd build-clang && ctest --output-on-failure -L fuzz -j"$JOBS")
echo "== all tests passed (plain, sanitized, clang + fuzz)"
