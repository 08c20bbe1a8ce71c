#!/usr/bin/env bash
# ci-templates/shell/stowage-ci.sh under dash (POSIX sh): finding the binary, restore with the
# dotenv outputs file, save gated by the job status and keyed by the restore's primary key,
# run, and the Buildkite hooks and cloud-init user data that use it.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/ci_lib.sh"
need_cmd dash

W="$STOW_TEST_SRC/ci-templates/shell/stowage-ci.sh"
export STOWAGE_URL="file://$T/store"
unset STOWAGE_KEY STOWAGE_PATHS STOWAGE_SAVE_ON_FAILURE STOWAGE_OUTPUT_FILE STOWAGE_JOB_STATUS GITHUB_OUTPUT
# w ARGS: runs the wrapper with dash in $T/job (the CI workspace).
w() {
    mkdir -p "$T/job"
    set +e
    (cd "$T/job" && dash "$W" "$@") >"$T/out" 2>"$T/err"
    RC=$?
    set -e
}
outputs() { cat "$T/job/.stowage/outputs.env" 2>/dev/null; }

case_begin "bin: STOWAGE_BIN, PATH, or an error"
w bin
expect_rc 0 && [ "$(cat "$T/out")" = "$STOWAGE_BIN" ] && ok "STOWAGE_BIN is used as given" || fail "check failed: [ (cat T/out) = STOWAGE_BIN ]"
STOWAGE_BIN="$T/nope" w bin
expect_rc 2 && err_has "is not an executable file" && ok "a bad STOWAGE_BIN is an error" || fail "check failed: err_has is not an executable file"
# A copy of the wrapper outside any stowage checkout, as on a runner image.
mkdir -p "$T/alone/bin" "$T/pathbin"
cp "$W" "$T/alone/bin/stowage-ci.sh"
ln -s "$STOWAGE_BIN" "$T/pathbin/stowage"
set +e
STOWAGE_BIN="" PATH="$T/pathbin:/usr/bin:/bin" dash "$T/alone/bin/stowage-ci.sh" bin >"$T/out" 2>"$T/err"
RC=$?
STOWAGE_BIN="" PATH="/usr/bin:/bin" dash "$T/alone/bin/stowage-ci.sh" bin >"$T/out2" 2>"$T/err2"
RC2=$?
set -e
expect_rc 0 && [ "$(cat "$T/out")" = "$T/pathbin/stowage" ] && ok "stowage on PATH" || fail "$(cat "$T/err")"
[ "$RC2" -eq 2 ] && grep -q "no stowage binary" "$T/err2" && ok "nothing found: exit 2 with a message" ||
    fail "got $RC2: $(cat "$T/err2")"

case_begin "restore writes the dotenv outputs; save uses the primary key from it"
runner r1
mkdir -p "$T/job" && printf 'torch==2.7.1\n' >"$T/job/requirements.txt"
export STOWAGE_KEY='sw-{hash:requirements.txt}' STOWAGE_PATHS='~/c' STOWAGE_RESTORE_KEYS='sw-'
KEY=$(cd "$T/job" && "$STOWAGE_BIN" key)
w restore
expect_rc 0 && out_has "cache-result=miss" && ok "stowage's own lines on stdout" || fail "check failed: out_has cache-result=miss"
[ "$(outputs)" = "$(printf 'STOWAGE_CACHE_HIT=false\nSTOWAGE_CACHE_RESULT=miss\nSTOWAGE_CACHE_PRIMARY_KEY=%s\nSTOWAGE_CACHE_MATCHED_KEY=' "$KEY")" ] &&
    ok "outputs.env" || fail "outputs.env: $(outputs)"
# The build changes the file the key hashes; the entry still goes under the key of the restore.
mkdir -p "$HOME/c" && echo built >"$HOME/c/f"
printf 'torch==2.7.1\nnumpy\n' >"$T/job/requirements.txt"
w save
expect_rc 0 && [ -f "$T/store/manifests/default/$KEY.json" ] && ok "saved under the restore's key" ||
    fail "$(cat "$T/err"); $(find "$T/store" -name '*.json')"
STOWAGE_OUTPUT_FILE="$T/elsewhere.env" w restore
expect_rc 0 && grep -q '^STOWAGE_CACHE_RESULT=partial$' "$T/elsewhere.env" && ok "STOWAGE_OUTPUT_FILE; partial match" ||
    fail "$(cat "$T/elsewhere.env" 2>/dev/null)"

