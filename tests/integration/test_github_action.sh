#!/usr/bin/env bash
# The GitHub action (ci-templates/github) run the way the Actions runner runs it
# (tests/integration/gha_harness.js: INPUT_*, per-step files, main, build, post-if, post with
# STATE_*), against a local store; and the action and example workflow YAML validated with
# @action-validator/cli. The bootstrap: with no stowage-bin the action downloads the release
# listed in its checksum list from a local nginx (a copy of the action whose list names this
# build's dist tarball), verifies it and keeps it in the tool cache; refuses a corrupted
# download; falls back to a source build when the server is unreachable, and to a warning when
# it cannot build either.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/ci_lib.sh"
. "$(dirname "$0")/lib_nginx.sh"
need_ci_tool action-validator
need_cmd node

ACTION="$STOW_TEST_SRC/ci-templates/github"
HARNESS="$STOW_TEST_SRC/tests/integration/gha_harness.js"
STORE="$T/store"
export GITHUB_REF_NAME=main
unset GITHUB_OUTPUT GITHUB_STEP_SUMMARY GITHUB_STATE GITHUB_ENV STOWAGE_URL STOWAGE_KEY STOWAGE_PATHS

# gha NAME [harness args]: runs the action in a fresh workspace $T/ws-NAME as the current
# runner; the result is $T/NAME.json, the harness log $T/NAME.log.
gha() {
    local name=$1
    shift
    mkdir -p "$T/ws-$name"
    printf 'torch==2.7.1\n' >"$T/ws-$name/requirements.txt"
    set +e
    (cd "$T/ws-$name" && node "$HARNESS" --out "$T/$name.json" "$@") >"$T/$name.log" 2>&1
    HRC=$?
    set -e
    if [ "$HRC" -ne 0 ]; then
        fail "harness failed ($HRC): $(tail -20 "$T/$name.log")"
        return 1
    fi
    # The result once as one file per path (what ci_lib.sh's jget prints for that path): R
    # then reads a file instead of starting python3, about 170 times in this test.
    rm -rf "$T/$name.d"
    python3 - "$T/$name.json" "$T/$name.d" <<'PY'
import json, os, sys
def walk(v, path):
    if path:
        with open(os.path.join(sys.argv[2], path), "w") as f:
            f.write(v if isinstance(v, str) else json.dumps(v))
    items = v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else ()
    for k, c in items:
        k = str(k)
        if "/" not in k and "." not in k and k not in ("", ".", ".."):
            walk(c, path + "." + k if path else k)
os.makedirs(sys.argv[2], exist_ok=True)
walk(json.load(open(sys.argv[1])), "")
PY
}
# R NAME a.b.c: the value at that path of run NAME's result, as jget prints it ("null" when
# absent).
R() {
    if [ -f "$T/$1.d/$2" ]; then cat "$T/$1.d/$2"; else echo null; fi
}
expect_eq() { # expect_eq WHAT GOT WANT
    if [ "$2" = "$3" ]; then ok "$1 = $3"; else fail "$1: got '$2', want '$3' (log: $(tail -5 "$T/$NAME.log" | tr '\n' ' '))"; fi
}
summary_has() {
    local s
    s=$(R "$1" "$2.summary")
    grep -qF -- "$3" <<<"$s"
}

COMMON=(--action "$ACTION" --input "stowage-bin=$STOWAGE_BIN" --input "url=file://$STORE")
PATHS=$'~/.docker-cache\n  ~/other dir  \n'

case_begin "action and workflow YAML validate"
for f in "$ACTION/action.yml" "$ACTION/restore/action.yml" "$ACTION/save/action.yml" \
    "$STOW_TEST_SRC/examples/github-workflow.yml"; do
    if "$CI_TOOLS/action-validator" "$f" >"$T/av.out" 2>&1; then ok "${f#"$STOW_TEST_SRC"/}"; else fail "$f: $(head -40 "$T/av.out")"; fi
done
printf 'name: x\ndescription: y\nruns:\n  using: node20\n  mian: a.js\n' >"$T/bad-action.yml"
if "$CI_TOOLS/action-validator" "$T/bad-action.yml" >/dev/null 2>&1; then fail "validator accepted a broken action"; else ok "validator rejects a misspelt key"; fi

case_begin "first run: miss, the build fills the cache, post saves"
NAME=first
runner gh1
gha first "${COMMON[@]}" --input 'key=docker-{os}-{hash:requirements.txt}' --input "path=$PATHS" \
    --input $'restore-keys=docker-{os}-\n' \
    --build 'mkdir -p ~/.docker-cache/pip ~/"other dir" && echo wheel >~/.docker-cache/pip/torch.whl && echo x >~/"other dir"/f'
expect_eq "main exit" "$(R first main.exit)" 0
expect_eq "cache-hit" "$(R first main.outputs.cache-hit)" false
expect_eq "cache-result" "$(R first main.outputs.cache-result)" miss
KEY=$(R first main.outputs.cache-primary-key)
WANT=$(cd "$T/ws-first" && "$STOWAGE_BIN" key --key 'docker-{os}-{hash:requirements.txt}')
expect_eq "cache-primary-key (the expanded template)" "$KEY" "$WANT"
expect_eq "cache-matched-key" "$(R first main.outputs.cache-matched-key)" ""
expect_eq "state primary-key" "$(R first main.state.primary-key)" "$KEY"
expect_eq "post ran" "$(R first postRan)" true
expect_eq "post exit" "$(R first post.exit)" 0
summary_has first main "| Result | miss |" && summary_has first main "<code>~/other dir</code>" &&
    ok "restore summary table" || fail "restore summary: $(R first main.summary)"
summary_has first post "### stowage: cache save" && summary_has first post "| Result | done |" &&
    summary_has first post "uploaded" && ok "save summary table" || fail "save summary: $(R first post.summary)"
[ -f "$STORE/manifests/default/$KEY.json" ] && ok "entry in the store (scope default)" || fail "nothing saved: $(find "$STORE" -type f)"

case_begin "second run on a fresh runner: exact hit"
NAME=second
runner gh2
# shellcheck disable=SC2016 # the build step's shell expands it
gha second "${COMMON[@]}" --input 'key=docker-{os}-{hash:requirements.txt}' --input "path=$PATHS" \
    --build 'test "$(cat ~/.docker-cache/pip/torch.whl)" = wheel && test -f ~/"other dir"/f'
expect_eq "main exit" "$(R second main.exit)" 0
expect_eq "cache-hit" "$(R second main.outputs.cache-hit)" true
expect_eq "cache-result" "$(R second main.outputs.cache-result)" hit
expect_eq "cache-matched-key" "$(R second main.outputs.cache-matched-key)" "$KEY"
expect_eq "the build saw the restored files" "$(R second build.exit)" 0
summary_has second main "hit (exact key)" && summary_has second main "<code>$KEY</code>" &&
    ok "summary shows the hit" || fail "summary: $(R second main.summary)"
