#!/usr/bin/env bash
# The GitLab template (ci-templates/gitlab/stowage.gitlab-ci.yml) run by gitlab-ci-local in
# shell mode against a local store: a pipeline whose second job restores what the first
# saved and whose third job reads the first job's dotenv outputs; a failing job that saves
# only with STOWAGE_SAVE_ON_FAILURE=true; the template building stowage from a source
# checkout; a job without any binary (fails open; STOWAGE_STRICT fails it). The bootstrap: a
# copy of the template whose inline checksum list names this build's dist tarball downloads
# it from a local nginx, verifies and caches it (a second job does not download); a corrupted
# download is refused (the job runs without the cache; strict fails it); an unreachable
# server gives a warning. The example pipeline (examples/gitlab-ci.yml) must parse and
# validate.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/ci_lib.sh"
. "$(dirname "$0")/lib_nginx.sh"
need_ci_tool gitlab-ci-local
need_cmd rsync
need_cmd git

GCL="$CI_TOOLS/gitlab-ci-local"
STORE="$T/store"
unset STOWAGE_URL STOWAGE_KEY STOWAGE_PATHS STOWAGE_SAVE_ON_FAILURE GITHUB_OUTPUT GITHUB_REF_NAME
export HOME="$T/home" # gitlab-ci-local keeps its own state under $HOME/.gitlab-ci-local
mkdir -p "$HOME"

# project DIR: a git repository holding the template, a requirements file and the
# .gitlab-ci.yml read from stdin.
project() {
    local d="$T/$1"
    mkdir -p "$d"
    cp "${TEMPLATE:-$STOW_TEST_SRC/ci-templates/gitlab/stowage.gitlab-ci.yml}" "$d/"
    printf 'torch==2.7.1\n' >"$d/requirements.txt"
    printf '.stowage/\n.gitlab-ci-local/\n' >"$d/.gitignore"
    cat >"$d/.gitlab-ci.yml"
    git_init "$d"
}
# git_init DIR: a repository with one commit and an origin, as gitlab-ci-local expects.
git_init() {
    git -C "$1" init -q -b main
    git -C "$1" config user.email ci@example.invalid
    git -C "$1" config user.name ci
    git -C "$1" remote add origin https://gitlab.example.invalid/group/project.git
    git -C "$1" add -A
    git -C "$1" commit -qm init
    git -C "$1" update-ref refs/remotes/origin/main HEAD
    git -C "$1" symbolic-ref refs/remotes/origin/HEAD refs/remotes/origin/main
}
# gcl DIR [args]: runs gitlab-ci-local there; output in $T/gcl.out, status in $RC.
gcl() {
    local d="$T/$1"
    shift
    set +e
    (cd "$d" && "$GCL" --no-color --concurrency 1 "$@") >"$T/gcl.out" 2>&1
    RC=$?
    set -e
}
log_has() { grep -qF -- "$1" "$T/gcl.out"; }
show() { tail -30 "$T/gcl.out"; }

COMMON_VARS="  STOWAGE_URL: file://$STORE
  STOWAGE_PATHS: ~/.docker-cache
  STOWAGE_BIN: $STOWAGE_BIN"

case_begin "pipeline: job 1 misses and saves, job 2 restores it, job 3 reads job 1's dotenv"
project p1 <<EOF
include:
  - local: stowage.gitlab-ci.yml
stages: [build, test, report]
variables:
$COMMON_VARS
  STOWAGE_KEY: gl-{hash:requirements.txt}
  STOWAGE_RESTORE_KEYS: gl-
fill:
  stage: build
  extends: .stowage
  variables:
    HOME: $T/runner-fill
  script:
    - test "\$STOWAGE_CACHE_RESULT" = miss
    - test "\$STOWAGE_CACHE_HIT" = false
    - mkdir -p ~/.docker-cache/pip && echo wheel >~/.docker-cache/pip/torch.whl
use:
  stage: test
  extends: .stowage
  variables:
    HOME: $T/runner-use
  script:
    - test "\$STOWAGE_CACHE_HIT" = true
    - test "\$STOWAGE_CACHE_MATCHED_KEY" = "\$STOWAGE_CACHE_PRIMARY_KEY"
    - test "\$(cat ~/.docker-cache/pip/torch.whl)" = wheel
