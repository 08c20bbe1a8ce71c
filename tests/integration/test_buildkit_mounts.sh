#!/usr/bin/env bash
# BuildKit cache mounts across ephemeral runners, against a real Docker engine (dockerd 20.10
# with its built-in BuildKit, started here as root; skipped, exit 77, only when it cannot
# start). Two "runners" are two daemons with separate data roots and separate HOMEs sharing
# one file store: runner 1's build step fills a cache mount, stowage run extracts and saves
# it; runner 2's stowage run restores and injects it, and the same step finds the files
# (it prints how many it had to "download"). Also: a uid=1000 mount and the files a uid 1000
# step wrote stay owned by 1000; a failed build still extracts and saves; docker missing or
# the daemon unreachable is a warning (restore of plain directories still happens), an error
# with --strict; the mounts command's usage errors.
# shellcheck disable=SC2016 # Dockerfile text is literal
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_docker.sh"

unset STOWAGE_KEY STOWAGE_PATHS STOWAGE_URL GITHUB_OUTPUT STOWAGE_BUILDKIT_MOUNTS STOWAGE_BUILDKIT_DOCKERFILE

# The project: a step that "downloads" (sleeps 0.1 s per file, a slow source) only the files
# its cache mount lacks, as pip does with its cache; a second step runs as uid 1000 with a
# uid=1000 mount. The exported /result says what each step found.
N=24
mkdir -p "$T/app/ctx"
cat >"$T/app/Dockerfile" <<EOF
# (no syntax line: the built-in frontend, nothing pulled)
FROM base AS build
ARG FAIL=0
RUN --mount=type=cache,id=dl,target=/dl \\
    --mount=type=cache,target=/var/cache/apt,sharing=locked \\
    set -e; mkdir -p /result; got=0; \\
    for i in \$(seq 1 $N); do \\
      if [ ! -f /dl/pkg-\$i.whl ]; then sleep 0.1; seq 1 \$((i * 500)) > /dl/pkg-\$i.whl; got=\$((got + 1)); fi; \\
    done; \\
    mkdir -p /dl/sub; chmod 0750 /dl/sub; echo apt > /var/cache/apt/lists; \\
    echo \$got > /result/fetched; ls /dl | grep -c whl > /result/count; cat /var/cache/apt/lists > /result/apt; \\
    if [ "\$FAIL" = 1 ]; then echo late > /dl/late.whl; exit 3; fi
USER 1000
RUN --mount=type=cache,id=owned,target=/home/user/.cache,uid=1000,gid=1000,mode=0700 \\
    set -e; mkdir -p /tmp/r; stat -c '%u:%g %a' /home/user/.cache > /tmp/r/owned-root; \\
    if [ -f /home/user/.cache/mine ]; then stat -c '%u:%g' /home/user/.cache/mine /home/user/.cache/d > /tmp/r/owned-files; \\
      touch /home/user/.cache/d/again && echo writable > /tmp/r/owned-writable; fi; \\
    mkdir -p /home/user/.cache/d; echo x > /home/user/.cache/mine
FROM scratch
COPY --from=build /result/ /
COPY --from=build /tmp/r/ /
EOF
cat >"$T/stowage.ini" <<EOF
[storage]
url = file://$T/store
[cache]
key = bk-{hash:app/Dockerfile}
restore_keys = bk-
paths = ~/.docker-cache, ~/plain
[buildkit]
; dl named here, the others (apt, owned) found in the Dockerfile
mounts = downloads:/dl id=dl
dockerfile = $T/app/Dockerfile
docker = $DOCKER_CLI
EOF
export STOWAGE_CONFIG="$T/stowage.ini"

user_build() { # user_build OUTDIR [build args]: the project's own build, as CI would run it
    local out=$1
    shift
    echo "$DOCKER_CLI" build --network none --progress plain "$@" -f "$T/app/Dockerfile" -o "type=local,dest=$out" "$T/app/ctx"
}

docker_start r1
docker_import_busybox busybox
dk tag busybox base

case_begin "runner 1: the step downloads everything, run extracts and saves the mounts"
runner r1
mkdir -p "$HOME/plain" && echo kept >"$HOME/plain/file"
cd "$T"
t0=$(date +%s.%N)
# shellcheck disable=SC2046 # user_build prints the argv
stow run -- $(user_build "$T/r1out")
t1=$(date +%s.%N)
expect_rc 0 || cat "$T/err"
[ "$(cat "$T/r1out/fetched" 2>/dev/null)" = $N ] && ok "runner 1 fetched all $N files ($(awk "BEGIN{printf \"%.1f\", $t1 - $t0}") s for the whole run)" ||
    fail "fetched=$(cat "$T/r1out/fetched" 2>/dev/null)"
