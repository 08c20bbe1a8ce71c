#!/usr/bin/env bash
# examples/Dockerfile built for real against a real dockerd (20.10, built-in BuildKit), on two
# "runners" (two daemons with separate data roots, one file store), with stowage run
# --dockerfile carrying its apt and pip cache mounts: runner 2's build downloads neither the
# .deb nor the wheel again. Skipped (77) only when dockerd cannot start here.
#
# No registry and no outside network during the test:
#   - python:3.11-slim is a local image: a debootstrap bookworm minbase root with python3 and
#     python3-pip, imported with `docker import`. It is built once and kept under the build
#     directory (examples-base/<recipe hash>/; about 300 MB). Building it needs the Debian
#     mirror once (about 6 minutes on a loaded 2-core machine; 1.5 CPU-minutes); later runs
#     reuse it.
#   - the example's `apt-get update && apt-get install libgomp1` reads a local apt repository
#     (libgomp1's .deb, fetched with the base) served by python's http.server on 127.0.0.1;
#     the base's sources.list points there.
#   - `pip install -r requirements.txt` installs a small wheel built here (a stand-in for the
#     real requirements, which are 3 GB) from the same server (PIP_INDEX_URL in the base).
#   The builds use --network host so that 127.0.0.1 is that server. pip keeps plain-http
#   downloads in its cache only from a trusted host (PyPI is https), hence PIP_TRUSTED_HOST.
# The context is a copy of examples/ with that requirements.txt. Dockerfile.wheels and
# build-cached.sh build need the buildx plugin and a docker-container builder (moby/buildkit
# from a registry), which this machine does not have: not run here (docs/BUILDKIT.md).
# shellcheck disable=SC2016 # literal text for other shells
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_docker.sh"

unset STOWAGE_KEY STOWAGE_PATHS STOWAGE_URL GITHUB_OUTPUT STOWAGE_BUILDKIT_MOUNTS STOWAGE_BUILDKIT_DOCKERFILE

# ---- the base image's root, built once per recipe
RECIPE="debootstrap --variant=minbase --include=python3,python3-pip bookworm; apt-get download libgomp1"
KEY=$(printf '%s' "$RECIPE" | sha256sum | cut -c1-12)
BASE="${STOW_TEST_BUILD:-$STOW_TEST_SRC/build}/examples-base/$KEY"
if [ "$(id -u)" -ne 0 ]; then
    echo "SKIP: dockerd needs root"
    exit 77
fi
if [ ! -f "$BASE/ready" ]; then
    command -v debootstrap >/dev/null 2>&1 || {
        echo "FAIL: debootstrap is not installed (tests/install-deps.sh installs it)" >&2
        exit 1
    }
    echo "building the example base once into $BASE (debootstrap; needs the Debian mirror)"
    rm -rf "$BASE" && mkdir -p "$BASE/repo"
    t0=$SECONDS
    debootstrap --variant=minbase --include=python3,python3-pip bookworm "$BASE/root" \
        >"$BASE/debootstrap.log" 2>&1 || {
        echo "FAIL: debootstrap: $(tail -5 "$BASE/debootstrap.log")" >&2
        exit 1
    }
    (cd "$BASE/repo" && apt-get download libgomp1 >/dev/null 2>&1) || {
        echo "FAIL: apt-get download libgomp1" >&2
        exit 1
    }
    rm -rf "$BASE/root/var/cache/apt/archives/"*.deb "$BASE/root/var/cache/apt/"*.bin "$BASE/root/var/lib/apt/lists/"*_* \
        "$BASE/root/usr/share/doc" "$BASE/root/usr/share/man" "$BASE/root/usr/share/locale" "$BASE/root/usr/share/info"
    touch "$BASE/ready"
    echo "base built in $((SECONDS - t0)) s"
fi

# ---- the local package server: an apt repository and a pip index
SRV="$T/srv"
mkdir -p "$SRV/apt" "$SRV/simple/stowage-demo"
cp "$BASE/repo/"*.deb "$SRV/apt/"
(cd "$SRV/apt" && dpkg-scanpackages --multiversion . 2>/dev/null >Packages)
# A wheel with about 2 MB of incompressible data: the "download" pip keeps in its cache mount.
python3 - "$SRV/simple/stowage-demo" <<'PY'
import base64, hashlib, os, sys, zipfile
name, ver = "stowage_demo", "1.0"
files = {
    f"{name}/__init__.py": b"VERSION = '1.0'\n",
    f"{name}/data.bin": os.urandom(2 << 20),
    f"{name}-{ver}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: stowage-demo\nVersion: {ver}\n".encode(),
    f"{name}-{ver}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: stowage-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
rec = f"{name}-{ver}.dist-info/RECORD"
lines = []
for p, b in files.items():
    h = base64.urlsafe_b64encode(hashlib.sha256(b).digest()).rstrip(b"=").decode()
    lines.append(f"{p},sha256={h},{len(b)}")
lines.append(f"{rec},,")
files[rec] = ("\n".join(lines) + "\n").encode()
with zipfile.ZipFile(os.path.join(sys.argv[1], f"{name}-{ver}-py3-none-any.whl"), "w", zipfile.ZIP_DEFLATED) as z:
    for p, b in files.items():
        z.writestr(p, b)
PY
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
# Files are served with Cache-Control, as PyPI's file host does; pip caches a download only
# when the response allows it.
cat >"$T/serve.py" <<'PY'
import functools, http.server, sys
class H(http.server.SimpleHTTPRequestHandler):
    def end_headers(self):
        if self.path.endswith((".whl", ".deb")):
            self.send_header("Cache-Control", "public, max-age=31536000, immutable")
        super().end_headers()
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), functools.partial(H, directory=sys.argv[2])).serve_forever()
PY
python3 "$T/serve.py" "$PORT" "$SRV" >"$T/http.log" 2>&1 &
SRV_PID=$!
at_exit "kill $SRV_PID"
for ((i = 0; i < 100; i++)); do
    # readiness poll of the server's socket
    python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$PORT" 2>/dev/null && break
    sleep 0.1