report:
  stage: report
  needs: [fill]
  script:
    - printf '%s %s %s\n' "\$STOWAGE_CACHE_HIT" "\$STOWAGE_CACHE_RESULT" "\$STOWAGE_CACHE_PRIMARY_KEY" >$T/report.txt
EOF
mkdir -p "$T/runner-fill" "$T/runner-use"
gcl p1
KEY="gl-$(cd "$T/p1" && "$STOWAGE_BIN" key --key '{hash:requirements.txt}')"
[ "$RC" -eq 0 ] && ok "pipeline passed" || fail "pipeline: $(show)"
log_has "PASS  fill" && log_has "PASS  use" && log_has "PASS  report" && ok "three jobs passed" || fail "$(show)"
[ -f "$STORE/manifests/main/$KEY.json" ] && ok "fill saved $KEY" || fail "no entry: $(find "$STORE" -type f | head)"
[ "$(cat "$T/runner-use/.docker-cache/pip/torch.whl" 2>/dev/null)" = wheel ] && ok "use restored the file on another HOME" ||
    fail "use did not restore"
[ "$(cat "$T/report.txt" 2>/dev/null)" = "false miss $KEY" ] && ok "dotenv outputs reached the report job" ||
    fail "report.txt: $(cat "$T/report.txt" 2>/dev/null)"
log_has "nothing to upload" && ok "use's after_script had nothing new to upload" || fail "$(show)"

case_begin "a failing job saves only with STOWAGE_SAVE_ON_FAILURE=true"
project p2 <<EOF
include:
  - local: stowage.gitlab-ci.yml
variables:
$COMMON_VARS
flaky-save:
  extends: .stowage
  variables:
    HOME: $T/runner-flaky
    STOWAGE_KEY: flaky-save-1
    STOWAGE_SAVE_ON_FAILURE: "true"
  script:
    - mkdir -p ~/.docker-cache && echo partial >~/.docker-cache/f
    - exit 7
flaky-nosave:
  extends: .stowage
  variables:
    HOME: $T/runner-flaky
    STOWAGE_KEY: flaky-nosave-1
  script:
    - mkdir -p ~/.docker-cache && echo partial >~/.docker-cache/f
    - exit 7
EOF
mkdir -p "$T/runner-flaky"
gcl p2 flaky-save
[ "$RC" -ne 0 ] && log_has "FAIL  flaky-save" && ok "the job failed (exit $RC)" || fail "expected a failed job: $(show)"
log_has "saving anyway (STOWAGE_SAVE_ON_FAILURE)" && ok "after_script saved anyway" || fail "$(show)"
[ -f "$STORE/manifests/main/flaky-save-1.json" ] && ok "entry saved" || fail "flaky-save-1 missing"
gcl p2 flaky-nosave
[ "$RC" -ne 0 ] && log_has "not saving (set STOWAGE_SAVE_ON_FAILURE=true" && ok "after_script did not save" || fail "$(show)"
[ ! -e "$STORE/manifests/main/flaky-nosave-1.json" ] && ok "no entry" || fail "flaky-nosave-1 was saved"

# Scopes: the pipeline of branch main writes scope main (above); a merge request pipeline
# writes mr-<iid> and reads the target branch; STOWAGE_POLICY=pull restores and never saves;
# STOWAGE_POLICY=push saves without restoring.
case_begin "merge request: scope mr-<iid>, reads the target branch; STOWAGE_POLICY pull and push"
project pmr <<EOF
include:
  - local: stowage.gitlab-ci.yml
variables:
$COMMON_VARS
  STOWAGE_KEY: gl-mr-1
mr-seed:
  extends: .stowage
  variables:
    HOME: $T/runner-mr
  script:
    - mkdir -p ~/.docker-cache && echo main >~/.docker-cache/f
mr-job:
  extends: .stowage
  variables:
    HOME: $T/runner-mr2
    CI_MERGE_REQUEST_IID: "5"
    CI_MERGE_REQUEST_TARGET_BRANCH_NAME: main
    CI_COMMIT_REF_NAME: feature/x
  script:
    - test "\$STOWAGE_CACHE_RESULT" = hit
    - test "\$(cat ~/.docker-cache/f)" = main
    - echo mr >~/.docker-cache/f