expect_eq "post exit (nothing new to upload)" "$(R second post.exit)" 0

case_begin "restore-keys: partial match on a changed requirements file"
NAME=partial
runner gh3
mkdir -p "$T/ws-partial" && printf 'torch==2.7.1\ntransformers==4.46.3\n' >"$T/ws-partial/requirements.txt.new"
gha partial "${COMMON[@]}" --input 'key=docker-{os}-{hash:requirements.txt.new}' --input "path=$PATHS" \
    --input $'restore-keys=nomatch-\ndocker-{os}-'
expect_eq "cache-hit" "$(R partial main.outputs.cache-hit)" false
expect_eq "cache-result" "$(R partial main.outputs.cache-result)" partial
expect_eq "cache-matched-key" "$(R partial main.outputs.cache-matched-key)" "$KEY"
[ "$(cat "$HOME/.docker-cache/pip/torch.whl" 2>/dev/null)" = wheel ] && ok "prefix match restored the files" ||
    fail "files not restored by the prefix match"

case_begin "failed build without save-on-failure: post skipped, nothing saved"
NAME=fail-nosave
runner gh4
gha fail-nosave "${COMMON[@]}" --input key=fail-1 --input 'path=~/c' --build 'mkdir -p ~/c && echo 1 >~/c/f && exit 3'
expect_eq "job status" "$(R fail-nosave jobStatus)" failure
expect_eq "post ran" "$(R fail-nosave postRan)" false
[ ! -e "$STORE/manifests/default/fail-1.json" ] && ok "no entry" || fail "fail-1 was saved"

case_begin "failed build with save-on-failure: true: post saves"
NAME=fail-save
runner gh5
gha fail-save "${COMMON[@]}" --input key=fail-2 --input 'path=~/c' --input save-on-failure=true \
    --build 'mkdir -p ~/c && echo 2 >~/c/f && exit 3'
expect_eq "GITHUB_ENV export for post-if" "$(R fail-save main.env.STOWAGE_SAVE_ON_FAILURE)" true
expect_eq "job status" "$(R fail-save jobStatus)" failure
expect_eq "post ran" "$(R fail-save postRan)" true
expect_eq "post exit" "$(R fail-save post.exit)" 0
runner gh5b
stow restore --key fail-2 --path "~/c" --url "file://$STORE"
[ "$(cat "$HOME/c/f" 2>/dev/null)" = 2 ] && ok "fail-2 restorable" || fail "fail-2 not saved: $(cat "$T/err")"

case_begin "STOWAGE_SAVE_ON_FAILURE=true in the job's env: post saves after a failure"
NAME=fail-jobenv
runner gh5c
gha fail-jobenv "${COMMON[@]}" --input key=fail-3 --input 'path=~/c' --env STOWAGE_SAVE_ON_FAILURE=true \
    --build 'mkdir -p ~/c && echo 3 >~/c/f && exit 1'
expect_eq "post ran" "$(R fail-jobenv postRan)" true
[ -f "$STORE/manifests/default/fail-3.json" ] && ok "fail-3 saved" || fail "fail-3 not saved"

case_begin "cancelled job with save-on-failure: post skipped"
NAME=cancel
runner gh6
gha cancel "${COMMON[@]}" --input key=cancel-1 --input 'path=~/c' --input save-on-failure=true --cancel
expect_eq "post ran" "$(R cancel postRan)" false

case_begin "fail-on-cache-miss: the step fails, the job fails, no save"
NAME=fom
runner gh7
gha fom "${COMMON[@]}" --input key=absent-1 --input 'path=~/c' --input fail-on-cache-miss=true
expect_eq "main exit" "$(R fom main.exit)" 1
expect_eq "cache-hit" "$(R fom main.outputs.cache-hit)" false
grep -q '"level": "error"' "$T/fom.json" && grep -q 'fail-on-cache-miss' "$T/fom.json" &&
    ok "error annotation names fail-on-cache-miss" || fail "annotations: $(R fom main.annotations)"
expect_eq "post ran" "$(R fom postRan)" false

case_begin "lookup-only: reports the hit, downloads nothing"
NAME=lookup
runner gh8
gha lookup "${COMMON[@]}" --input 'key=fail-2' --input 'path=~/c' --input lookup-only=true
expect_eq "cache-hit" "$(R lookup main.outputs.cache-hit)" true
[ ! -e "$HOME/c/f" ] && ok "nothing restored" || fail "lookup-only restored files"
summary_has lookup main "### stowage: cache lookup" && ok "summary titled lookup" || fail "$(R lookup main.summary)"

case_begin "store unusable: warning annotation, steps pass; strict: the save step fails"
NAME=down
runner gh9
echo "not a directory" >"$T/blocker"
gha down --action "$ACTION" --input "stowage-bin=$STOWAGE_BIN" --input "url=file://$T/blocker/store" \
    --input key=down-1 --input 'path=~/c' --build 'mkdir -p ~/c && echo 1 >~/c/f'
expect_eq "main exit" "$(R down main.exit)" 0
expect_eq "post exit (fail-open)" "$(R down post.exit)" 0
expect_eq "post annotation" "$(R down post.annotations.0.level)" warning
summary_has down post "not saved (warning" && ok "save summary reports the warning" || fail "$(R down post.summary)"
NAME=down-strict
gha down-strict --action "$ACTION" --input "stowage-bin=$STOWAGE_BIN" --input "url=file://$T/blocker/store" \
    --input key=down-1 --input 'path=~/c' --input strict=true --build 'mkdir -p ~/c && echo 1 >~/c/f'
expect_eq "post exit" "$(R down-strict post.exit)" 1
summary_has down-strict post "failed: a storage or data error" && ok "summary names the failure" ||
    fail "$(R down-strict post.summary)"

case_begin "a corrupt layer: cache-hit=false, cache-result=error, the summary says so"
NAME=corrupt-save
runner gh-corrupt
gha corrupt-save "${COMMON[@]}" --input key=corrupt-1 --input 'path=~/c' \
    --build 'mkdir -p ~/c && head -c 100000 /dev/urandom >~/c/blob'
expect_eq "saved" "$(R corrupt-save post.exit)" 0
manifest=$(find "$STORE/manifests" -name corrupt-1.json | head -1)
layer=$(python3 -c 'import manifest_json,sys; print(manifest_json.load(sys.argv[1])["layers"][0]["id"])' "$manifest")
python3 -c 'import sys; p=sys.argv[1]; b=bytearray(open(p,"rb").read()); b[len(b)//2]^=1; open(p,"wb").write(b)' \
    "$STORE/layers/$layer.tar.zst"
