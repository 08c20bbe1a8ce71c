#!/usr/bin/env bash
# The integration suite against the file:// store, plus CLI and configuration behaviour.
. "$(dirname "$0")/lib.sh"
# suite.sh is checked on its own (test_shellcheck.sh); following it from each of the four
# store scripts cost shellcheck 2.4 CPU-s a script.
# shellcheck source=/dev/null
. "$(dirname "$0")/suite.sh"

STORE="$T/store"
export STOWAGE_URL="file://$STORE"
store_put() { mkdir -p "$(dirname "$STORE/$1")" && cp "$2" "$STORE/$1"; }
store_get() { cp "$STORE/$1" "$2"; }
store_del() { rm -f "$STORE/$1"; }

run_suite

case_begin "unreachable store: warning and exit 0, error with --strict"
runner u
mkdir -p "$HOME/c" && echo x >"$HOME/c/f"
echo "not a directory" >"$T/blocker"
stow save --key u-1 --path '~/c' --url "file://$T/blocker/store"
expect_rc 0 && err_has "warning" && ok "save fails open" || fail "$(cat "$T/err")"
stow save --key u-1 --path '~/c' --url "file://$T/blocker/store" --strict
expect_rc 1 && ok "save --strict exits 1"

case_begin "configuration errors name their source"
runner cfg
cat >"$T/bad.ini" <<'INI'
[storage]
url = file:///tmp/x
[cache]
key = k
colour = blue
INI
stow restore --config "$T/bad.ini"
expect_rc 2 && err_has "bad.ini:5" && err_has "colour" && ok "unknown key names file and line" || fail "$(cat "$T/err")"
printf '[cache]\nkey = k\npaths = ~/c\ncompression_level = 99\n' >"$T/bad2.ini"
stow save --config "$T/bad2.ini"
expect_rc 2 && err_has "bad2.ini:4" && err_has "compression_level" && ok "bad value names file and line" || fail "$(cat "$T/err")"
printf '[cache]\nkey = k\npaths = %s\n' "$(printf '/tmp/p%03d, ' $(seq 1 30))" >"$T/long.ini"
stow key --config "$T/long.ini"
expect_rc 2 && err_has "long.ini:3: line is" && ok "over-long line named with the fix" || fail "$(cat "$T/err")"
printf '[cache]\nkey = k\npaths = ~/a,\n    ~/b\n' >"$T/multi.ini"
stow stats --config "$T/multi.ini"
expect_rc 0 && out_has "/a " && out_has "/b " && ok "list continued on an indented line" || fail "$(cat "$T/out") $(cat "$T/err")"
stow restore --config "$T/missing.ini"
expect_rc 2 && err_has "missing.ini" && ok "missing config file named" || fail "$(cat "$T/err")"
stow restore --key k --path ~/c --frobnicate
expect_rc 2 && err_has "frobnicate" && ok "unknown flag named" || fail "$(cat "$T/err")"
STOWAGE_STRICT=maybe stow restore --key k --path ~/c
expect_rc 2 && err_has "STOWAGE_STRICT" && ok "bad environment value names the variable" || fail "$(cat "$T/err")"
stow restore --key 'bad/key' --path ~/c
expect_rc 2 && err_has "key" && ok "invalid key refused" || fail "$(cat "$T/err")"
stow restore --key 'k-{hash:no-such-file-*.txt}' --path ~/c
expect_rc 2 && err_has "no-such-file" && ok "glob without match named" || fail "$(cat "$T/err")"

case_begin "precedence: flag > environment > file"
printf '[storage]\nurl = file://%s/from-file\n[cache]\nkey = file-key\npaths = ~/c\n' "$T" >"$T/p.ini"
(cd "$T" && unset STOWAGE_URL && STOWAGE_CONFIG="$T/p.ini" "$STOWAGE_BIN" key) >"$T/k1"
(cd "$T" && STOWAGE_CONFIG="$T/p.ini" STOWAGE_KEY=env-key "$STOWAGE_BIN" key) >"$T/k2"
(cd "$T" && STOWAGE_CONFIG="$T/p.ini" STOWAGE_KEY=env-key "$STOWAGE_BIN" key --key flag-key) >"$T/k3"
[ "$(cat "$T/k1")/$(cat "$T/k2")/$(cat "$T/k3")" = "file-key/env-key/flag-key" ] && ok "key precedence" ||
    fail "got $(cat "$T/k1")/$(cat "$T/k2")/$(cat "$T/k3")"

case_begin "key templates"
mkdir -p "$T/proj/sub" && printf 'torch==2.7.1\n' >"$T/proj/requirements.txt"
(cd "$T/proj" && GITHUB_REF_NAME=feature/x "$STOWAGE_BIN" key --key 'd-{os}-{arch}-{branch}-{hash:requirements.txt}') >"$T/k"
expected="d-linux-$(uname -m | sed 's/x86_64/x64/;s/aarch64/arm64/')-feature-x-$(python3 -c 'import hashlib,sys; print(hashlib.sha256(hashlib.sha256(open(sys.argv[1],"rb").read()).digest()).hexdigest())' "$T/proj/requirements.txt")"
[ "$(cat "$T/k")" = "$expected" ] && ok "$(cat "$T/k")" || fail "key $(cat "$T/k") != $expected"

case_begin "help and version"
stow help
expect_rc 0 && { out_has "Exit status" && ok "help documents exit codes" || fail "help lacks exit codes"; }
stow --version
expect_rc 0 && { out_has "stowage 0" && ok "$(cat "$T/out")" || fail "version: $(cat "$T/out")"; }

finish