mr-pull:
  extends: .stowage
  variables:
    HOME: $T/runner-mr3
    STOWAGE_POLICY: pull
    CI_MERGE_REQUEST_IID: "6"
    CI_MERGE_REQUEST_TARGET_BRANCH_NAME: main
  script:
    - test "\$STOWAGE_CACHE_RESULT" = hit
    - echo poison >~/.docker-cache/f
branch-fx:
  extends: .stowage
  variables:
    HOME: $T/runner-mr4
    CI_COMMIT_REF_NAME: feature/x
  script:
    - mkdir -p ~/.docker-cache && echo fx >~/.docker-cache/f
push-only:
  extends: .stowage
  variables:
    HOME: $T/runner-mr5
    STOWAGE_POLICY: push
    CI_COMMIT_REF_NAME: pushed
  script:
    - test "\$STOWAGE_CACHE_RESULT" = miss
    - test ! -e ~/.docker-cache/f
    - mkdir -p ~/.docker-cache && echo pushed >~/.docker-cache/f
EOF
mkdir -p "$T/runner-mr" "$T/runner-mr2" "$T/runner-mr3" "$T/runner-mr4" "$T/runner-mr5"
gcl pmr mr-seed
[ "$RC" -eq 0 ] && [ -f "$STORE/manifests/main/gl-mr-1.json" ] && ok "branch main wrote scope main" || fail "$(show)"
gcl pmr mr-job
[ "$RC" -eq 0 ] && ok "the MR job restored main's entry" || fail "$(show)"
[ -f "$STORE/manifests/mr-5/gl-mr-1.json" ] && ok "the MR job wrote mr-5" || fail "$(find "$STORE/manifests")"
before=$(cd "$STORE" && find . -type f | LC_ALL=C sort)
gcl pmr mr-pull
[ "$RC" -eq 0 ] && log_has "read-only: not saving (STOWAGE_POLICY=pull" && ok "pull: restored, logged read-only" || fail "$(show)"
[ "$before" = "$(cd "$STORE" && find . -type f | LC_ALL=C sort)" ] && ok "pull: store unchanged" || fail "pull wrote to the store"
gcl pmr branch-fx
[ "$RC" -eq 0 ] && [ -f "$STORE/manifests/feature_2fx/gl-mr-1.json" ] && ok "branch feature/x writes scope feature_2fx" ||
    fail "$(show; find "$STORE/manifests")"
gcl pmr push-only
[ "$RC" -eq 0 ] && log_has "STOWAGE_POLICY=push: not restoring" && [ -f "$STORE/manifests/pushed/gl-mr-1.json" ] &&
    ok "push: no restore, saved" || fail "$(show)"

case_begin "BuildKit mounts: restore, inject, script, extract, save; failures are warnings"
# The order and arguments of the calls, with a stand-in docker client (ci_lib.sh
# mounts_stubs); the transfer against a real engine is test_buildkit_mounts.sh.
mounts_stubs
MOUNTS_VARS="  STOWAGE_URL: file://$STORE
  STOWAGE_PATHS: ~/.docker-cache
  STOWAGE_BIN: $MOUNTS_STOWAGE
  STOWAGE_DOCKER: $MOUNTS_DOCKER
  MOUNTS_CALLS: $MOUNTS_CALLS
  HOME: $T/runner-mounts"
project pm <<EOF2
include:
  - local: stowage.gitlab-ci.yml
variables:
$MOUNTS_VARS
mounts-ok:
  extends: .stowage
  variables:
    STOWAGE_KEY: mounts-ok-1
    STOWAGE_BUILDKIT_MOUNTS: "pip:/root/.cache/pip"
  script:
    - echo BUILD >>"\$MOUNTS_CALLS"
mounts-fail:
  extends: .stowage
  variables:
    STOWAGE_KEY: mounts-fail-1
    STOWAGE_BUILDKIT_DOCKERFILE: Dockerfile
    STOWAGE_SAVE_ON_FAILURE: "true"
  script:
    - echo BUILD >>"\$MOUNTS_CALLS"
    - exit 5