NAME=corrupt
runner gh-corrupt2
gha corrupt "${COMMON[@]}" --input key=corrupt-1 --input 'path=~/c'
expect_eq "main exit (fail-open)" "$(R corrupt main.exit)" 0
expect_eq "cache-hit" "$(R corrupt main.outputs.cache-hit)" false
expect_eq "cache-result" "$(R corrupt main.outputs.cache-result)" error
summary_has corrupt main "error: the entry was not restored" && ok "summary: the entry was not restored" ||
    fail "$(R corrupt main.summary)"

case_begin "bad inputs fail the step with a message"
NAME=badbool
runner gh10
gha badbool "${COMMON[@]}" --input key=x --input 'path=~/c' --input lookup-only=maybe
expect_eq "main exit" "$(R badbool main.exit)" 1
grep -q 'lookup-only must be true or false' "$T/badbool.json" && ok "names the input" || fail "$(R badbool main.annotations)"
NAME=badkey
gha badkey "${COMMON[@]}" --input 'key=bad/key' --input 'path=~/c'
expect_eq "main exit" "$(R badkey main.exit)" 1
grep -q 'usage or configuration error' "$T/badkey.json" && ok "configuration error reported" || fail "$(R badkey main.annotations)"
NAME=badbin
gha badbin --action "$ACTION" --input "stowage-bin=$T/no-such-stowage" --input key=x --input 'path=~/c'
expect_eq "main exit" "$(R badbin main.exit)" 1
grep -q 'no-such-stowage is not an executable' "$T/badbin.json" && ok "names the missing binary" || fail "$(R badbin main.annotations)"

case_begin "split actions: restore/ then save/ with the primary key"
NAME=split-restore
runner gh11
gha split-restore --action "$ACTION/restore" --input "stowage-bin=$STOWAGE_BIN" --input "url=file://$STORE" \
    --input 'key=split-{hash:requirements.txt}' --input 'path=~/s'
expect_eq "cache-result" "$(R split-restore main.outputs.cache-result)" miss
expect_eq "no post step" "$(R split-restore post)" null
SKEY=$(R split-restore main.outputs.cache-primary-key)
mkdir -p "$HOME/s" && echo split >"$HOME/s/f"
NAME=split-save
gha split-save --action "$ACTION/save" --input "stowage-bin=$STOWAGE_BIN" --input "url=file://$STORE" \
    --input "key=$SKEY" --input 'path=~/s'
expect_eq "save exit" "$(R split-save main.exit)" 0
summary_has split-save main "<code>$SKEY</code>" && ok "save summary" || fail "$(R split-save main.summary)"
runner gh11b
NAME=split-again
gha split-again --action "$ACTION/restore" --input "stowage-bin=$STOWAGE_BIN" --input "url=file://$STORE" \
    --input 'key=split-{hash:requirements.txt}' --input 'path=~/s'
expect_eq "cache-hit" "$(R split-again main.outputs.cache-hit)" true
[ "$(cat "$HOME/s/f" 2>/dev/null)" = split ] && ok "restored" || fail "split entry not restored"

# BuildKit cache mounts through the action. The order and arguments of the calls are what is
# checked here, with a stand-in docker client (ci_lib.sh mounts_stubs); the transfer against a
# real engine is test_buildkit_mounts.sh.
mounts_ws() { # mounts_ws NAME: a workspace with a Dockerfile declaring one cache mount
    mkdir -p "$T/ws-$1"
    printf 'FROM base\nRUN --mount=type=cache,id=apt-c,target=/var/cache/apt,sharing=locked true\n' >"$T/ws-$1/Dockerfile"
}
# shellcheck disable=SC2016 # the build step's shell expands it
MOUNTS_BUILD='echo BUILD >>"$MOUNTS_CALLS"'
mounts_stubs

case_begin "buildkit-mounts: restore, inject, the build, extract, save, in that order"
NAME=mounts
runner gh-m1
mkdir -p ~/.docker-cache/pip && echo whl >~/.docker-cache/pip/a.whl
mounts_ws mounts
: >"$MOUNTS_CALLS"
gha mounts --action "$ACTION" --input "stowage-bin=$MOUNTS_STOWAGE" --input "url=file://$STORE" \
    --input key=mounts-1 --input 'path=~/.docker-cache' --input $'buildkit-mounts=pip:/root/.cache/pip\n' \
    --input dockerfile=Dockerfile --env "STOWAGE_DOCKER=$MOUNTS_DOCKER" --build "$MOUNTS_BUILD"
expect_eq "calls" "$(mounts_seq)" "restore inject docker BUILD extract docker save"
grep -qxF -- "stowage mounts inject --buildkit-mount pip:/root/.cache/pip --dockerfile Dockerfile" "$MOUNTS_CALLS" &&
    grep -qxF -- "stowage mounts extract --buildkit-mount pip:/root/.cache/pip --dockerfile Dockerfile" "$MOUNTS_CALLS" &&
    ok "inject and extract get the mounts and the Dockerfile" || fail "calls: $(cat "$MOUNTS_CALLS")"
[ "$(grep -c '^docker build --network none --progress plain -f .* -o type=local,dest=' "$MOUNTS_CALLS")" = 2 ] &&
    ok "one helper build each way" || fail "docker calls: $(grep ^docker "$MOUNTS_CALLS")"
expect_eq "state mounts" "$(R mounts main.state.mounts)" injected
expect_eq "exported STOWAGE_MOUNTS_INJECTED" "$(R mounts main.env.STOWAGE_MOUNTS_INJECTED)" true
summary_has mounts main "| BuildKit mounts | mounts inject: 1 cache mount," && summary_has mounts post "| BuildKit mounts | mounts extract:" &&
    ok "summaries name the transfers" || fail "summaries: $(R mounts main.summary) $(R mounts post.summary)"
expect_eq "post exit" "$(R mounts post.exit)" 0

case_begin "buildkit-mounts: a failed job with save-on-failure still extracts, then saves"
NAME=mounts-fail
runner gh-m2
mkdir -p ~/.docker-cache/pip && echo whl >~/.docker-cache/pip/a.whl
: >"$MOUNTS_CALLS"
gha mounts-fail --action "$ACTION" --input "stowage-bin=$MOUNTS_STOWAGE" --input "url=file://$STORE" \
    --input key=mounts-2 --input 'path=~/.docker-cache' --input 'buildkit-mounts=pip:/root/.cache/pip' \
    --input save-on-failure=true --env "STOWAGE_DOCKER=$MOUNTS_DOCKER" --build "$MOUNTS_BUILD; exit 1"
expect_eq "job status" "$(R mounts-fail jobStatus)" failure
expect_eq "calls" "$(mounts_seq)" "restore inject docker BUILD extract docker save"
NAME=mounts-fail-nosave
: >"$MOUNTS_CALLS"
gha mounts-fail-nosave --action "$ACTION" --input "stowage-bin=$MOUNTS_STOWAGE" --input "url=file://$STORE" \
    --input key=mounts-2b --input 'path=~/.docker-cache' --input 'buildkit-mounts=pip:/root/.cache/pip' \
    --env "STOWAGE_DOCKER=$MOUNTS_DOCKER" --build "$MOUNTS_BUILD; exit 1"
