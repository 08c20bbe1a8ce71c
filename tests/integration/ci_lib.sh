# Helpers for the CI-integration tests (GitHub action, GitLab template, shell wrapper).
# Source after lib.sh.

CI_TOOLS="$STOW_TEST_SRC/tests/ci-tools/node_modules/.bin"

# need_ci_tool NAME: the npm tools come from tests/ci-tools (npm ci in tests/run-all.sh);
# a missing one is a failure, not a skip.
need_ci_tool() {
    if [ ! -x "$CI_TOOLS/$1" ]; then
        echo "FAIL: $CI_TOOLS/$1 is missing: run (cd tests/ci-tools && npm ci) or tests/run-all.sh" >&2
        exit 1
    fi
}

need_cmd() {
    if ! command -v "$1" >/dev/null 2>&1; then
        echo "FAIL: $1 is not installed (tests/install-deps.sh installs it)" >&2
        exit 1
    fi
}

# jget FILE a.b.c: prints the value at that path of a JSON file ("null" when absent; strings
# raw, everything else as JSON).
jget() {
    python3 - "$1" "$2" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))
for part in sys.argv[2].split("."):
    if isinstance(v, dict) and part in v:
        v = v[part]
    elif isinstance(v, list) and part.isdigit() and int(part) < len(v):
        v = v[int(part)]
    else:
        v = None
        break
print(v if isinstance(v, str) else json.dumps(v))
PY
}

