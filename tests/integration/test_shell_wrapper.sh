#!/usr/bin/env bash
# ci-templates/shell/stowage-ci.sh under dash (POSIX sh): finding the binary, restore with the
# dotenv outputs file, save gated by the job status and keyed by the restore's primary key,
# run, and the Buildkite hooks and cloud-init user data that use it. The bootstrap: a copy of
# the wrapper whose checksum list names this build's dist tarball downloads it from a local
# nginx, verifies and caches it; a corrupted download is refused (a warning, outputs say
# error; strict fails); an unreachable server falls back to a build, and without cmake to a
# warning; run still runs the command.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/ci_lib.sh"
. "$(dirname "$0")/lib_nginx.sh"
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
set +e
(cd "$T" && STOWAGE_BIN="" PATH="/usr/bin:/bin" dash "$T/alone/bin/stowage-ci.sh" restore --key k-1 --path "$T/x") >"$T/out3" 2>"$T/err3"
RC3=$?
(cd "$T" && STOWAGE_BIN="" STOWAGE_STRICT=true PATH="/usr/bin:/bin" dash "$T/alone/bin/stowage-ci.sh" restore --key k-1) >/dev/null 2>"$T/err4"
RC4=$?
set -e
[ "$RC3" -eq 0 ] && grep -q '^STOWAGE_CACHE_RESULT=error$' "$T/.stowage/outputs.env" && [ "$(grep -c 'warning:' "$T/err3")" = 1 ] &&
    ok "restore without a binary: one warning, exit 0, result error" || fail "got $RC3: $(cat "$T/err3")"
[ "$RC4" -eq 2 ] && grep -q "strict" "$T/err4" && ok "the same with STOWAGE_STRICT=true: exit 2" || fail "got $RC4: $(cat "$T/err4")"

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

case_begin "STOWAGE_POLICY: pull restores and never saves, push saves without restoring"
runner pol
mkdir -p "$HOME/c" && echo pol >"$HOME/c/f"
rm -rf "$T/job/.stowage"
w save --key pol-1
expect_rc 0 && [ -f "$T/store/manifests/default/pol-1.json" ] || fail "seed: $(cat "$T/err")"
before=$(cd "$T/store" && find . -type f | LC_ALL=C sort)
rm -rf "$HOME/c"
STOWAGE_POLICY=pull w restore --key pol-1
expect_rc 0 && [ "$(cat "$HOME/c/f")" = pol ] && ok "pull: restored" || fail "$(cat "$T/err")"
echo changed >"$HOME/c/f"
STOWAGE_POLICY=pull w save --key pol-2
expect_rc 0 && err_has "read-only: not saving (STOWAGE_POLICY=pull" && ok "pull: save logs read-only, exit 0" || fail "$(cat "$T/err")"
STOWAGE_READ_ONLY=true w save --key pol-2
expect_rc 0 && err_has "read-only: not saving" && ok "STOWAGE_READ_ONLY=true: the same" || fail "$(cat "$T/err")"
[ "$before" = "$(cd "$T/store" && find . -type f | LC_ALL=C sort)" ] && ok "store unchanged" || fail "the store changed"
runner pol2
STOWAGE_POLICY=push w restore --key pol-1
expect_rc 0 && err_has "STOWAGE_POLICY=push: not restoring" && [ ! -e "$HOME/c/f" ] &&
    grep -q '^STOWAGE_CACHE_RESULT=miss$' "$T/job/.stowage/outputs.env" && grep -q '^STOWAGE_CACHE_PRIMARY_KEY=pol-1$' "$T/job/.stowage/outputs.env" &&
    ok "push: nothing restored, the key in the outputs" || fail "$(cat "$T/err"; cat "$T/job/.stowage/outputs.env")"
mkdir -p "$HOME/c" && echo pushed >"$HOME/c/f"
STOWAGE_POLICY=push w save
expect_rc 0 && ! err_has "read-only" && ok "push: saved" || fail "$(cat "$T/err")"
STOWAGE_POLICY=sideways w restore --key pol-1
expect_rc 2 && err_has "unknown STOWAGE_POLICY" && ok "unknown policy: exit 2" || fail "$RC $(cat "$T/err")"