expect_eq "without save-on-failure: no extract, no save" "$(mounts_seq)" "restore inject docker BUILD"

case_begin "buildkit-mounts: docker failing is a warning, and what was not injected is not extracted"
NAME=mounts-nodocker
runner gh-m3
mkdir -p ~/.docker-cache/pip && echo whl >~/.docker-cache/pip/a.whl
: >"$MOUNTS_CALLS"
gha mounts-nodocker --action "$ACTION" --input "stowage-bin=$MOUNTS_STOWAGE" --input "url=file://$STORE" \
    --input key=mounts-3 --input 'path=~/.docker-cache' --input 'buildkit-mounts=pip:/root/.cache/pip' \
    --env "STOWAGE_DOCKER=$MOUNTS_DOCKER" --env MOUNTS_DOCKER_FAIL=1 --build "$MOUNTS_BUILD"
expect_eq "main exit" "$(R mounts-nodocker main.exit)" 0
expect_eq "calls (the daemon check fails, no build)" "$(mounts_seq)" "restore inject BUILD save"
expect_eq "state mounts" "$(R mounts-nodocker main.state.mounts)" failed
grep -q '"level": "warning"' "$T/mounts-nodocker.json" && grep -q 'mounts inject failed' "$T/mounts-nodocker.json" &&
    ok "warning annotation" || fail "annotations: $(R mounts-nodocker main.annotations)"
grep -q 'not extracted: they were not injected' "$T/mounts-nodocker.log" && ok "post says why" || fail "$(tail -5 "$T/mounts-nodocker.log")"
[ "$(cat ~/.docker-cache/pip/a.whl)" = whl ] && ok "host directory untouched" || fail "host directory changed"
NAME=mounts-strict
: >"$MOUNTS_CALLS"
gha mounts-strict --action "$ACTION" --input "stowage-bin=$MOUNTS_STOWAGE" --input "url=file://$STORE" \
    --input key=mounts-4 --input 'path=~/.docker-cache' --input 'buildkit-mounts=pip:/root/.cache/pip' \
    --input strict=true --env "STOWAGE_DOCKER=$MOUNTS_DOCKER" --env MOUNTS_DOCKER_FAIL=1 --build "$MOUNTS_BUILD"
expect_eq "strict: main exit" "$(R mounts-strict main.exit)" 1
grep -q 'stowage mounts inject: a storage or data error' "$T/mounts-strict.json" && ok "strict: the step fails on the inject" ||
    fail "$(R mounts-strict main.annotations)"

case_begin "no buildkit inputs: no mounts calls"
NAME=mounts-none
runner gh-m4
: >"$MOUNTS_CALLS"
gha mounts-none --action "$ACTION" --input "stowage-bin=$MOUNTS_STOWAGE" --input "url=file://$STORE" \
    --input key=mounts-5 --input 'path=~/.docker-cache' --env "STOWAGE_DOCKER=$MOUNTS_DOCKER" --build "$MOUNTS_BUILD"
expect_eq "calls" "$(mounts_seq)" "restore BUILD save"

case_begin "split actions with buildkit-mounts: restore/ injects, save/ extracts after that inject only"
NAME=mounts-split-r
runner gh-m5
mkdir -p ~/.docker-cache/pip && echo whl >~/.docker-cache/pip/a.whl
: >"$MOUNTS_CALLS"
gha mounts-split-r --action "$ACTION/restore" --input "stowage-bin=$MOUNTS_STOWAGE" --input "url=file://$STORE" \
    --input key=mounts-6 --input 'path=~/.docker-cache' --input 'buildkit-mounts=pip:/root/.cache/pip' \
    --env "STOWAGE_DOCKER=$MOUNTS_DOCKER"
INJ=$(R mounts-split-r main.env.STOWAGE_MOUNTS_INJECTED)
expect_eq "restore/ exports" "$INJ" true
NAME=mounts-split-s
gha mounts-split-s --action "$ACTION/save" --input "stowage-bin=$MOUNTS_STOWAGE" --input "url=file://$STORE" \
    --input key=mounts-6 --input 'path=~/.docker-cache' --input 'buildkit-mounts=pip:/root/.cache/pip' \
    --env "STOWAGE_DOCKER=$MOUNTS_DOCKER" --env "STOWAGE_MOUNTS_INJECTED=$INJ"
expect_eq "calls" "$(mounts_seq)" "restore inject docker extract docker save"
NAME=mounts-split-alone
: >"$MOUNTS_CALLS"
gha mounts-split-alone --action "$ACTION/save" --input "stowage-bin=$MOUNTS_STOWAGE" --input "url=file://$STORE" \
    --input key=mounts-7 --input 'path=~/.docker-cache' --input 'buildkit-mounts=pip:/root/.cache/pip' \
    --env "STOWAGE_DOCKER=$MOUNTS_DOCKER"
expect_eq "save/ without an inject: save only" "$(mounts_seq)" "save"
grep -q 'no stowage restore injected them' "$T/mounts-split-alone.json" && ok "and warns" || fail "$(R mounts-split-alone main.annotations)"

case_begin "the url input reaches stowage in STOWAGE_URL, never on its command line"
# A stowage-bin that records its arguments and STOWAGE_URL, then runs the real binary.
cat >"$T/spy-stowage" <<SPY
#!/bin/sh
printf '%s\n' "\$*" >>"$T/spy-argv"
printf '%s\n' "\$STOWAGE_URL" >>"$T/spy-url"
exec "$STOWAGE_BIN" "\$@"
SPY
chmod +x "$T/spy-stowage"
NAME=spy
runner gh14
gha spy --action "$ACTION" --input "stowage-bin=$T/spy-stowage" --input "url=file://$STORE" --input key=spy-1 \
    --input 'path=~/spy' --build 'mkdir -p ~/spy && echo s >~/spy/f'
expect_eq "main exit" "$(R spy main.exit)" 0
expect_eq "post exit" "$(R spy post.exit)" 0
[ "$(grep -c . "$T/spy-argv")" = 2 ] && ok "restore and save ran" || fail "runs: $(cat "$T/spy-argv")"
grep -q -- '--url\|file://' "$T/spy-argv" && fail "url on the command line: $(cat "$T/spy-argv")" || ok "no url in argv"
[ "$(sort -u "$T/spy-url")" = "file://$STORE" ] && ok "STOWAGE_URL set for both runs" || fail "STOWAGE_URL: $(cat "$T/spy-url")"
[ -n "$(find "$STORE" -path '*spy-1*' -print -quit)" ] && ok "saved to the input's store" || fail "nothing saved under $STORE"
NAME=spy-pw
rm -f "$T/spy-argv" "$T/spy-url"
gha spy-pw --action "$ACTION" --input "stowage-bin=$T/spy-stowage" --input "url=http://ci:s3cr%40t@127.0.0.1:9/c" \
    --input key=spy-2 --input 'path=~/spy' --env STOWAGE_RETRIES=0
