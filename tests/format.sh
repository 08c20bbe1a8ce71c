#!/bin/sh
# Checks that the C sources match .clang-format (STYLE.md rule 12): exit 1 and list the files
# that clang-format would change. --count prints how many lines it would change instead
# (the measure used to tune .clang-format). --fix reformats the files in place.
set -eu
cd "$(dirname "$0")/.."
CF=${CLANG_FORMAT:-clang-format}
if ! command -v "$CF" >/dev/null 2>&1; then
    echo "format: $CF not found (apt-get install clang-format)" >&2
    exit 1
fi
mode=${1:-check}
files=$(ls common/*.[ch] backends/*.[ch] agent/*.[ch] tests/*/*.[ch] 2>/dev/null)
case "$mode" in
--fix)
    # shellcheck disable=SC2086
    "$CF" -i $files
    ;;
--count)
    total=0
    for f in $files; do
        n=$("$CF" "$f" | diff "$f" - | awk '/^</ { n++ } END { print n + 0 }')
        if [ "$n" -gt 0 ]; then echo "$n $f"; fi
        total=$((total + n))
    done
    echo "$total lines would change"
    ;;
check)
    bad=0
    for f in $files; do
        if ! "$CF" --dry-run -Werror "$f" >/dev/null 2>&1; then
            echo "format: $f differs from .clang-format (tests/format.sh --fix)"
            bad=1
        fi
    done
    if [ "$bad" -eq 0 ]; then echo "format: all files match .clang-format"; fi
    exit "$bad"
    ;;
*)
    echo "usage: tests/format.sh [--count|--fix]" >&2
    exit 2
    ;;
esac