case_begin "BuildKit mounts: restore injects, save extracts first, following the job status"
# The order and arguments of the calls, with a stand-in docker client (ci_lib.sh
# mounts_stubs); the transfer against a real engine is test_buildkit_mounts.sh.
mounts_stubs
runner rm1
mkdir -p "$HOME/.docker-cache/pip" && echo whl >"$HOME/.docker-cache/pip/a.whl"
rm -rf "$T/job/.stowage"
mw() { STOWAGE_BIN="$MOUNTS_STOWAGE" STOWAGE_DOCKER="$MOUNTS_DOCKER" STOWAGE_PATHS='~/.docker-cache' w "$@"; }
: >"$MOUNTS_CALLS"
STOWAGE_BUILDKIT_MOUNTS=pip:/root/.cache/pip mw restore --key swm-1
expect_rc 0 && grep -qx 'STOWAGE_MOUNTS_INJECTED=true' "$T/job/.stowage/outputs.env" && out_has '^mounts-result=done$' &&
    ok "restore injected, outputs say so" || fail "rc $RC: $(outputs) $(cat "$T/err")"
echo BUILD >>"$MOUNTS_CALLS"
STOWAGE_BUILDKIT_MOUNTS=pip:/root/.cache/pip mw save --job-status success
expect_rc 0 && [ "$(mounts_seq)" = "restore inject docker BUILD extract docker save" ] && ok "order: $(mounts_seq)" ||
    fail "rc $RC, calls: $(mounts_seq) $(cat "$T/err")"
grep -qxF "stowage mounts extract" "$MOUNTS_CALLS" && grep -qxF "stowage save --key swm-1" "$MOUNTS_CALLS" &&
    ok "extract, then save under the primary key" || fail "$(cat "$MOUNTS_CALLS")"
: >"$MOUNTS_CALLS"
mw save --job-status failed --buildkit-mount pip:/root/.cache/pip
expect_rc 0 && [ "$(mounts_seq)" = "" ] && ok "failed job without STOWAGE_SAVE_ON_FAILURE: no extract, no save" || fail "calls: $(mounts_seq)"
STOWAGE_SAVE_ON_FAILURE=true mw save --job-status failed --buildkit-mount pip:/root/.cache/pip
expect_rc 0 && [ "$(mounts_seq)" = "extract docker save" ] && ok "with STOWAGE_SAVE_ON_FAILURE: extract, save" || fail "calls: $(mounts_seq)"
printf 'FROM base\nRUN --mount=type=cache,target=/root/.cache/pip true\n' >"$T/job/Dockerfile"
: >"$MOUNTS_CALLS"
MOUNTS_DOCKER_FAIL=1 mw restore --key swm-2 --dockerfile Dockerfile --buildkit-mount pip:/root/.cache/pip
expect_rc 0 && grep -qx 'STOWAGE_MOUNTS_INJECTED=false' "$T/job/.stowage/outputs.env" && err_has "warning: mounts inject failed" &&
    ok "docker failing: a warning, exit 0, not injected" || fail "rc $RC: $(outputs) $(cat "$T/err")"
mw save --buildkit-mount pip:/root/.cache/pip
expect_rc 0 && [ "$(mounts_seq)" = "restore inject save" ] && err_has "not extracted: the restore did not inject them" &&
    ok "what was not injected is not extracted" || fail "calls: $(mounts_seq) $(cat "$T/err")"
[ "$(cat "$HOME/.docker-cache/pip/a.whl")" = whl ] && ok "host directory untouched" || fail "host directory changed"
: >"$MOUNTS_CALLS"
MOUNTS_DOCKER_FAIL=1 STOWAGE_BUILDKIT_MOUNTS=pip:/root/.cache/pip mw restore --key swm-3 --strict
expect_rc 1 && ok "strict: restore fails on the inject (exit 1)" || fail "rc $RC $(cat "$T/err")"
: >"$MOUNTS_CALLS"
mw restore --key swm-4
expect_rc 0 && ! grep -q STOWAGE_MOUNTS_INJECTED "$T/job/.stowage/outputs.env" && ok "no mounts configured: no inject" || fail "$(outputs)"
mw save
expect_rc 0 && [ "$(mounts_seq)" = "restore save" ] && ok "and no extract" || fail "calls: $(mounts_seq)"
: >"$MOUNTS_CALLS"
# shellcheck disable=SC2016 # the command's shell expands it
STOWAGE_BUILDKIT_MOUNTS=pip:/root/.cache/pip mw run --key swm-5 -- sh -c 'echo BUILD >>"$MOUNTS_CALLS"'
expect_rc 0 && [ "$(mounts_seq)" = "run docker BUILD docker" ] && ok "run: stowage run injects and extracts around the command" ||
    fail "rc $RC, calls: $(mounts_seq)"

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