expect_eq "main exit (fail-open)" "$(R spy-pw main.exit)" 0
! grep -q 's3cr' "$T/spy-argv" && ok "password not in argv" || fail "password in argv: $(cat "$T/spy-argv")"
expect_eq "password masked (decoded)" "$(R spy-pw main.masks.0)" 's3cr@t'
pwlog=$(printf '%s\n%s\n' "$(R spy-pw main.stdout)" "$(R spy-pw main.stderr)" | grep -v '^::add-mask::')
if grep -q 's3cr' <<<"$pwlog"; then fail "password in the step log: $pwlog"; else ok "password not in the step log"; fi

case_begin "no stowage-bin: the action builds its own source once, then reuses the build"
NAME=build1
runner gh12
export RUNNER_TOOL_CACHE="$T/tool-cache"
start=$(date +%s%N)
STOWAGE_BIN="" gha build1 --action "$ACTION" --input "url=file://$STORE" --input key=built-1 --input 'path=~/b' \
    --build 'mkdir -p ~/b && echo b >~/b/f'
first_ms=$((($(date +%s%N) - start) / 1000000))
BUILD_READY=$(R build1 main.stdout | sed -n 's/^stowage binary ready in \([0-9]*\) ms.*/\1/p')
expect_eq "main exit" "$(R build1 main.exit)" 0
BIN=$(R build1 main.state.bin)
case "$BIN" in "$RUNNER_TOOL_CACHE"/stowage/*/stowage) ok "built into the tool cache: ${BIN#"$T"/}" ;; *) fail "binary at $BIN" ;; esac
grep -q 'building stowage' "$T/build1.log" && ok "first run built stowage" || fail "no build in the log"
"$BIN" --version | grep -q '^stowage ' && ok "built binary runs" || fail "built binary does not run"
expect_eq "post exit" "$(R build1 post.exit)" 0
NAME=build2
runner gh13
start=$(date +%s%N)
STOWAGE_BIN="" gha build2 --action "$ACTION" --input "url=file://$STORE" --input key=built-1 --input 'path=~/b'
second_ms=$((($(date +%s%N) - start) / 1000000))
expect_eq "same binary" "$(R build2 main.state.bin)" "$BIN"
! grep -q 'building stowage' "$T/build2.log" && ok "second run reused the build" || fail "rebuilt"
expect_eq "cache-hit with the built binary" "$(R build2 main.outputs.cache-hit)" true
echo "timing: first run with build ${first_ms} ms, second run ${second_ms} ms (both include restore and save)"
unset RUNNER_TOOL_CACHE

case_begin "role-to-assume: GitHub OIDC token requested, kept in a 0600 file, masked, handed to stowage"
REQ_TOKEN="req-$RANDOM$RANDOM-request-token"
coproc OIDC (exec python3 "$STOW_TEST_SRC/tests/integration/oidc_token_server.py" --port 0 \
    --request-token "$REQ_TOKEN" --log "$T/idtok-server.log" --tokens "$T/idtok.tokens")
at_exit "kill $OIDC_PID 2>/dev/null"
read -r _ OIDC_PORT <&"${OIDC[0]}" || true
[ -n "${OIDC_PORT:-}" ] || fail "the ID token server did not start"
# stowage-bin: a wrapper that records what stowage was handed, then runs it
cat >"$T/stowage-rec" <<WRAP
#!/bin/bash
f=\${AWS_WEB_IDENTITY_TOKEN_FILE:-}
{
    echo "cmd=\$1 arn=\${AWS_ROLE_ARN:-} session=\${AWS_ROLE_SESSION_NAME:-} dir=\$(dirname "\${f:-/none}") ak=\${AWS_ACCESS_KEY_ID:-}"
    if [ -n "\$f" ]; then echo "mode=\$(stat -c %a "\$f") owner=\$(stat -c %u "\$f") token=\$(cat "\$f")"; fi
} >>"$T/oidc.rec"
exec "$STOWAGE_BIN" "\$@"
WRAP
chmod +x "$T/stowage-rec"
ROLE=arn:aws:iam::123456789012:role/stowage-cache
OIDC_ENV=(--env "ACTIONS_ID_TOKEN_REQUEST_URL=http://127.0.0.1:$OIDC_PORT/idtoken?api-version=2.0"
    --env "ACTIONS_ID_TOKEN_REQUEST_TOKEN=$REQ_TOKEN" --env GITHUB_RUN_ID=4242 --env GITHUB_RUN_ATTEMPT=3
    --env AWS_ACCESS_KEY_ID=AKIAKEYSINTHEJOBENV1 --env AWS_SECRET_ACCESS_KEY=job-env-secret)
NAME=oidc
runner gh-oidc
gha oidc --action "$ACTION" --input "stowage-bin=$T/stowage-rec" --input "url=file://$STORE" --input key=oidc-1 \
    --input 'path=~/c' --input "role-to-assume=$ROLE" "${OIDC_ENV[@]}" --build 'mkdir -p ~/c && echo o >~/c/f'
expect_eq "main exit" "$(R oidc main.exit)" 0
expect_eq "post exit" "$(R oidc post.exit)" 0
expect_eq "ID token requests (restore, then a fresh one for save)" "$(grep -c ' 200 n=' "$T/idtok-server.log")" 2
expect_eq "default audience" "$(grep -c '^GET audience=sts.amazonaws.com 200' "$T/idtok-server.log")" 2
mapfile -t TOKS <"$T/idtok.tokens"
[ "${#TOKS[@]}" = 2 ] && [ "${TOKS[0]}" != "${TOKS[1]}" ] && ok "two different tokens" || fail "tokens: ${#TOKS[@]}"
expect_eq "restore's env" "$(sed -n 1p "$T/oidc.rec" | cut -d' ' -f1-3)" "cmd=restore arn=$ROLE session=stowage-4242-3"
expect_eq "save's env" "$(sed -n 3p "$T/oidc.rec" | cut -d' ' -f1-3)" "cmd=save arn=$ROLE session=stowage-4242-3"
expect_eq "restore's token file" "$(sed -n 2p "$T/oidc.rec")" "mode=600 owner=$(id -u) token=${TOKS[0]}"
expect_eq "save's token file (the fresh token)" "$(sed -n 4p "$T/oidc.rec")" "mode=600 owner=$(id -u) token=${TOKS[1]}"
grep -q "dir=[^ ]*/gha-runner-" "$T/oidc.rec" && ok "token files in RUNNER_TEMP" || fail "$(cat "$T/oidc.rec")"
[ "$(grep -c 'dir=[^ ]*/gha-runner-[^ ]* ak=$' "$T/oidc.rec")" = 2 ] && ok "keys in the job's env not passed to stowage" ||
    fail "$(cat "$T/oidc.rec")"
