#!/usr/bin/env bash
# stowage run: restore, run the command, save; its exit status in every case (success, the
# command's own status, killed by a signal, not found, no command, restore failures), what
# it saves, and the signal forwarding to the command.
# shellcheck disable=SC2016 # the sh -c scripts expand their variables in the child shell
. "$(dirname "$0")/lib.sh"

export STOWAGE_URL="file://$T/store"
unset STOWAGE_SAVE_ON_FAILURE STOWAGE_KEY STOWAGE_PATHS GITHUB_OUTPUT

case_begin "success: the command sees the restored files, exit 0, saved"
runner a
mkdir -p "$HOME/c" && echo one >"$HOME/c/f"
stow save --key run-1 --path '~/c'
runner b
# --restore-key here too: its save writes refs/default/run-, which run-2 matches below.
stow run --key run-1 --restore-key run- --path '~/c' -- sh -c 'test "$(cat "$HOME/c/f")" = one && echo two >"$HOME/c/g"'
expect_rc 0 && out_has "cache-hit=true" && ok "exit 0 after a hit; the command read the restored file" || fail "check failed: out_has cache-hit=true"
stow run --key run-2 --restore-key run- --path '~/c' -- true
expect_rc 0 && out_has "cache-result=partial" && ok "partial restore, exit 0" || fail "check failed: out_has cache-result=partial"
runner c
stow restore --key run-2 --path '~/c'
[ "$(cat "$HOME/c/g" 2>/dev/null)" = two ] && ok "run-2 saved what the command wrote" || fail "run-2: $(cat "$T/err")"

case_begin "run saves under the key it restored with, even when the command changes the hashed file"
runner k
mkdir -p "$T/kproj" && echo a >"$T/kproj/req.txt"
(cd "$T/kproj" && stow run --key 'rk-{hash:req.txt}' --path '~/c' -- sh -c 'mkdir -p "$HOME/c" && echo x >"$HOME/c/f" && echo b >req.txt')
expect_rc 0
primary=$(sed -n 's/^cache-primary-key=//p' "$T/out")
[ -n "$primary" ] && [ -f "$T/store/manifests/default/$primary.json" ] && ok "saved as $primary" ||
    fail "not saved under cache-primary-key=$primary: $(find "$T/store/manifests" -name 'rk-*')"

case_begin "the command's status is the exit status; saved by default, not with --save-on-failure=false"
runner d
mkdir -p "$HOME/c"
stow run --key fail-7 --path '~/c' -- sh -c 'echo x >"$HOME/c/x"; exit 7'
expect_rc 7 && err_has "saving anyway" && ok "exit 7, saved anyway" || fail "$(cat "$T/err")"
[ -f "$T/store/manifests/default/fail-7.json" ] && ok "fail-7 in the store" || fail "fail-7 not saved"
stow run --key fail-8 --path '~/c' --save-on-failure=false -- sh -c 'exit 8'
expect_rc 8 && err_has "not saving" && ok "exit 8, not saved" || fail "$(cat "$T/err")"
[ ! -e "$T/store/manifests/default/fail-8.json" ] && ok "fail-8 not in the store" || fail "fail-8 saved"
STOWAGE_SAVE_ON_FAILURE=false stow run --key fail-9 --path '~/c' -- sh -c 'exit 9'
expect_rc 9 && [ ! -e "$T/store/manifests/default/fail-9.json" ] && ok "STOWAGE_SAVE_ON_FAILURE=false" ||
    fail "$(cat "$T/err")"
stow run --key fail-200 --path '~/c' -- sh -c 'exit 200'
expect_rc 200 && ok "exit 200 passes through"

case_begin "killed by a signal: 128 + N"
stow run --key sig-1 --path '~/c' --save-on-failure=false -- sh -c 'kill -KILL $$'
expect_rc 137 && ok "SIGKILL -> 137"
stow run --key sig-2 --path '~/c' --save-on-failure=false -- sh -c 'kill -TERM $$'
expect_rc 143 && ok "SIGTERM -> 143"

case_begin "SIGTERM to stowage is forwarded to the command, which can still exit cleanly"
set +e
"$STOWAGE_BIN" run --key fwd-1 --path '~/c' -- sh -c 'trap "echo got-term >'"$T"'/fwd; exit 42" TERM; touch '"$T"'/ready; while :; do sleep 0.1; done' \
    >"$T/out" 2>"$T/err" &
pid=$!
for _ in $(seq 1 100); do [ -e "$T/ready" ] && break; sleep 0.05; done
kill -TERM "$pid"
wait "$pid"
RC=$?
set -e
expect_rc 42 && [ "$(cat "$T/fwd" 2>/dev/null)" = got-term ] && ok "the command's trap ran, exit 42" ||
    fail "fwd: $(cat "$T/fwd" 2>/dev/null) $(cat "$T/err")"

case_begin "the command cannot run: 127"
stow run --key nf-1 --path '~/c' --save-on-failure=false -- /nonexistent/command arg
expect_rc 127 && err_has "/nonexistent/command" && ok "127 and named" || fail "check failed: err_has /nonexistent/command"

case_begin "no command, bad configuration, --fail-on-miss: the command does not run"
stow run --key x --path '~/c'
expect_rc 2 && err_has "needs a command" && ok "no command: exit 2" || fail "check failed: err_has needs a command"
rm -f "$T/ran"
stow run --key 'bad/key' --path '~/c' -- touch "$T/ran"
expect_rc 2 && [ ! -e "$T/ran" ] && ok "bad key: exit 2, command not run" || fail "check failed: [ ! -e T/ran ]"
stow run --key absent-1 --path '~/c' --fail-on-miss -- touch "$T/ran"
expect_rc 3 && [ ! -e "$T/ran" ] && ok "--fail-on-miss on a miss: exit 3, command not run" || fail "check failed: [ ! -e T/ran ]"
stow run --key x --path '~/c' --frobnicate -- touch "$T/ran"
expect_rc 2 && [ ! -e "$T/ran" ] && ok "unknown flag: exit 2, command not run" || fail "check failed: [ ! -e T/ran ]"

case_begin "store unusable: fail-open keeps the command's status; --strict turns the failed save into exit 1"
echo "not a directory" >"$T/blocker"
stow run --key down-1 --path '~/c' --url "file://$T/blocker/store" -- sh -c 'touch "$0"; exit 5' "$T/ran"
expect_rc 5 && [ -e "$T/ran" ] && err_has "warning" && ok "command ran, exit 5, warning logged" || fail "$(cat "$T/err")"
rm -f "$T/ran"
stow run --key down-2 --path '~/c' --url "file://$T/blocker/store" --strict -- sh -c 'touch "$0"' "$T/ran"
expect_rc 1 && [ -e "$T/ran" ] && ok "--strict: exit 1 (save failed) after the command ran" || fail "$(cat "$T/err")"

finish
