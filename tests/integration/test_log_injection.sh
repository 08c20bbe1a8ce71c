#!/usr/bin/env bash
# Names and messages from outside (the store, the environment, the config file) cannot inject
# lines into a CI log: a ref naming a key with "\n::error::" in it, a store path with a newline
# and a bad variable value are all logged on one line with the control characters escaped.
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"

# No stderr line may start with a workflow command, and no raw ESC may appear.
no_injection() {
    if grep -q '^::' "$T/err"; then
        fail "a line starts with a workflow command: $(cat "$T/err")"
    elif grep -q $'\x1b' "$T/err"; then
        fail "a raw escape character reached stderr"
    else
        ok "$1"
    fi
}

runner a
STORE="$T/store"
mkdir -p "$T/src/d"
echo hello >"$T/src/d/f"
export STOWAGE_URL="file://$STORE" STOWAGE_PATHS="$T/src/d"

case_begin "a key from a hostile ref"
stow save --key k-1 --restore-key k-
expect_rc 0 && ok "exit 0"
ref=$(find "$STORE" -path '*refs*' -type f | head -n 1)
if [ -z "$ref" ]; then
    fail "save wrote no ref under $STORE"
else
    printf '{"key": "k-\\n::error::injected\\u001b[31m"}' >"$ref"
    stow restore --key k-2 --restore-key k-
    no_injection "ref key escaped"
    # The key is not a valid key: the ref is refused before the key reaches any output.
    err_has 'refs/default/k-: not a valid ref' && ok "the hostile ref is refused" || fail "ref not refused: $(cat "$T/err")"
    grep -q 'injected' "$T/err" && fail "the hostile key reached the log: $(cat "$T/err")" || ok "the key is not printed"
fi

case_begin "a store path with a newline"
touch "$T/afile"
STOWAGE_URL="file://$T/afile/store"$'\n::error::path' stow save --key k-1 --strict
expect_rc 1 && ok "exit 1"
no_injection "store path escaped"
err_has 'store\\n::error::path' && ok "path shown escaped" || fail "path not shown: $(cat "$T/err")"

case_begin "a bad value from the environment"
STOWAGE_RETRIES=$'1\n::error::env' stow restore --key k-1
expect_rc 2 && ok "exit 2"
no_injection "environment value escaped"
err_has 'STOWAGE_RETRIES' && ok "names the variable" || fail "$(cat "$T/err")"

finish
