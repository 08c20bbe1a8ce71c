#!/usr/bin/env bash
# Static checks run as a CTest test: banned functions (STYLE.md), no shelling out in the
# product, and cppcheck. (Shell scripts: tests/integration/test_shellcheck.sh.)
set -uo pipefail
cd "${STOW_TEST_SRC:-$(dirname "$0")/..}" || exit 1
fails=0
banned=$(grep -rnE '\b(sprintf|vsprintf|strcpy|strcat|strtok|atoi|atol|sscanf|gets|system|popen)[[:space:]]*\(' \
    common agent backends --include='*.c' --include='*.h' | grep -vE '^\S+:[0-9]+:\s*(/\*|\*|//)' || true)
if [ -n "$banned" ]; then
    echo "banned functions (STYLE.md: use snprintf, memcpy with checked lengths, strtol...):"
    echo "$banned"
    fails=1
else
    echo "ok: no banned functions in common/, backends/ and agent/"
fi
# Layers (docs/ARCHITECTURE.md): common <- backends <- agent. Headers are included by name
# alone ("error.h"), never through a relative path, and never from a layer above.
layer_fail=$(grep -rnE '#include[[:space:]]+"[^"]*\.\./' common backends agent tests --include='*.c' --include='*.h' || true)
for dir in common backends; do
    above="agent"
    [ "$dir" = common ] && above="agent backends"
    for up in $above; do
        for h in "$up"/*.h; do
            hits=$(grep -rnF "#include \"$(basename "$h")\"" "$dir" --include='*.c' --include='*.h' || true)
            [ -n "$hits" ] && layer_fail="$layer_fail
$hits   <- $h is in $up/, above $dir/"
        done
    done
done
if [ -n "$(echo "$layer_fail" | tr -d '[:space:]')" ]; then
    echo "includes running up the layers (common <- backends <- agent) or through ../:"
    echo "$layer_fail"
    fails=1
else
    echo "ok: includes run common <- backends <- agent only"
fi
# Formatting: .clang-format decides (STYLE.md rule 12).
if ! sh tests/format.sh; then
    echo "format: run tests/format.sh --fix"
    fails=1
else
    echo "ok: sources match .clang-format"
fi
if ! command -v cppcheck >/dev/null; then
    echo "cppcheck is not installed (tests/install-deps.sh installs it)"
    fails=1
elif ! cppcheck --quiet --error-exitcode=1 --enable=warning,portability,performance --std=c11 \
    --inline-suppr -I common -I backends -I agent common backends agent; then
    fails=1
else
    echo "ok: cppcheck clean"
fi
exit $fails