dl="$HOME/.docker-cache/downloads"
[ "$(find "$dl" -name 'pkg-*.whl' | wc -l)" = $N ] && ok "extracted $N files into $dl" || fail "extract: $(find "$dl" 2>&1 | head) $(cat "$T/err")"
[ "$(stat -c %a "$dl/sub" 2>/dev/null)" = 750 ] && ok "mode 0750 of a directory kept" || fail "mode $(stat -c %a "$dl/sub" 2>&1)"
[ "$(cat "$HOME/.docker-cache/var-cache-apt/lists" 2>/dev/null)" = apt ] && ok "the Dockerfile's apt mount (id = target) went to var-cache-apt" ||
    fail "apt mount: $(ls "$HOME/.docker-cache")"
owned="$HOME/.docker-cache/owned"
if [ -f "$owned/.stowage-mount.json" ] && python3 - "$owned/.stowage-mount.json" <<'EOF'; then
import json, sys
o = json.load(open(sys.argv[1]))["owners"]
assert o["."] == [1000, 1000] and o["mine"] == [1000, 1000] and o["d"] == [1000, 1000], o
EOF
    ok "owners of the uid=1000 mount recorded"
else
    fail "owners: $(head -20 "$owned/.stowage-mount.json" 2>&1)"
fi
err_has "mounts extract: 3 cache mounts" && ok "summary logged" || fail "no summary: $(cat "$T/err")"
[ -f "$T/store/manifests/default/$(sed -n 's/^cache-primary-key=//p' "$T/out").json" ] && ok "saved" || fail "not saved: $(cat "$T/err")"

case_begin "runner 2: restore + inject, the same step finds runner 1's files"
docker_start r2
docker_import_busybox busybox
dk tag busybox base
runner r2
t0=$(date +%s.%N)
# shellcheck disable=SC2046
stow run -- $(user_build "$T/r2out")
t1=$(date +%s.%N)
expect_rc 0 || cat "$T/err"
[ "$(cat "$HOME/plain/file" 2>/dev/null)" = kept ] && ok "plain directory restored" || fail "plain dir"
[ "$(cat "$T/r2out/fetched" 2>/dev/null)" = 0 ] && [ "$(cat "$T/r2out/count" 2>/dev/null)" = $N ] &&
    ok "runner 2's step saw $N files and fetched 0 ($(awk "BEGIN{printf \"%.1f\", $t1 - $t0}") s for the whole run)" ||
    fail "fetched=$(cat "$T/r2out/fetched" 2>/dev/null) count=$(cat "$T/r2out/count" 2>/dev/null); $(grep -i mount "$T/err")"
[ "$(cat "$T/r2out/apt" 2>/dev/null)" = apt ] && ok "apt mount injected" || fail "apt mount not injected"
[ "$(cat "$T/r2out/owned-root" 2>/dev/null)" = "1000:1000 700" ] && ok "uid=1000 mode=0700 mount root: $(cat "$T/r2out/owned-root")" ||
    fail "owned root: $(cat "$T/r2out/owned-root" 2>&1)"
[ "$(tr '\n' ' ' <"$T/r2out/owned-files" 2>/dev/null)" = "1000:1000 1000:1000 " ] && [ -f "$T/r2out/owned-writable" ] &&
    ok "files the uid 1000 step wrote on runner 1 are owned by 1000 on runner 2, and writable by it" ||
    fail "owned files: $(cat "$T/r2out/owned-files" 2>&1)"
err_has "mounts inject: 3 cache mounts" && ok "inject summary" || fail "$(cat "$T/err")"

case_begin "a failed build still extracts and saves; extract_on_failure=false does not"
# shellcheck disable=SC2046
stow run --key bk-failed -- $(user_build "$T/r3out" --build-arg FAIL=1)
[ "$RC" -ne 0 ] && ok "run exits with the build's status ($RC)" || fail "failed build exited 0"
[ -f "$HOME/.docker-cache/downloads/late.whl" ] && ok "the failed step's file was extracted" || fail "late.whl not extracted: $(cat "$T/err")"
runner r3
stow restore --key bk-failed
[ -f "$HOME/.docker-cache/downloads/late.whl" ] && ok "and saved: a fresh runner restores it" || fail "late.whl not in the store"
runner r2
# shellcheck disable=SC2046
stow run --key bk-failed2 --no-extract-on-failure -- $(user_build "$T/r4out" --build-arg FAIL=1 --build-arg X=2)
[ "$RC" -ne 0 ] && err_has "not extracted (extract_on_failure is off)" && ! err_has "mounts extract:" &&
    ok "--no-extract-on-failure skips the extract" || fail "$(cat "$T/err")"

