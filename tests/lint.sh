#!/usr/bin/env bash
# Static checks run as a CTest test: banned functions (STYLE.md), no shelling out in the
# product, and cppcheck. (Shell scripts: tests/integration/test_shellcheck.sh.)
set -uo pipefail
cd "${STOW_TEST_SRC:-$(dirname "$0")/..}" || exit 1
fails=0
banned=$(grep -rnE '\b(sprintf|vsprintf|strcpy|strcat|strtok|atoi|atol|sscanf|gets|system|popen)[[:space:]]*\(' \
    agent backends --include='*.c' --include='*.h' | grep -vE '^\S+:[0-9]+:\s*(/\*|\*|//)' || true)
if [ -n "$banned" ]; then
    echo "banned functions (STYLE.md: use snprintf, memcpy with checked lengths, strtol...):"
    echo "$banned"
    fails=1
else
    echo "ok: no banned functions in agent/ and backends/"
fi
if ! command -v cppcheck >/dev/null; then
    echo "cppcheck is not installed (tests/install-deps.sh installs it)"
    fails=1
elif ! cppcheck --quiet --error-exitcode=1 --enable=warning,portability,performance --std=c11 \
    --inline-suppr -I agent -I backends agent backends; then
    fails=1
else
    echo "ok: cppcheck clean"
fi
exit $fails