case_begin "release: downloads the listed tarball, verifies it, caches it; the second time no download"
REL_STARTED=$SECONDS
mkdir -p "$T/srv"
nginx_start "$T/srv" || { echo "FAIL: cannot start nginx" >&2; exit 1; }
trap 'set +e; _lib_nginx_exit; _run_cleanups' EXIT
if ! release_setup; then
    echo "SKIP (release download cases): $REL_SKIP"
    finish
    exit 0
fi
W="$REL_SRC/ci-templates/shell/stowage-ci.sh"
runner rel
export STOWAGE_BIN="" STOWAGE_BUILD_CACHE="$T/wc"
w bin
RBIN="$T/wc/$REL_VERSION/x86_64/bin/stowage"
expect_rc 0 && [ "$(cat "$T/out")" = "$RBIN" ] && ok "bin: the unpacked release" || fail "$(cat "$T/out" "$T/err")"
[ "$(downloads)" = 1 ] && err_has "sha256 verified" && ok "downloaded once, verified" || fail "downloads $(downloads): $(cat "$T/err")"
"$RBIN" --version | grep -q "^stowage $REL_VERSION " && ok "it runs" || fail "$RBIN --version"
rm -rf "$T/job/.stowage"
w restore --key rel-1 --path '~/c'
expect_rc 0 && grep -q '^STOWAGE_CACHE_RESULT=miss$' "$T/job/.stowage/outputs.env" && ok "restore with it" || fail "$(cat "$T/err")"
[ "$(downloads)" = 1 ] && err_has "from the cache" && ok "second use: from the cache, no download" || fail "downloads $(downloads): $(cat "$T/err")"

case_begin "release: a corrupted download is refused and not run; restore fails open, strict fails"
export STOWAGE_BUILD_CACHE="$T/wc-bad" STOWAGE_RELEASE_URL="$REL_BAD_URL"
rm -rf "$T/job/.stowage"
w restore --key rel-1 --path '~/c'
expect_rc 0 && grep -q '^STOWAGE_CACHE_RESULT=error$' "$T/job/.stowage/outputs.env" && out_has "cache-hit=false" &&
    ok "exit 0, outputs say error" || fail "$(cat "$T/err")"
err_has "but the checksum list says $REL_SHA: refused" && [ "$(grep -c 'warning:' "$T/err")" = 1 ] &&
    ok "one warning after the refusal" || fail "$(cat "$T/err")"
! err_has "building" && ok "no fallback build" || fail "built after a mismatch: $(cat "$T/err")"
[ -z "$(find "$T/wc-bad" -mindepth 1 -not -type d)" ] && ok "nothing kept" || fail "$(find "$T/wc-bad" -mindepth 1)"
w restore --key rel-1 --path '~/c' --strict
expect_rc 2 && err_has "strict" && ok "--strict: exit 2" || fail "$(cat "$T/err")"
w save --key rel-bad --path '~/c'
expect_rc 0 && err_has "warning: no stowage binary" && ok "save fails open too" || fail "$(cat "$T/err")"
# shellcheck disable=SC2016 # expanded by the command's shell
w run --key rel-1 --path '~/c' -- sh -c 'echo ran >"$HOME/ran"; exit 4'
expect_rc 4 && [ -f "$HOME/ran" ] && ok "run runs the command without the cache, keeps its status" || fail "$(cat "$T/err")"

case_begin "release: server unreachable: tries a build; without cmake, one warning"
DEAD_PORT=$(_free_port)
export STOWAGE_BUILD_CACHE="$T/wc-down" STOWAGE_RELEASE_URL="http://127.0.0.1:$DEAD_PORT/rel"
path_without_cmake "$T/nocmake"
rm -rf "$T/job/.stowage"
PATH="$T/nocmake" w restore --key rel-1 --path '~/c'
expect_rc 0 && grep -q '^STOWAGE_CACHE_RESULT=error$' "$T/job/.stowage/outputs.env" && ok "exit 0, outputs say error" ||
    fail "$(cat "$T/err")"
err_has "could not download" && err_has "building from source instead" && err_has "no cmake" &&
    ok "download failed, build tried, no cmake" || fail "$(cat "$T/err")"
unset STOWAGE_RELEASE_URL STOWAGE_BUILD_CACHE

echo "timing: the release cases took $((SECONDS - REL_STARTED)) s"
finish