case_begin "mounts inject/extract directly, with --buildkit-mount and a helper image name"
runner r5
mkdir -p "$HOME/.docker-cache/x/a b"
echo direct >"$HOME/.docker-cache/x/a b/f"
stow mounts inject --config /dev/null --buildkit-mount 'x:/x id=direct-x' --buildkit-helper-image busybox --docker "$DOCKER_CLI"
expect_rc 0 && err_has "mounts inject: 1 cache mount" && ok "injected" || fail "$(cat "$T/err")"
echo kept >"$HOME/.docker-cache/x/g"
touch -d '2020-01-01 00:00:00' "$HOME/.docker-cache/x/g"
stow mounts extract --config /dev/null --buildkit-mount 'x:/x id=direct-x' --docker "$DOCKER_CLI"
[ "$(cat "$HOME/.docker-cache/x/a b/f" 2>/dev/null)" = direct ] && [ ! -e "$HOME/.docker-cache/x/g" ] &&
    ok "extracted back; the host dir now mirrors the mount" || fail "$(cat "$T/err")"
# Same size, another mtime: the host copy is not taken for the mount's (unchanged files are
# linked from the previous tree only when size, mtime and mode match).
printf 'DIRECT\n' >"$HOME/.docker-cache/x/a b/f"
stow mounts extract --config /dev/null --buildkit-mount 'x:/x id=direct-x' --docker "$DOCKER_CLI"
[ "$(cat "$HOME/.docker-cache/x/a b/f" 2>/dev/null)" = direct ] && ok "a changed host file is replaced by the mount's" ||
    fail "host file kept: $(cat "$HOME/.docker-cache/x/a b/f")"
stow mounts inject --config /dev/null --buildkit-mount 'x:/x id=direct-x' --buildkit-helper-image no-such-image --docker "$DOCKER_CLI"
expect_rc 0 && err_has "warning" && err_has "no-such-image" && ok "a missing helper image is a warning naming it" || fail "$(cat "$T/err")"
mkdir -p "$HOME/.docker-cache/g" && echo keep >"$HOME/.docker-cache/g/f"
stow mounts extract --config /dev/null --buildkit-mount 'g:/g id=never-used' --docker "$DOCKER_CLI"
expect_rc 0 && [ "$(cat "$HOME/.docker-cache/g/f" 2>/dev/null)" = keep ] && err_has "is empty; .* keeps its contents" &&
    ok "an empty mount does not replace a host directory with content" || fail "$(cat "$T/err")"
# A buildx builder (docker-container driver) cannot be created here: Debian's client has no
# buildx plugin and the moby/buildkit image cannot be pulled. What is checked: the builder is
# looked up with `docker buildx inspect`, and its absence is a warning that says what is needed.
if "$DOCKER_CLI" buildx version >/dev/null 2>&1; then
    fail "this client has buildx: the docker-container case should be written for real now"
else
    stow mounts inject --config /dev/null --buildkit-mount 'x:/x id=direct-x' --builder stowage-bk --docker "$DOCKER_CLI"
    expect_rc 0 && err_has "warning: mounts inject failed.*builder stowage-bk: .*buildx inspect stowage-bk.*needs the buildx plugin" &&
        ok "builder without buildx: a warning naming what is missing" || fail "$(cat "$T/err")"
    stow mounts inject --config /dev/null --buildkit-mount 'x:/x id=direct-x' --builder stowage-bk --docker "$DOCKER_CLI" --strict
    expect_rc 1 && ok "the same with --strict: exit 1" || fail "$(cat "$T/err")"
fi
stow mounts inject --config /dev/null --docker "$DOCKER_CLI"
expect_rc 2 && err_has "no BuildKit cache mounts configured" && ok "nothing configured: usage error" || fail "$(cat "$T/err")"
stow mounts sideways --config /dev/null --buildkit-mount 'x:/x'
expect_rc 2 && ok "unknown subcommand: usage error" || fail "$(cat "$T/err")"
stow mounts inject --config /dev/null --buildkit-mount 'x'
expect_rc 2 && err_has "NAME:TARGET" && ok "bad spec: usage error" || fail "$(cat "$T/err")"

case_begin "docker missing / daemon unreachable: warning, plain restore still happens, exit 0; --strict fails"
runner r6
stow run --docker "$T/no-such-docker" -- true
expect_rc 0 && err_has "warning.*cannot run $T/no-such-docker" && [ "$(cat "$HOME/plain/file" 2>/dev/null)" = kept ] &&
    ok "docker missing: warned, restored, exit 0" || fail "$(cat "$T/err")"
stow run --docker "$T/no-such-docker" --strict -- true
expect_rc 1 && err_has "cannot run" && ok "docker missing with --strict: exit 1" || fail "$(cat "$T/err")"
DOCKER_HOST="unix://$T/no-daemon.sock" stow run -- true
expect_rc 0 && err_has "daemon is unreachable" && err_has "not extracted: they were not injected" &&
    ok "daemon unreachable: warned, no extract, exit 0" || fail "$(cat "$T/err")"
DOCKER_HOST="unix://$T/no-daemon.sock" stow mounts extract --strict
expect_rc 1 && err_has "daemon is unreachable" && ok "daemon unreachable with --strict: exit 1" || fail "$(cat "$T/err")"

finish