expect_eq "main masked its token" "$(R oidc main.masks.0)" "${TOKS[0]}"
expect_eq "post masked its token" "$(R oidc post.masks.0)" "${TOKS[1]}"
leaks=0
for tok in "${TOKS[@]}" "$REQ_TOKEN"; do
    # the harness log holds every line both steps wrote; the runner hides ::add-mask:: lines
    n=$(grep -F -- "$tok" "$T/oidc.log" | grep -vc "^::add-mask::" || true)
    n2=$( (R oidc main.summary; R oidc post.summary; cat "$T/idtok-server.log") | grep -cF -- "$tok" || true)
    leaks=$((leaks + n + n2))
done
expect_eq "log lines carrying a token (other than the masks)" "$leaks" 0

NAME=oidc-aud
runner gh-oidc2
: >"$T/oidc.rec"
gha oidc-aud --action "$ACTION/restore" --input "stowage-bin=$T/stowage-rec" --input "url=file://$STORE" --input key=oidc-1 \
    --input 'path=~/c' --input "role-to-assume=$ROLE" --input audience=my-aud --input role-session-name='ci run/7' "${OIDC_ENV[@]}"
expect_eq "restore action exit" "$(R oidc-aud main.exit)" 0
expect_eq "cache-hit" "$(R oidc-aud main.outputs.cache-hit)" true
expect_eq "custom audience asked for" "$(tail -1 "$T/idtok-server.log")" "GET audience=my-aud 200 n=3"
expect_eq "session name (sanitised)" "$(sed -n 1p "$T/oidc.rec" | cut -d' ' -f3)" "session=ci-run-7"

case_begin "role-to-assume without id-token: write: a clear error, stowage not run"
NAME=oidc-noperm
runner gh-oidc3
: >"$T/oidc.rec"
gha oidc-noperm --action "$ACTION" --input "stowage-bin=$T/stowage-rec" --input "url=file://$STORE" --input key=oidc-1 \
    --input 'path=~/c' --input "role-to-assume=$ROLE"
expect_eq "main exit" "$(R oidc-noperm main.exit)" 1
grep -q 'permissions: id-token: write' <<<"$(R oidc-noperm main.annotations.0.message)" &&
    ok "names the permission: $(R oidc-noperm main.annotations.0.message | head -c 120)" || fail "$(R oidc-noperm main.annotations)"
expect_eq "cache-result" "$(R oidc-noperm main.outputs.cache-result)" error
expect_eq "post ran" "$(R oidc-noperm postRan)" false
[ ! -s "$T/oidc.rec" ] && ok "stowage was not run" || fail "ran: $(cat "$T/oidc.rec")"
NAME=oidc-badreq
gha oidc-badreq --action "$ACTION/save" --input "stowage-bin=$T/stowage-rec" --input "url=file://$STORE" --input key=oidc-1 \
    --input 'path=~/c' --input "role-to-assume=$ROLE" "${OIDC_ENV[@]}" --env ACTIONS_ID_TOKEN_REQUEST_TOKEN=wrong
expect_eq "save action exit (request token refused)" "$(R oidc-badreq main.exit)" 1
grep -q 'HTTP 401' <<<"$(R oidc-badreq main.annotations.0.message)" && ok "names the refusal" || fail "$(R oidc-badreq main.annotations)"

# ---- trust (docs/TRUST.md): per-ref scopes, read-only for untrusted events ----
event() { # event NAME JSON: writes $T/event-NAME.json
    printf '%s\n' "$2" >"$T/event-$1.json"
}
listing() { (cd "$STORE" && find . -type f | LC_ALL=C sort); }
REPO='"repository":{"full_name":"org/repo","default_branch":"main"}'
event push "{$REPO}"
event fork-pr '{"pull_request":{"number":7,"head":{"ref":"main","repo":{"full_name":"evil/fork","fork":true}},"base":{"ref":"main","repo":{"full_name":"org/repo","fork":false}}},'"$REPO"'}'
event same-pr '{"pull_request":{"number":8,"head":{"ref":"topic","repo":{"full_name":"org/repo","fork":false}},"base":{"ref":"main","repo":{"full_name":"org/repo","fork":false}}},'"$REPO"'}'
event comment '{"issue":{"number":7,"pull_request":{}},"comment":{"body":"/build"},'"$REPO"'}'
TRUST=(--input key=trust-1 --input 'path=~/t')
push_env() { echo --env GITHUB_EVENT_NAME=push --env "GITHUB_REF=refs/heads/$1" --env "GITHUB_REF_NAME=$1" --env "GITHUB_EVENT_PATH=$T/event-push.json"; }
pr_env() { # pr_env EVENT NAME N
    echo --env "GITHUB_EVENT_NAME=$1" --env "GITHUB_REF=refs/pull/$3/merge" --env GITHUB_BASE_REF=main --env "GITHUB_HEAD_REF=main" --env "GITHUB_EVENT_PATH=$T/event-$2.json"
}

case_begin "push to main, feature/x and feature-x: each its own scope, escaped"
NAME=tr-main
runner tr1
# shellcheck disable=SC2046 # word splitting of the env flags is wanted
gha tr-main "${COMMON[@]}" "${TRUST[@]}" $(push_env main) --build 'mkdir -p ~/t && echo main >~/t/f'
expect_eq "post exit" "$(R tr-main post.exit)" 0
[ -f "$STORE/manifests/main/trust-1.json" ] && ok "push to main writes scope main" || fail "$(listing | grep manifests/)"
NAME=tr-fx
runner tr2
# shellcheck disable=SC2046,SC2016 # the build step's shell expands it
gha tr-fx "${COMMON[@]}" "${TRUST[@]}" $(push_env feature/x) --build 'test "$(cat ~/t/f)" = main && echo fx >~/t/f'
expect_eq "feature/x falls back to main" "$(R tr-fx main.outputs.cache-result)" hit
NAME=tr-fdx
runner tr3
# shellcheck disable=SC2046
gha tr-fdx "${COMMON[@]}" "${TRUST[@]}" $(push_env feature-x) --build 'mkdir -p ~/t && echo fdx >~/t/f'
[ -f "$STORE/manifests/feature_2fx/trust-1.json" ] && [ -f "$STORE/manifests/feature-x/trust-1.json" ] &&
    ok "feature/x -> feature_2fx, feature-x -> feature-x: two scopes" || fail "$(listing | grep manifests/)"