# release_setup: what the bootstrap tests download. Needs nginx_start (lib_nginx.sh) first.
#   - the release tarball of $STOW_TEST_BUILD (`--target dist`, built only when build/dist has
#     none), published as $NGINX_URL/anon/rel/v<version>/<file>, and a copy with one flipped
#     byte under $NGINX_URL/anon/bad/v<version>/<file>;
#   - $REL_SRC: a copy of the parts of the stowage checkout the templates use (sources,
#     ci-templates) whose checksum lists name that tarball (written by
#     ci-templates/update-checksums.sh, with release-url $REL_URL).
# Sets REL_VERSION, REL_FILE, REL_SHA, REL_URL, REL_BAD_URL, REL_SRC, REL_LOG (nginx's access
# log). Returns 1 (with REL_SKIP set) for a sanitizer build, which cannot make the artifact.
# shellcheck disable=SC2034 # REL_* are for the sourcing test
release_setup() {
    : "${STOW_TEST_BUILD:?STOW_TEST_BUILD must point to the build directory (CTest sets it)}"
    if grep -q '^STOW_SANITIZE:BOOL=ON' "$STOW_TEST_BUILD/CMakeCache.txt" 2>/dev/null; then
        REL_SKIP="a STOW_SANITIZE build makes no release artifact"
        return 1
    fi
    local tb
    # Always through the target (it repacks only when the binary changed): a tarball left
    # from an older build would hold an older stowage.
    cmake --build "$STOW_TEST_BUILD" --target dist >"$T/dist.log" 2>&1 || {
        echo "FAIL: cmake --build --target dist: $(tail -20 "$T/dist.log")" >&2
        exit 1
    }
    tb=$(find "$STOW_TEST_BUILD/dist" -maxdepth 1 -name 'stowage-*-linux-*.tar.gz' | head -n 1)
    REL_FILE=$(basename "$tb")
    REL_VERSION=${REL_FILE#stowage-}
    REL_VERSION=${REL_VERSION%-linux-*}
    REL_SHA=$(sha256sum "$tb" | cut -d' ' -f1)
    mkdir -p "$NGINX_ROOT/anon/rel/v$REL_VERSION" "$NGINX_ROOT/anon/bad/v$REL_VERSION" "$T/rel-dist"
    cp "$tb" "$NGINX_ROOT/anon/rel/v$REL_VERSION/"
    cp "$tb" "$NGINX_ROOT/anon/bad/v$REL_VERSION/"
    python3 -c 'import sys; p=sys.argv[1]; b=bytearray(open(p,"rb").read()); b[len(b)//2]^=1; open(p,"wb").write(b)' \
        "$NGINX_ROOT/anon/bad/v$REL_VERSION/$REL_FILE"
    REL_URL=$NGINX_URL/anon/rel
    REL_BAD_URL=$NGINX_URL/anon/bad
    REL_LOG=$NGINX_DIR/logs/access.log
    cp "$tb" "$T/rel-dist/" && (cd "$T/rel-dist" && sha256sum "$REL_FILE" >"$REL_FILE.sha256")
    REL_SRC=$T/rel-src
    mkdir -p "$REL_SRC"
    (cd "$STOW_TEST_SRC" && cp -a CMakeLists.txt common backends agent tools ci-templates "$REL_SRC/")
    sh "$REL_SRC/ci-templates/update-checksums.sh" "$REL_URL" "$T/rel-dist" >"$T/update-checksums.log" 2>&1 || {
        echo "FAIL: update-checksums.sh: $(cat "$T/update-checksums.log")" >&2
        exit 1
    }
}

# downloads: how many times nginx served the release tarball (GET, 200).
downloads() {
    awk -v p="\"GET /anon/rel/v$REL_VERSION/$REL_FILE " 'index($0, p) && $9 == 200 { n++ } END { print n + 0 }' "$REL_LOG"
}

# path_without_cmake DIR: fills DIR with links to everything in /usr/bin and /bin but cmake
# and the C compilers, for PATH=DIR: a runner that cannot build stowage.
path_without_cmake() {
    python3 - "$1" <<'PY'
import os, sys
d = sys.argv[1]
os.makedirs(d, exist_ok=True)
for src in ("/usr/bin", "/bin"):
    for n in os.listdir(src):
        if n in ("cmake", "cc", "gcc", "c99", "make") or os.path.lexists(os.path.join(d, n)):
            continue
        os.symlink(os.path.join(src, n), os.path.join(d, n))
PY
}

# mounts_stubs: for the templates' BuildKit-mount ordering tests only (the real engine is
# covered by test_buildkit_mounts.sh). Writes
#   $MOUNTS_STOWAGE  a wrapper of $STOWAGE_BIN that appends "stowage ARGS" to $MOUNTS_CALLS,
#   $MOUNTS_DOCKER   a stand-in docker client that appends "docker ARGS" to $MOUNTS_CALLS and
#                    writes what stowage's helper build exports (its done marker, and empty
#                    mount tars for an extract), or exits 1 when $MOUNTS_DOCKER_FAIL is 1.
# mounts_seq prints the calls as one line, "restore inject docker BUILD extract docker save"
# (docker: a build; the daemon check, docker version, is left out).
# shellcheck disable=SC2034 # MOUNTS_* are for the sourcing test
mounts_stubs() {
    local d="$T/mounts-stubs"
    mkdir -p "$d"
    MOUNTS_CALLS="$T/mounts-calls.log"
    MOUNTS_STOWAGE="$d/stowage"
    MOUNTS_DOCKER="$d/docker"
    export MOUNTS_CALLS
    # shellcheck disable=SC2016 # the wrapper's own shell expands it
    printf '#!/bin/sh\nprintf "stowage %%s\\n" "$*" >>"$MOUNTS_CALLS"\nexec "%s" "$@"\n' "$STOWAGE_BIN" >"$MOUNTS_STOWAGE"
    cat >"$MOUNTS_DOCKER" <<'SH'
#!/bin/sh
printf 'docker %s\n' "$*" >>"$MOUNTS_CALLS"
if [ "${MOUNTS_DOCKER_FAIL:-0}" = 1 ]; then
    echo "Cannot connect to the Docker daemon (stand-in)" >&2
    exit 1
fi
if [ "$1" = version ]; then
    echo 20.10.24
    exit 0
fi
prev="" dest="" df=""
for a in "$@"; do
    case "$prev" in
    -o) dest=${a#type=local,dest=} ;;
    -f) df=$a ;;
    esac
    prev=$a
done
[ -n "$dest" ] && [ -n "$df" ] || exit 2
if grep -q 'tar -cf' "$df"; then
    mkdir -p "$dest/stowage-out"
    for i in 0 1 2 3; do tar -cf "$dest/stowage-out/m$i.tar" -T /dev/null; done
    echo ok >"$dest/stowage-out/done"
else
    mkdir -p "$dest"
    echo ok >"$dest/done"
fi
SH
    chmod +x "$MOUNTS_STOWAGE" "$MOUNTS_DOCKER"
    : >"$MOUNTS_CALLS"
}

mounts_seq() {
    # shellcheck disable=SC2016 # awk's fields
    awk '$1 == "docker" && $2 == "version" { next }
         $1 == "stowage" && $2 == "mounts" { printf "%s%s", sep, $3; sep = " "; next }
         $1 == "stowage" { printf "%s%s", sep, $2; sep = " "; next }
         { printf "%s%s", sep, $1; sep = " " }
         END { print "" }' "$MOUNTS_CALLS"
}
