#!/usr/bin/env bash
# examples/: the Dockerfiles lint clean (dockerfile-utils) and have the structure the guide
# asks for (check_examples.js on the parsed files), build-cached.sh's commands work on top of
# the real stowage, and demo.sh still runs. This machine has no Docker daemon, so docker is
# stubs/docker, which records its calls and imitates pip download and buildx's local cache
# export; everything stowage does around it is real.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/ci_lib.sh"
need_ci_tool dockerfile-utils
need_cmd node

EX="$STOW_TEST_SRC/examples"
unset STOWAGE_URL STOWAGE_KEY STOWAGE_PATHS STOWAGE_CONFIG GITHUB_OUTPUT STOWAGE_SAVE_ON_FAILURE BUILDX_BUILDER

case_begin "Dockerfiles lint clean"
for f in Dockerfile Dockerfile.wheels; do
    if "$CI_TOOLS/dockerfile-utils" lint "$EX/$f" >"$T/lint.out" 2>&1; then ok "$f"; else fail "$f: $(cat "$T/lint.out")"; fi
done

case_begin "Dockerfile, Dockerfile.wheels, compose.yaml, requirements.txt structure"
if node "$STOW_TEST_SRC/tests/integration/check_examples.js" >"$T/check.out" 2>&1; then
    ok "$(grep -c '^ok' "$T/check.out") checks"
else
    fail "$(grep -v '^ok' "$T/check.out")"
fi

# The example directory as a user has it, with the stub docker on PATH.
cp -a "$EX" "$T/proj"
mkdir -p "$T/bin" "$T/stub"
cp "$STOW_TEST_SRC/tests/integration/stubs/docker" "$T/bin/docker"
export PATH="$T/bin:$PATH" DOCKER_LOG="$T/docker.log" STUB_STATE="$T/stub"
export STOWAGE_URL="file://$T/store"
BC="$T/proj/build-cached.sh"
# bc ARGS: runs build-cached.sh as the current runner, with its own buildx cache directory.
bc() {
    set +e
    BUILDX_CACHE="$HOME/buildx-cache" "$BC" "$@" >"$T/out" 2>"$T/err"
    RC=$?
    set -e
}

case_begin "build-cached.sh help and setup"
runner r1
bc help
expect_rc 0 && out_has "build \[--plain\]" && out_has "stats" && ok "help lists the commands" || fail "check failed: out_has stats"
bc setup
expect_rc 0 && [ -d "$HOME/.docker-cache/pip/wheels" ] && [ -d "$HOME/.docker-cache/apt" ] &&
    [ -d "$HOME/buildx-cache" ] && [ -f "$T/stub/builder-stowage" ] && ok "directories and builder created" ||
    fail "setup: $(cat "$T/err")"

case_begin "build on runner 1: miss, wheels downloaded, buildx cache exported, saved"
: >"$DOCKER_LOG"
bc build
expect_rc 0 || true
out_has "cache-result=miss" && ok "restore missed" || fail "$(cat "$T/out")"
grep -q -- '--cache-from type=local,src=' "$DOCKER_LOG" && grep -q -- '--cache-to type=local,dest=.*,mode=max' "$DOCKER_LOG" &&
    grep -q -- "--build-context wheels=$HOME/.docker-cache/pip/wheels" "$DOCKER_LOG" &&
    grep -q -- '--file Dockerfile.wheels' "$DOCKER_LOG" && ok "buildx called with local cache and the wheels context" ||
    fail "docker calls: $(cat "$DOCKER_LOG")"
[ -f "$HOME/buildx-cache/index.json" ] && ls "$HOME"/.docker-cache/pip/wheels/torch-*.whl >/dev/null 2>&1 &&
    ok "wheels and buildx cache on disk" || fail "missing cache files"
err_has "stowage: save docker-" && ok "saved" || fail "no save: $(cat "$T/err")"
KEY=$(cd "$T/proj" && BUILDX_CACHE="$HOME/buildx-cache" "$STOWAGE_BIN" key --config "$T/proj/stowage.ini")

case_begin "build on runner 2: exact hit, no wheel downloaded, buildx cache imported"
runner r2
: >"$DOCKER_LOG"
bc build
expect_rc 0 && out_has "cache-hit=true" && out_has "cache-matched-key=$KEY" && ok "hit on $KEY" ||
    fail "$(cat "$T/out") $(cat "$T/err")"
out_has "File was already downloaded" && ! out_has "Saved " && ok "pip found every wheel in the restored cache" ||
    fail "$(cat "$T/out")"
out_has "importing cache from $HOME/buildx-cache" && ok "buildx found the restored local cache" || fail "$(cat "$T/out")"

case_begin "wheels needs no stowage (CI steps call it between the templates' restore and save)"
runner w
STOWAGE_BIN="" bc wheels
expect_rc 0 && ls "$HOME"/.docker-cache/pip/wheels/*.whl >/dev/null 2>&1 && grep -q -- '--volume '"$HOME"'/.docker-cache/pip:/cache' "$DOCKER_LOG" &&
    ok "wheels downloaded into ~/.docker-cache/pip/wheels" || fail "wheels: $(cat "$T/err")"
runner r2

case_begin "build --plain uses Dockerfile and no wheels context"
: >"$DOCKER_LOG"
bc build --plain
expect_rc 0 && grep -q -- '--file Dockerfile ' "$DOCKER_LOG" && ! grep -q -- '--build-context' "$DOCKER_LOG" &&
    ok "plain build" || fail "$(cat "$DOCKER_LOG") $(cat "$T/err")"

case_begin "a failing build: its exit status, and the downloaded wheels are saved anyway"
runner r3
printf 'numpy==2.1.0\n' >>"$T/proj/requirements.txt"
STUB_BUILD_FAIL=1 bc build
[ "$RC" -eq 1 ] && ok "exit status 1 from the build" || fail "exit $RC: $(cat "$T/err")"
out_has "cache-result=partial" && ok "restore-key prefix matched the old entry" || fail "$(cat "$T/out")"
err_has "saving anyway" && err_has "stowage: save docker-" && ok "saved after the failure" || fail "$(cat "$T/err")"

case_begin "stats and clean"
bc stats
expect_rc 0 && out_has "local cache directories" && out_has "/.docker-cache " && out_has "entries" &&
    out_has "wheels in .*/.docker-cache/pip/wheels" && out_has "key: docker-" &&
    ok "stats: $(grep -c . "$T/out") lines" || fail "stats: $(cat "$T/out") $(cat "$T/err")"
bc clean
expect_rc 0 && [ -d "$HOME/.docker-cache" ] && [ -z "$(ls -A "$HOME/.docker-cache")" ] &&
    [ -z "$(ls -A "$HOME/buildx-cache")" ] && ok "cache directories emptied" || fail "clean: $(cat "$T/err")"
bc frobnicate
expect_rc 2 && ok "unknown command exits 2"

case_begin "demo.sh still runs"
runner demo
if sh "$EX/demo.sh" "$STOWAGE_BIN" >"$T/demo.out" 2>&1; then
    grep -q "demo ok" "$T/demo.out" && ok "demo ok" || fail "$(tail -5 "$T/demo.out")"
else
    fail "demo.sh: $(tail -5 "$T/demo.out")"
fi

finish
