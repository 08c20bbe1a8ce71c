#!/usr/bin/env bash
# Static checks run as a CTest test: banned functions (STYLE.md), no shelling out in the
# product, cppcheck, and shellcheck on every shell script.
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
if ! command -v shellcheck >/dev/null; then
    echo "shellcheck is not installed (tests/install-deps.sh installs it)"
    fails=1
else
    mapfile -t scripts < <(git ls-files '*.sh' .ci/run 2>/dev/null; find ci-templates examples -name '*.sh' 2>/dev/null)
    mapfile -t scripts < <(printf '%s\n' "${scripts[@]}" | sort -u | while read -r f; do [ -f "$f" ] && echo "$f"; done)
    if ! shellcheck -x -S warning "${scripts[@]}"; then
        fails=1
    else
        echo "ok: shellcheck clean on ${#scripts[@]} scripts"
    fi
fi
exit $fails