mounts-nodocker:
  extends: .stowage
  variables:
    STOWAGE_KEY: mounts-nodocker-1
    STOWAGE_BUILDKIT_MOUNTS: "pip:/root/.cache/pip"
    MOUNTS_DOCKER_FAIL: "1"
  script:
    - echo BUILD >>"\$MOUNTS_CALLS"
mounts-strict:
  extends: .stowage
  variables:
    STOWAGE_KEY: mounts-strict-1
    STOWAGE_BUILDKIT_MOUNTS: "pip:/root/.cache/pip"
    MOUNTS_DOCKER_FAIL: "1"
    STOWAGE_STRICT: "true"
  script:
    - echo BUILD >>"\$MOUNTS_CALLS"
mounts-none:
  extends: .stowage
  variables:
    STOWAGE_KEY: mounts-none-1
  script:
    - echo BUILD >>"\$MOUNTS_CALLS"
EOF2
printf 'FROM base\nRUN --mount=type=cache,target=/root/.cache/pip true\n' >"$T/pm/Dockerfile"
mkdir -p "$T/runner-mounts/.docker-cache/pip" && echo whl >"$T/runner-mounts/.docker-cache/pip/a.whl"
: >"$MOUNTS_CALLS"
gcl pm mounts-ok
[ "$RC" -eq 0 ] && ok "job passed" || fail "$(show)"
[ "$(mounts_seq)" = "restore inject docker BUILD extract docker save" ] && ok "order: $(mounts_seq)" || fail "calls: $(mounts_seq)"
grep -q '^docker build --network none --progress plain -f ' "$MOUNTS_CALLS" && ok "helper builds" || fail "$(cat "$MOUNTS_CALLS")"
log_has "mounts inject: 1 cache mount" && log_has "mounts extract: 1 cache mount" && ok "both transfers logged" || fail "$(show)"
: >"$MOUNTS_CALLS"
gcl pm mounts-fail
# (the Dockerfile's mount has an empty host directory: nothing to inject, no build)
[ "$RC" -ne 0 ] && [ "$(mounts_seq)" = "restore inject BUILD extract docker save" ] &&
    grep -qxF "stowage mounts extract" "$MOUNTS_CALLS" &&
    ok "failed job with STOWAGE_SAVE_ON_FAILURE (Dockerfile mounts): $(mounts_seq)" || fail "rc $RC, calls: $(mounts_seq)"
: >"$MOUNTS_CALLS"
gcl pm mounts-nodocker
[ "$RC" -eq 0 ] && [ "$(mounts_seq)" = "restore inject BUILD save" ] && ok "docker failing: $(mounts_seq)" || fail "rc $RC, calls: $(mounts_seq)"
log_has "warning: mounts inject failed" && log_has "not extracted: they were not injected" && ok "warned, not extracted" || fail "$(show)"
: >"$MOUNTS_CALLS"
gcl pm mounts-strict
[ "$RC" -ne 0 ] && [ "$(mounts_seq)" = "restore inject" ] && ok "strict: the job fails at the inject" || fail "rc $RC, calls: $(mounts_seq)"
: >"$MOUNTS_CALLS"
gcl pm mounts-none
[ "$RC" -eq 0 ] && [ "$(mounts_seq)" = "restore BUILD save" ] && ok "no mounts variables: no mounts calls" || fail "rc $RC, calls: $(mounts_seq)"

case_begin "STOWAGE_SOURCE_DIR: the template builds stowage from source, once"
# What this case checks is the template's part: STOWAGE_SOURCE_DIR runs that checkout's
# stowage-ci.sh, which builds with cmake into STOWAGE_BUILD_CACHE once and reuses the build.
# The checkout is the real stowage-ci.sh around a one-file stand-in for the sources (a main.c
# that runs this build's binary), so the case does not compile stowage a second time: the
# real sources through the same build_from_source are test_github_action's "no stowage-bin"
# case (22 CPU-s here).
SRC="$T/checkout"
mkdir -p "$SRC/agent" "$SRC/common" "$SRC/backends" "$SRC/ci-templates/shell"
cp "$STOW_TEST_SRC/ci-templates/shell/stowage-ci.sh" "$SRC/ci-templates/shell/"
printf 'cmake_minimum_required(VERSION 3.13)\nproject(stowage C)\nadd_executable(stowage agent/main.c)\n' >"$SRC/CMakeLists.txt"
printf '#include <unistd.h>\nint main(int argc, char **argv) { (void)argc; execv("%s", argv); return 127; }\n' \
    "$STOWAGE_BIN" >"$SRC/agent/main.c"