done
printf 'deb [trusted=yes] http://127.0.0.1:%s/apt ./\n' "$PORT" >"$BASE/root/etc/apt/sources.list"
rm -f "$BASE/root/etc/apt/sources.list.d/"*.sources 2>/dev/null
# GETs the server answered with 200 whose path matches $1
served() { grep -c "\"GET [^ ]*$1[^ ]* HTTP/1.[01]\" 200" "$T/http.log"; }

# ---- the project: a copy of examples/ whose requirements are the local wheel
APP="$T/app"
mkdir -p "$APP"
cp "$STOW_TEST_SRC/examples/Dockerfile" "$STOW_TEST_SRC/examples/app.py" "$APP/"
printf 'stowage-demo==1.0\n' >"$APP/requirements.txt"
cat >"$T/stowage.ini" <<EOF
[storage]
url = file://$T/store
[cache]
key = examples-{hash:app/requirements.txt,app/Dockerfile}
paths = ~/.docker-cache
[buildkit]
dockerfile = $APP/Dockerfile
docker = $DOCKER_CLI
EOF
export STOWAGE_CONFIG="$T/stowage.ini"

one_runner() { # one_runner NAME: a fresh daemon and HOME; stowage run around the example's build
    local t0=$SECONDS
    docker_start "$1"
    tar -C "$BASE/root" -cf - . | dk import \
        -c "ENV PIP_INDEX_URL=http://127.0.0.1:$PORT/simple PIP_TRUSTED_HOST=127.0.0.1 PIP_BREAK_SYSTEM_PACKAGES=1 PIP_ROOT_USER_ACTION=ignore" \
        -c 'CMD ["python3"]' - python:3.11-slim >/dev/null
    docker_import_busybox busybox
    runner "$1"
    echo "runner $1: daemon up and images imported in $((SECONDS - t0)) s"
    t0=$SECONDS
    cd "$T"
    stow run -v -- "$DOCKER_CLI" build --network host --progress plain -t stowage-example "$APP"
    echo "runner $1: stowage run $((SECONDS - t0)) s"
}

case_begin "runner 1: examples/Dockerfile builds; its apt and pip downloads are extracted and saved"
one_runner r1
expect_rc 0 && ok "built" || fail "$(tail -30 "$T/err")"
[ "$(dk run --rm --network none stowage-example python3 -c 'import stowage_demo; print(stowage_demo.VERSION)')" = 1.0 ] &&
    ok "the image imports the installed package" || fail "the image does not have the package"
[ "$(served 'libgomp1_.*\.deb')" = 1 ] && [ "$(served 'stowage_demo-1.0-py3-none-any.whl')" = 1 ] &&
    ok "the .deb and the wheel were downloaded once" || fail "http log: $(cat "$T/http.log")"
err_has "mounts extract: 3 cache mounts" && ok "three cache mounts extracted (apt-system-cache, apt-lib-cache, pip-user-cache)" ||
    fail "$(grep 'mounts' "$T/err")"
find "$HOME/.docker-cache/apt-system-cache" -name 'libgomp1_*.deb' | grep -q . && ok "the .deb is in ~/.docker-cache/apt-system-cache" ||
    fail "no .deb: $(find "$HOME/.docker-cache" -maxdepth 3 | head -20)"
[ -n "$(find "$HOME/.docker-cache/pip-user-cache" -type f -size +1M)" ] && ok "the wheel is in ~/.docker-cache/pip-user-cache" ||
    fail "no cached wheel: $(find "$HOME/.docker-cache/pip-user-cache" | head -20)"
[ -n "$(find "$T/store" -name '*.json' -path '*manifests*')" ] && ok "saved" || fail "nothing in the store"

case_begin "runner 2 (fresh daemon and HOME): restore + inject, the build downloads nothing"
one_runner r2
expect_rc 0 && ok "built" || fail "$(tail -30 "$T/err")"
err_has "restore hit" && err_has "mounts inject: 3 cache mounts" && ok "restored and injected" || fail "$(grep -E 'restore|mounts' "$T/err")"
[ "$(served 'libgomp1_.*\.deb')" = 1 ] && ok "apt did not download the .deb again" || fail "http log: $(cat "$T/http.log")"
[ "$(served 'stowage_demo-1.0-py3-none-any.whl')" = 1 ] && ok "pip did not download the wheel again" ||
    fail "http log: $(cat "$T/http.log")"

echo "test_examples_docker: $SECONDS s in all"
finish