for ev in fork-pr:pull_request:7 pull_request_target:same-pr:8 issue_comment:comment:7; do
    IFS=: read -r a b n <<<"$ev"
    if [ "$a" = fork-pr ]; then evname=pull_request file=fork-pr; else evname=$a file=$b; fi
    case_begin "$evname ($file): read-only by itself, says why, writes nothing"
    NAME=tr-ro-$a
    runner "tro-$a"
    before=$(listing)
    # shellcheck disable=SC2046,SC2016 # the build step's shell expands it
    gha "$NAME" "${COMMON[@]}" "${TRUST[@]}" $(pr_env "$evname" "$file" "$n") --build 'test "$(cat ~/t/f)" = main && echo poison >~/t/f'
    expect_eq "restore reads the base branch" "$(R "$NAME" main.outputs.cache-result)" hit
    expect_eq "post exit" "$(R "$NAME" post.exit)" 0
    grep -q "read-only: not saving" "$T/$NAME.log" && ok "stowage: read-only: not saving" || fail "$(tail -20 "$T/$NAME.log")"
    grep -qE "read-only: .*(fork evil/fork|$evname event)" "$T/$NAME.log" && ok "the log names the reason" || fail "$(grep read-only "$T/$NAME.log")"
    summary_has "$NAME" post "read-only" && ok "save summary says read-only" || fail "$(R "$NAME" post.summary)"
    [ "$before" = "$(listing)" ] && ok "store unchanged (main not poisoned, no pr scope written)" ||
        fail "store changed: $(diff <(echo "$before") <(listing))"
done

case_begin "read-only decisions for other events (lib/trust.js)"
# shellcheck disable=SC2016 # a node program, single-quoted on purpose
node -e '
const t = require(process.argv[1]);
const check = (name, ev, save, want) => {
  process.env.GITHUB_EVENT_NAME = name;
  const got = t.readOnly(save, ev).readOnly;
  if (got !== want) throw new Error(`${name} ${JSON.stringify(ev)} save=${save}: got ${got}`);
};
const repo = { full_name: "org/repo" };
check("workflow_run", { repository: repo, workflow_run: { head_repository: { full_name: "evil/fork" } } }, "auto", true);
check("workflow_run", { repository: repo, workflow_run: { head_repository: repo } }, "auto", false);
check("push", { repository: repo }, "auto", false);
check("pull_request", { pull_request: { head: { repo: { full_name: "org/repo", fork: true } }, base: { repo: { full_name: "org/repo", fork: true } } } }, "auto", false);
check("pull_request", { pull_request: { head: { repo: null }, base: { repo } } }, "auto", true);
check("pull_request_target", {}, "true", false);
check("push", {}, "false", true);
' "$ACTION/lib/trust.js" >"$T/trust.out" 2>&1 && ok "workflow_run of a fork, a fork's own PRs, a deleted fork, overrides" ||
    fail "$(cat "$T/trust.out")"

case_begin "same-repo pull request: writes pr-8, never main"
NAME=tr-pr8
runner tr-pr8
# shellcheck disable=SC2046
gha tr-pr8 "${COMMON[@]}" "${TRUST[@]}" $(pr_env pull_request same-pr 8) --build 'echo pr8 >~/t/f'
[ -f "$STORE/manifests/pr-8/trust-1.json" ] && ok "pr-8 written" || fail "$(listing | grep manifests/)"
runner tr-check
"$STOWAGE_BIN" restore --url "file://$STORE" --key trust-1 --path '~/t' --scope main >/dev/null 2>&1
[ "$(cat "$HOME/t/f")" = main ] && ok "main still holds main's files" || fail "main now holds $(cat "$HOME/t/f")"

case_begin "fork pull request with save: true: saves, but only to pr-7"
NAME=tr-force
runner tr-force
# shellcheck disable=SC2046
gha tr-force "${COMMON[@]}" "${TRUST[@]}" --input save=true $(pr_env pull_request fork-pr 7) --build 'echo forced >~/t/f'
[ -f "$STORE/manifests/pr-7/trust-1.json" ] && ok "pr-7 written" || fail "$(listing | grep manifests/)"
grep -q "save: true given, saving despite" "$T/tr-force.log" && ok "the override is logged" || fail "$(tail -5 "$T/tr-force.log")"
runner tr-check2
"$STOWAGE_BIN" restore --url "file://$STORE" --key trust-1 --path '~/t' --scope main >/dev/null 2>&1
[ "$(cat "$HOME/t/f")" = main ] && ok "main untouched" || fail "main now holds $(cat "$HOME/t/f")"

case_begin "save: false on a push: read-only"
NAME=tr-false
runner tr-false
before=$(listing)
# shellcheck disable=SC2046
gha tr-false "${COMMON[@]}" --input key=trust-2 --input 'path=~/t' --input save=false $(push_env main) --build 'mkdir -p ~/t && echo x >~/t/f'
grep -q "read-only: not saving (save: false" "$T/tr-false.log" && [ "$before" = "$(listing)" ] &&
    ok "nothing saved" || fail "$(grep -i read-only "$T/tr-false.log"; diff <(echo "$before") <(listing))"

case_begin "the committed checksum list parses; its entries are the GitLab template's"
node -e '
const r = require(process.argv[1]);
const l = r.readChecksums();
for (const e of l.entries) if (!/^[0-9a-f]{64}$/.test(e.sha256)) throw new Error(e.file);
console.log(l.entries.map((e) => e.sha256 + "  " + e.file).join("\n"));
' "$ACTION/lib/release.js" >"$T/list-entries" && ok "ci-templates/checksums.txt parses" || fail "checksums.txt: $(cat "$T/list-entries")"
sed -n '/# BEGIN stowage release checksums/,/# END stowage release checksums/p' "$STOW_TEST_SRC/ci-templates/gitlab/stowage.gitlab-ci.yml" |
    grep -oE '[0-9a-f]{64}  stowage-[^ ]+\.tar\.gz' >"$T/gl-entries" || :
diff <(sort "$T/list-entries" | grep .) <(sort "$T/gl-entries") >"$T/entries.diff" && ok "the same entries in both" ||
    fail "checksums.txt and the GitLab template differ: $(cat "$T/entries.diff")"

REL_STARTED=$SECONDS
mkdir -p "$T/srv"
nginx_start "$T/srv" || { echo "FAIL: cannot start nginx" >&2; exit 1; }
trap 'set +e; _lib_nginx_exit; _run_cleanups' EXIT
if ! release_setup; then
    echo "SKIP (release download cases): $REL_SKIP"
    finish
    exit 0
fi
RACTION=$REL_SRC/ci-templates/github
RCOMMON=(--action "$RACTION" --input "url=file://$STORE" --input 'path=~/r')
if command -v stowage >/dev/null; then fail "a stowage on PATH: $(command -v stowage)"; fi