project p3 <<EOF
include:
  - local: stowage.gitlab-ci.yml
variables:
  STOWAGE_URL: file://$STORE
  STOWAGE_PATHS: ~/.docker-cache
  STOWAGE_SOURCE_DIR: $SRC
  STOWAGE_BUILD_CACHE: $T/build-cache
  STOWAGE_KEY: gl-{hash:requirements.txt}
  HOME: $T/runner-src
built:
  extends: .stowage
  script:
    - test "\$STOWAGE_CACHE_HIT" = true
    - test -f ~/.docker-cache/pip/torch.whl
EOF
mkdir -p "$T/runner-src"
gcl p3 --variable STOWAGE_BIN=
[ "$RC" -eq 0 ] && log_has "building stowage from $SRC" && log_has "built $T/build-cache/" && ok "built and restored" ||
    fail "$(show)"
gcl p3 --variable STOWAGE_BIN=
[ "$RC" -eq 0 ] && ! log_has "building stowage" && ok "second pipeline reused the build" || fail "$(show)"

case_begin "no binary anywhere: one warning, the script runs without the cache; strict fails"
project p4 <<EOF
include:
  - local: stowage.gitlab-ci.yml
variables:
  STOWAGE_URL: file://$STORE
  STOWAGE_PATHS: ~/.docker-cache
  STOWAGE_KEY: nobin-1
  PATH: /usr/bin:/bin
nobin:
  extends: .stowage
  script:
    - echo "script ran with \$STOWAGE_CACHE_HIT \$STOWAGE_CACHE_RESULT"
EOF
gcl p4 --variable STOWAGE_BIN=
[ "$RC" -eq 0 ] && log_has "stowage: warning: no stowage binary" && ok "the job passed with a warning" || fail "$(show)"
log_has "script ran with false error" && ok "the script ran; outputs say error" || fail "$(show)"
log_has "not saving" && [ ! -e "$STORE/manifests/main/nobin-1.json" ] && ok "nothing saved" || fail "$(show)"
gcl p4 --variable STOWAGE_BIN= --variable STOWAGE_STRICT=true
[ "$RC" -ne 0 ] && log_has "no stowage binary" && ! log_has "script ran" && ok "STOWAGE_STRICT: the job fails" || fail "$(show)"

case_begin "the example pipeline parses and validates"
mkdir -p "$T/ex/examples" "$T/ex/ci-templates/gitlab"
cp "$STOW_TEST_SRC/examples/gitlab-ci.yml" "$T/ex/.gitlab-ci.yml"
cp "$STOW_TEST_SRC/ci-templates/gitlab/stowage.gitlab-ci.yml" "$T/ex/ci-templates/gitlab/"
cp "$STOW_TEST_SRC"/examples/{requirements.txt,Dockerfile,Dockerfile.wheels} "$T/ex/examples/"
git_init "$T/ex"
gcl ex --list
[ "$RC" -eq 0 ] && log_has "build-image" && log_has "smoke" && ok "both jobs listed" || fail "$(show)"
gcl ex --preview
[ "$RC" -eq 0 ] && log_has 'stowage: find, download or build the binary' && ok "the image job extends .stowage" || fail "$(show)"

REL_STARTED=$SECONDS
mkdir -p "$T/srv"
nginx_start "$T/srv" || { echo "FAIL: cannot start nginx" >&2; exit 1; }
trap 'set +e; _lib_nginx_exit; _run_cleanups' EXIT
if ! release_setup; then
    echo "SKIP (release download cases): $REL_SKIP"
    finish
    exit 0
fi
TEMPLATE=$REL_SRC/ci-templates/gitlab/stowage.gitlab-ci.yml
DEAD_PORT=$(_free_port)

