#!/usr/bin/env bash
# Local inputs are read with a cap and only as regular files: a config file that is /dev/zero,
# a FIFO or a 2 GB file, and a restore state file replaced by a FIFO, are refused at once with
# a message naming the file (before, the first grew without bound and the others hung).
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"

# tstow ARGS...: stow with a deadline, so a hang fails the case instead of the whole run.
tstow() {
    set +e
    timeout 30 "$STOWAGE_BIN" "$@" >"$T/out" 2>"$T/err"
    RC=$?
    set -e
    if [ "$RC" -eq 124 ]; then fail "stowage $* did not finish in 30 s"; fi
    return 0
}

runner a
export STOWAGE_URL="file://$T/store"

case_begin "config file: /dev/zero"
STOWAGE_CONFIG=/dev/zero tstow key --key k
expect_rc 2 && err_has "config file /dev/zero: not a regular file" && ok "refused" || fail "$(cat "$T/err")"

case_begin "config file: a FIFO nobody writes"
mkfifo "$T/fifo.ini"
tstow key --key k --config "$T/fifo.ini"
expect_rc 2 && err_has "fifo.ini: not a regular file" && ok "refused" || fail "$(cat "$T/err")"

case_begin "config file: 2 GB (sparse)"
truncate -s 2G "$T/big.ini"
tstow key --key k --config "$T/big.ini"
expect_rc 2 && err_has "big.ini: 2147483648 bytes; the limit is 1048576" && ok "refused" || fail "$(cat "$T/err")"

case_begin "config file: a syntax error is named with its line"
printf '[storage]\nurl = file:///x\n[cache\nkey = k\n' >"$T/syntax.ini"
tstow key --config "$T/syntax.ini"
expect_rc 2 && err_has "syntax.ini:3: syntax error: section header \`\[cache\` has no closing \`\]\`" && ok "named" ||
    fail "$(cat "$T/err")"

case_begin "restore state replaced by a FIFO: save ignores it with a warning"
mkdir -p "$T/src"
echo one >"$T/src/f"
tstow save --key st-1 --path "$T/src"
expect_rc 0 && ok "first save"
tstow restore --key st-1 --path "$T/src"
expect_rc 0 && ok "restore leaves state"
state=$(find "$STOWAGE_STATE_DIR" -name '*.manifest.json' | head -n 1)
if [ -z "$state" ]; then
    fail "no state manifest under $STOWAGE_STATE_DIR"
else
    rm -f "$state"
    mkfifo "$state"
    echo two >"$T/src/g"
    tstow save --key st-2 --path "$T/src"
    expect_rc 0 && err_has "ignoring restore state: .*not a regular file" && ok "save went on without it" ||
        fail "$(cat "$T/err")"
fi

case_begin "credentials files: a FIFO as .netrc or as the AWS credentials file"
mkfifo "$T/netrc.fifo" "$T/aws.fifo"
# The HTTP store on a closed port: the point is that reading .netrc neither hangs nor is skipped silently.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
NETRC="$T/netrc.fifo" tstow restore --key k --path "$T/src" --url "http://127.0.0.1:$port/c" --retries 0
expect_rc 0 && err_has "not reading $T/netrc.fifo: .*not a regular file" && ok ".netrc FIFO refused, restore went on" ||
    fail "$(cat "$T/err")"
AWS_SHARED_CREDENTIALS_FILE="$T/aws.fifo" AWS_EC2_METADATA_DISABLED=true \
    tstow restore --key k --path "$T/src" --url "s3://b/p" --endpoint "http://127.0.0.1:$port" --retries 0 --strict
[ "$RC" -ne 0 ] && err_has "aws.fifo: not a regular file" && ok "credentials FIFO refused, named" || fail "rc=$RC $(cat "$T/err")"

finish