case_begin "release: empty tool cache, no stowage-bin: downloads, verifies, runs it"
NAME=rel1
runner gh-rel1
export RUNNER_TOOL_CACHE="$T/tc-rel"
STOWAGE_BIN="" gha rel1 "${RCOMMON[@]}" --input key=rel-1 --build 'mkdir -p ~/r && echo r >~/r/f'
expect_eq "main exit" "$(R rel1 main.exit)" 0
expect_eq "cache-result" "$(R rel1 main.outputs.cache-result)" miss
RBIN=$(R rel1 main.state.bin)
expect_eq "binary in the tool cache" "$RBIN" "$RUNNER_TOOL_CACHE/stowage/$REL_VERSION/x86_64/bin/stowage"
expect_eq "downloads" "$(downloads)" 1
grep -q "downloaded, [0-9]* bytes, sha256 verified" <<<"$(R rel1 main.stdout)" && ok "the log says downloaded and verified" ||
    fail "$(R rel1 main.stdout | head -20)"
[ -f "$RUNNER_TOOL_CACHE/stowage/$REL_VERSION/x86_64/lib/libcurl.so.4" ] && ok "unpacked with its lib/" || fail "no lib/ beside bin/"
expect_eq "post exit" "$(R rel1 post.exit)" 0
[ -f "$STORE/manifests/default/rel-1.json" ] && ok "the downloaded binary saved rel-1" || fail "rel-1 not saved"
! grep -q 'building stowage' "$T/rel1.log" && ok "nothing built" || fail "built although a release is listed"
DL_READY=$(R rel1 main.stdout | sed -n 's/^stowage binary ready in \([0-9]*\) ms.*/\1/p')

case_begin "release: a second job takes it from the tool cache, no download"
NAME=rel2
runner gh-rel2
STOWAGE_BIN="" gha rel2 "${RCOMMON[@]}" --input key=rel-1
expect_eq "cache-hit" "$(R rel2 main.outputs.cache-hit)" true
expect_eq "same binary" "$(R rel2 main.state.bin)" "$RBIN"
expect_eq "downloads" "$(downloads)" 1
grep -q "from the tool cache" <<<"$(R rel2 main.stdout)" && ok "the log says tool cache" || fail "$(R rel2 main.stdout | head)"
CACHED_READY=$(R rel2 main.stdout | sed -n 's/^stowage binary ready in \([0-9]*\) ms.*/\1/p')

case_begin "release: a corrupted download is refused, not run, not cached; the job goes on"
NAME=relbad
runner gh-relbad
export RUNNER_TOOL_CACHE="$T/tc-bad"
STOWAGE_BIN="" gha relbad "${RCOMMON[@]}" --input key=rel-bad --input "release-url=$REL_BAD_URL" \
    --build 'mkdir -p ~/r && echo bad >~/r/f'
expect_eq "main exit (fail-open)" "$(R relbad main.exit)" 0
expect_eq "cache-hit" "$(R relbad main.outputs.cache-hit)" false
expect_eq "cache-result" "$(R relbad main.outputs.cache-result)" error
expect_eq "one annotation" "$(R relbad main.annotations.1)" null
expect_eq "annotation level" "$(R relbad main.annotations.0.level)" warning
grep -q "has sha256 [0-9a-f]\{64\}, but the action's checksum list says $REL_SHA: refused" <<<"$(R relbad main.annotations.0.message)" &&
    ok "the warning names both checksums" || fail "$(R relbad main.annotations)"
expect_eq "the job's build ran" "$(R relbad build.exit)" 0
expect_eq "post exit" "$(R relbad post.exit)" 0
grep -q "had no stowage binary; not saving" <<<"$(R relbad post.stdout)" && ok "post did not save" || fail "$(R relbad post.stdout)"
[ -z "$(find "$RUNNER_TOOL_CACHE" -mindepth 1 -not -type d)" ] && ok "nothing left in the tool cache" ||
    fail "left: $(find "$RUNNER_TOOL_CACHE" -mindepth 1 | head)"
! grep -q 'building stowage' "$T/relbad.log" && ok "no fallback build after a refused download" || fail "built after a mismatch"
summary_has relbad main "no stowage binary" && ok "summary says so" || fail "$(R relbad main.summary)"
NAME=relbad-strict
STOWAGE_BIN="" gha relbad-strict "${RCOMMON[@]}" --input key=rel-bad --input "release-url=$REL_BAD_URL" --input strict=true \
    --build 'echo the build ran'
expect_eq "main exit (strict)" "$(R relbad-strict main.exit)" 1
expect_eq "annotation level" "$(R relbad-strict main.annotations.0.level)" error
expect_eq "the job stops" "$(R relbad-strict build)" null
expect_eq "cache-result" "$(R relbad-strict main.outputs.cache-result)" error

case_begin "release: server unreachable: falls back to the source build"
NAME=reldown
runner gh-reldown
DEAD_PORT=$(_free_port)
# The tool cache of the build case above: the fallback finds the build of the same sources.
export RUNNER_TOOL_CACHE="$T/tool-cache"
STOWAGE_BIN="" gha reldown "${RCOMMON[@]}" --input key=rel-1 --input "release-url=http://127.0.0.1:$DEAD_PORT/rel"
expect_eq "main exit" "$(R reldown main.exit)" 0
expect_eq "cache-hit" "$(R reldown main.outputs.cache-hit)" true
expect_eq "the built binary" "$(R reldown main.state.bin)" "$BIN"
expect_eq "annotation level" "$(R reldown main.annotations.0.level)" warning
grep -q "could not download stowage $REL_VERSION.*built stowage from source instead" <<<"$(R reldown main.annotations.0.message)" &&
    ok "warning: downloaded nothing, built instead" || fail "$(R reldown main.annotations)"

case_begin "release: unreachable and no build tools: warning, the job goes on"
NAME=relnotools
runner gh-relnotools
export RUNNER_TOOL_CACHE="$T/tc-notools"
path_without_cmake "$T/nocmake"
STOWAGE_BIN="" PATH="$T/nocmake" gha relnotools "${RCOMMON[@]}" --input key=rel-1 \
    --input "release-url=http://127.0.0.1:$DEAD_PORT/rel" --build 'echo the build ran'
expect_eq "main exit (fail-open)" "$(R relnotools main.exit)" 0
expect_eq "cache-result" "$(R relnotools main.outputs.cache-result)" error
expect_eq "cache-hit" "$(R relnotools main.outputs.cache-hit)" false
expect_eq "the job's build ran" "$(R relnotools build.exit)" 0
grep -q "no stowage binary: could not download.*no cmake" <<<"$(R relnotools main.annotations.0.message)" &&
    ok "one warning with both reasons" || fail "$(R relnotools main.annotations)"
expect_eq "one annotation" "$(R relnotools main.annotations.1)" null
unset RUNNER_TOOL_CACHE

echo "timing: no stowage on the runner -> restore started: build path ${BUILD_READY:-?} ms," \
    "download path ${DL_READY:-?} ms, from the tool cache ${CACHED_READY:-?} ms;" \
    "the release cases took $((SECONDS - REL_STARTED)) s"

finish