case_begin "release: job 1 downloads, verifies and caches stowage; job 2 uses the cache"
grep -q "^ *$REL_SHA  $REL_FILE\$" "$TEMPLATE" && ok "update-checksums.sh wrote the template's list" || fail "no $REL_SHA in $TEMPLATE"
project rel <<EOF
include:
  - local: stowage.gitlab-ci.yml
stages: [one, two]
variables:
  STOWAGE_URL: file://$STORE
  STOWAGE_PATHS: ~/.docker-cache
  STOWAGE_BUILD_CACHE: $T/gl-cache
  STOWAGE_KEY: gl-rel-1
  HOME: $T/runner-rel
  PATH: /usr/bin:/bin
first:
  stage: one
  extends: .stowage
  script:
    - test "\$STOWAGE_CACHE_RESULT" = miss
    - mkdir -p ~/.docker-cache && echo rel >~/.docker-cache/f
second:
  stage: two
  extends: .stowage
  script:
    - test "\$STOWAGE_CACHE_HIT" = true
EOF
mkdir -p "$T/runner-rel"
gcl rel --variable STOWAGE_BIN=
[ "$RC" -eq 0 ] && log_has "PASS  first" && log_has "PASS  second" && ok "both jobs passed" || fail "$(show)"
log_has "sha256 verified, in $T/gl-cache/$REL_VERSION/x86_64" && log_has "stowage: $REL_VERSION from $T/gl-cache" &&
    ok "downloaded by the first, cached for the second" || fail "$(show)"
[ "$(downloads)" = 1 ] && ok "one download" || fail "downloads: $(downloads)"
[ -f "$STORE/manifests/main/gl-rel-1.json" ] && ok "the downloaded binary saved" || fail "gl-rel-1 not saved"

case_begin "release: corrupted download refused (job goes on; strict fails it); unreachable server: warning"
project relbad <<EOF
include:
  - local: stowage.gitlab-ci.yml
variables:
  STOWAGE_URL: file://$STORE
  STOWAGE_PATHS: ~/.docker-cache
  STOWAGE_KEY: gl-bad-1
  HOME: $T/runner-bad
  PATH: /usr/bin:/bin
bad:
  extends: .stowage
  variables:
    STOWAGE_BUILD_CACHE: $T/gl-bad
    STOWAGE_RELEASE_URL: $REL_BAD_URL
  script:
    - test "\$STOWAGE_CACHE_RESULT" = error
    - echo "bad script ran"
bad-strict:
  extends: .stowage
  variables:
    STOWAGE_BUILD_CACHE: $T/gl-bad2
    STOWAGE_RELEASE_URL: $REL_BAD_URL
    STOWAGE_STRICT: "true"
  script:
    - echo "strict script ran"
down:
  extends: .stowage
  variables:
    STOWAGE_BUILD_CACHE: $T/gl-down
    STOWAGE_RELEASE_URL: http://127.0.0.1:$DEAD_PORT/rel
  script:
    - test "\$STOWAGE_CACHE_RESULT" = error
EOF
mkdir -p "$T/runner-bad"
gcl relbad --variable STOWAGE_BIN=
log_has "PASS  bad" && log_has "bad script ran" && ok "corrupted: the job ran without the cache" || fail "$(show)"
log_has "but the template lists $REL_SHA: refused, not run" && ok "the refusal names the listed sha256" || fail "$(show)"
log_has "FAIL  bad-strict" && ! log_has "strict script ran" && ok "strict: the job failed" || fail "$(show)"
log_has "PASS  down" && log_has "could not download http://127.0.0.1:$DEAD_PORT/rel/" && ok "unreachable: warning, job passed" ||
    fail "$(show)"
[ -z "$(find "$T/gl-bad" "$T/gl-bad2" -mindepth 1 -not -type d 2>/dev/null)" ] && ok "nothing kept from the corrupted download" ||
    fail "$(find "$T/gl-bad" "$T/gl-bad2" -mindepth 1)"
[ ! -e "$STORE/manifests/main/gl-bad-1.json" ] && ok "nothing saved" || fail "gl-bad-1 saved"

echo "timing: the release cases took $((SECONDS - REL_STARTED)) s"
finish