case_begin "restore keeps stowage's exit status and still writes the outputs"
unset STOWAGE_RESTORE_KEYS
rm -rf "$T/job/.stowage"
w restore --key absent-1 --fail-on-miss
expect_rc 3 && grep -q '^STOWAGE_CACHE_HIT=false$' "$T/job/.stowage/outputs.env" && ok "exit 3, outputs written" || fail "check failed: grep -q '^STOWAGE_CACHE_HIT=false' T/job/.stowage/outputs.en"
w restore --key 'bad/key'
expect_rc 2 && ok "configuration error: exit 2"

case_begin "save follows the job status"
runner r2
mkdir -p "$HOME/c" && echo x >"$HOME/c/f"
rm -rf "$T/job/.stowage"
w save --job-status failed --key st-1
expect_rc 0 && err_has "not saving" && [ ! -e "$T/store/manifests/default/st-1.json" ] && ok "failed: not saved" || fail "check failed: [ ! -e T/store/manifests/default/st-1.json ]"
STOWAGE_SAVE_ON_FAILURE=true w save --job-status 1 --key st-2
expect_rc 0 && err_has "saving anyway" && [ -f "$T/store/manifests/default/st-2.json" ] && ok "exit status 1 + STOWAGE_SAVE_ON_FAILURE: saved" ||
    fail "$(cat "$T/err")"
STOWAGE_SAVE_ON_FAILURE=true w save --job-status=canceled --key st-3
expect_rc 0 && [ ! -e "$T/store/manifests/default/st-3.json" ] && ok "canceled: never saved" || fail "check failed: [ ! -e T/store/manifests/default/st-3.json ]"
STOWAGE_JOB_STATUS=0 w save --key st-4
expect_rc 0 && [ -f "$T/store/manifests/default/st-4.json" ] && ok "STOWAGE_JOB_STATUS=0: saved" || fail "check failed: [ -f T/store/manifests/default/st-4.json ]"
w save --job-status maybe --key st-5
expect_rc 2 && err_has "unknown job status" && ok "unknown status: exit 2" || fail "check failed: err_has unknown job status"

case_begin "run, help, unknown commands"
w run --key run-1 -- sh -c 'exit 4'
expect_rc 4 && ok "run passes the command's status through"
w help
expect_rc 0 && out_has "stowage-ci.sh restore" && ok "help" || fail "check failed: out_has stowage-ci.sh restore"
w frobnicate
expect_rc 2 && err_has "unknown command" && ok "unknown command: exit 2" || fail "check failed: err_has unknown command"

case_begin "Buildkite hooks around a failing and a passing command"
runner bk
mkdir -p "$HOME/c" && echo bk >"$HOME/c/f"
export STOWAGE_CI="$W" STOWAGE_KEY=bk-1
set +e
(cd "$T/job" && bash "$STOW_TEST_SRC/ci-templates/shell/buildkite/pre-command" &&
    BUILDKITE_COMMAND_EXIT_STATUS=1 bash "$STOW_TEST_SRC/ci-templates/shell/buildkite/post-command") >"$T/out" 2>"$T/err"
RC=$?
set -e
expect_rc 0 && [ ! -e "$T/store/manifests/default/bk-1.json" ] && ok "failed command: hooks pass, nothing saved" || fail "$(cat "$T/err")"
set +e
(cd "$T/job" && bash "$STOW_TEST_SRC/ci-templates/shell/buildkite/pre-command" &&
    BUILDKITE_COMMAND_EXIT_STATUS=0 bash "$STOW_TEST_SRC/ci-templates/shell/buildkite/post-command") >"$T/out" 2>"$T/err"
RC=$?
set -e
expect_rc 0 && [ -f "$T/store/manifests/default/bk-1.json" ] && ok "passed command: saved" || fail "$(cat "$T/err")"
unset STOWAGE_CI

case_begin "cloud-init user data parses and its script passes shellcheck"
node -e '
const yaml = require(process.argv[1]);
const fs = require("fs");
const text = fs.readFileSync(process.argv[2], "utf8");
if (!text.startsWith("#cloud-config\n")) throw new Error("no #cloud-config header");
const d = yaml.load(text);
const f = d.write_files.find((x) => x.path === "/usr/local/sbin/run-one-job");
fs.writeFileSync(process.argv[3], f.content);
if (!Array.isArray(d.runcmd) || !Array.isArray(d.packages)) throw new Error("runcmd/packages");
' "$STOW_TEST_SRC/tests/ci-tools/node_modules/js-yaml" "$STOW_TEST_SRC/ci-templates/shell/cloud-init.yaml" "$T/run-one-job" &&
    ok "YAML" || fail "cloud-init.yaml does not parse"
shellcheck -s sh "$T/run-one-job" >"$T/sc.out" 2>&1 && ok "run-one-job" || fail "$(cat "$T/sc.out")"

finish
