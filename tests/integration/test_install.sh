#!/usr/bin/env bash
# cmake --install puts the binary, the man page and the CI templates where users expect them;
# the man page renders and documents every flag `stowage help` lists.
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
: "${STOW_TEST_BUILD:?STOW_TEST_BUILD must point to the build directory (CTest sets it)}"

P="$T/prefix"
case_begin "cmake --install into a prefix"
if cmake --install "$STOW_TEST_BUILD" --prefix "$P" >"$T/install.log" 2>&1; then ok "installed"; else fail "$(cat "$T/install.log")"; fi
for f in bin/stowage share/man/man1/stowage.1 share/stowage/ci-templates/github/action.yml \
    share/stowage/ci-templates/github/lib/stowage.js share/stowage/ci-templates/gitlab/stowage.gitlab-ci.yml \
    share/stowage/ci-templates/shell/stowage-ci.sh; do
    [ -f "$P/$f" ] && ok "$f" || fail "$f missing"
done
[ -x "$P/bin/stowage" ] && "$P/bin/stowage" --version | grep -q '^stowage ' && ok "installed binary runs" ||
    fail "bin/stowage does not run"
[ -x "$P/share/stowage/ci-templates/shell/stowage-ci.sh" ] && ok "wrapper stays executable" || fail "wrapper not executable"
# The action finds the shell wrapper relative to itself.
[ -f "$P/share/stowage/ci-templates/github/lib/../../shell/stowage-ci.sh" ] && ok "action -> wrapper path holds" ||
    fail "the action's relative path to the wrapper is broken"

MAN="$P/share/man/man1/stowage.1"
case_begin "the man page is current and renders"
"$P/bin/stowage" help --man >"$T/fresh.1"
cmp -s "$T/fresh.1" "$MAN" && ok "installed page = stowage help --man" || fail "installed man page is stale"
head -n 1 "$MAN" | grep -q '^\.TH STOWAGE 1 ' && ok ".TH header" || fail "no .TH header: $(head -n 1 "$MAN")"
for s in NAME SYNOPSIS DESCRIPTION COMMANDS OPTIONS "EXIT STATUS"; do
    grep -q "^\.SH $s\$" "$MAN" && ok "section $s" || fail "section $s missing"
done
if command -v groff >/dev/null 2>&1; then
    groff -man -ww -z "$MAN" 2>"$T/groff.err"
    [ ! -s "$T/groff.err" ] && ok "groff: no warnings" || fail "groff warnings: $(head -20 "$T/groff.err")"
fi
if command -v man >/dev/null 2>&1; then
    MANWIDTH=120 man -l "$MAN" >"$T/man.txt" 2>"$T/man.err"
    grep -q 'STOWAGE(1)' "$T/man.txt" && grep -q 'restore-key' "$T/man.txt" && ok "man -l renders" ||
        fail "man -l: $(head -5 "$T/man.err")"
else
    echo "man not installed: rendering skipped (roff checks above still ran)"
fi

case_begin "every flag of stowage help is in the man page"
"$P/bin/stowage" help >"$T/help.txt"
sed 's/\\-/-/g' "$MAN" >"$T/man-src.txt"
n=0
missing=""
while read -r flag; do
    n=$((n + 1))
    grep -qF -- "$flag" "$T/man-src.txt" || missing="$missing $flag"
done < <(grep -oE -- '--[a-z][a-z-]*[a-z]' "$T/help.txt" | sort -u)
[ "$n" -gt 30 ] && ok "$n flags in stowage help" || fail "only $n flags found in stowage help"
[ -z "$missing" ] && ok "all in the man page" || fail "missing from the man page:$missing"

finish
