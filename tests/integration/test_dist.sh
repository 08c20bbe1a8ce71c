#!/usr/bin/env bash
# The release artifacts (tools/dist.sh, docs/RELEASE.md): the tarball's binary runs where only
# glibc is installed. It is unpacked and run in a mount namespace (unshare -m) in which
# /usr/lib/x86_64-linux-gnu (and so /lib/x86_64-linux-gnu, a merged-/usr link) holds only the
# files of Debian's libc6 package; there it does save -> restore round trips against a file
# store and against nginx over HTTP and HTTPS (nginx runs outside, the network is shared).
# Also: the NEEDED list, the RPATH and the glibc symbol versions, --version, the checksums,
# the .deb installed with dpkg into a root that holds only glibc, and the lint of the GitHub
# workflows (action-validator) and of tools/Dockerfile.release (dockerfile-utils).
# The artifacts are built by `cmake --build $STOW_TEST_BUILD --target dist`, which packages
# again only when the binary changed.
# shellcheck disable=SC2016 # $ORIGIN and the sh -c programs are single-quoted on purpose
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/ci_lib.sh"
. "$(dirname "$0")/lib_nginx.sh"

: "${STOW_TEST_BUILD:?STOW_TEST_BUILD must point to the build directory (CTest sets it)}"
SRC=$STOW_TEST_SRC
LIBDIR=/usr/lib/x86_64-linux-gnu
[ "$(uname -m)" = x86_64 ] || { echo "SKIP: the artifact test is written for x86_64"; exit 77; }
if ! unshare -m --propagation private true 2>/dev/null; then
    echo "SKIP: unshare -m needs root (CAP_SYS_ADMIN)"
    exit 77
fi
if grep -q '^STOW_SANITIZE:BOOL=ON' "$STOW_TEST_BUILD/CMakeCache.txt" 2>/dev/null; then
    echo "SKIP: release artifacts are built from plain builds (the sanitizer runtimes would be NEEDED)"
    exit 77
fi
need_cmd dpkg
need_cmd readelf
need_cmd objdump
need_ci_tool action-validator
need_ci_tool dockerfile-utils

mkdir -p "$T/srv"
nginx_start "$T/srv" || { echo "FAIL: cannot start nginx" >&2; exit 1; }
trap 'set +e; _lib_nginx_exit; _run_cleanups' EXIT

case_begin "the dist target builds the tarball, the .deb and their checksums"
if ! cmake --build "$STOW_TEST_BUILD" --target dist >"$T/dist.log" 2>&1; then
    fail "cmake --build --target dist: $(tail -20 "$T/dist.log")"
    finish
fi
DIST=$STOW_TEST_BUILD/dist
shopt -s nullglob
tarballs=("$DIST"/stowage-*-linux-x86_64.tar.gz)
debs=("$DIST"/stowage_*_amd64.deb)
shopt -u nullglob
[ ${#tarballs[@]} = 1 ] && [ ${#debs[@]} = 1 ] && ok "$(basename "${tarballs[0]}") $(stat -c %s "${tarballs[0]}") bytes, $(basename "${debs[0]}") $(stat -c %s "${debs[0]}") bytes" ||
    { fail "expected one tarball and one .deb in $DIST: $(ls "$DIST")"; finish; }
TARBALL=${tarballs[0]} DEB=${debs[0]}
(cd "$DIST" && sha256sum -c "$(basename "$TARBALL").sha256" "$(basename "$DEB").sha256") >"$T/sum.out" 2>&1 &&
    ok "sha256sum -c passes for both" || fail "checksums: $(cat "$T/sum.out")"
# flip one bit (writing a fixed byte changes nothing when the byte already is that one)
cp "$TARBALL" "$T/bad.tar.gz" &&
    python3 -c 'import sys; p=sys.argv[1]; b=bytearray(open(p,"rb").read()); b[1000]^=0x01; open(p,"wb").write(b)' "$T/bad.tar.gz"
(cd "$T" && sed "s/  .*/  bad.tar.gz/" "$TARBALL.sha256" | sha256sum -c --status) &&
    fail "a changed byte still matches the checksum" || ok "a changed byte fails the checksum"

mkdir -p "$T/art"
tar -xzf "$TARBALL" -C "$T/art"
A=$(echo "$T"/art/stowage-*-linux-x86_64)
[ -x "$A/bin/stowage" ] || { fail "no bin/stowage in the tarball: $(tar -tzf "$TARBALL" | head)"; finish; }
tar -tvzf "$TARBALL" | awk '$2 != "0/0" {bad = 1} END {exit bad}' && ok "every entry is owned by 0/0" ||
    fail "entries not owned by 0/0: $(tar -tvzf "$TARBALL" | head -3)"

case_begin "dependencies: NEEDED list, RPATH, glibc symbol versions"
needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | LC_ALL=C sort | tr '\n' ' '; }
expected="libc.so.6 libcrypto.so.3 libcurl.so.4 libz.so.1 libzstd.so.1 "
got=$(needed "$A/bin/stowage")
[ "$got" = "$expected" ] && ok "bin/stowage NEEDED: $got" || fail "bin/stowage NEEDED is '$got', expected '$expected'"
readelf -d "$A/bin/stowage" | grep -q '(RPATH).*\[\$ORIGIN/../lib\]' && ok "DT_RPATH \$ORIGIN/../lib" ||
    fail "no DT_RPATH \$ORIGIN/../lib: $(readelf -d "$A/bin/stowage" | grep -i path)"
# glibc's own sonames: what the libc6 package ships under the library directory.
glibc_sonames=" $(dpkg -L libc6 | sed -n 's|^\(/usr\)\{0,1\}/lib\(64\)\{0,1\}/\(x86_64-linux-gnu/\)\{0,1\}\([^/]*\.so\.[0-9.]*\)$|\4|p' | sort -u | tr '\n' ' ') "
missing=""
for f in "$A/bin/stowage" "$A"/lib/*; do
    for n in $(needed "$f"); do
        [ -f "$A/lib/$n" ] || [[ $glibc_sonames == *" $n "* ]] || missing="$missing ${f##*/}->$n"
    done
done
[ -z "$missing" ] && ok "every NEEDED entry of the $(find "$A/lib" -type f | wc -l) bundled libraries is bundled or glibc's" ||
    fail "needed but neither bundled nor glibc's:$missing"
max=$(for f in "$A/bin/stowage" "$A"/lib/*; do objdump -T "$f"; done | grep -oE 'GLIBC_[0-9]+\.[0-9]+' | sed 's/GLIBC_//' | sort -uV | tail -1)
[ "$(printf '%s\n2.35\n' "$max" | sort -V | tail -1)" = 2.35 ] && ok "newest glibc symbol version needed: $max (Ubuntu 22.04 has 2.35)" ||
    fail "needs glibc $max, newer than Ubuntu 22.04's 2.35"
! grep -q "arc4random" <(objdump -T "$A/bin/stowage") && ok "no arc4random import (GLIBC_2.36)" ||
    fail "bin/stowage imports arc4random"

case_begin "--version prints the version and the git revision"
v=$("$A/bin/stowage" --version)
if [[ $v =~ ^stowage\ [0-9]+\.[0-9]+\.[0-9]+\ \(git\ ([0-9a-f]{4,}|unknown)\)$ ]]; then ok "$v"; else fail "version line: $v"; fi
if rev=$(git -C "$SRC" rev-parse --short HEAD 2>/dev/null); then
    [[ $v == *"(git $rev)" ]] && ok "revision is HEAD ($rev)" || fail "revision in '$v' is not HEAD $rev"
fi

# A directory with only glibc's files, to be mounted over the library directory.
G=$T/glibc
mkdir -p "$G"
dpkg -L libc6 | grep -E '^(/usr)?/lib/x86_64-linux-gnu/[^/]+$' | while read -r f; do cp -a "$f" "$G/"; done
# in_ns CMD...: runs CMD in a new mount namespace whose library directory holds only glibc.
# /bin/sh (dash) needs only libc.so.6; mount runs before the bind takes effect.
in_ns() {
    set +e
    unshare -m --propagation private /bin/sh -c 'mount --bind "$1" "$2" || exit 99; shift 2; exec "$@"' \
        ns "$G" "$LIBDIR" "$@" >"$T/out" 2>"$T/err"
    RC=$?
    set -e
}

case_begin "glibc-only namespace: our libraries are gone, the artifact runs"
in_ns "$STOWAGE_BIN" --version
[ "$RC" = 127 ] && err_has "libcurl.so.4" && ok "the system-linked build cannot load libcurl there (rc $RC)" ||
    fail "the system-linked build ran or failed otherwise (rc $RC): $(cat "$T/err")"
in_ns /bin/sh -c 'for f in /usr/lib/x86_64-linux-gnu/*; do echo "${f##*/}"; done'
grep -qE '^lib(curl|archive|ssl|zstd|jansson|inih|expat)' "$T/out" && fail "library dir still has: $(grep -E '^lib(curl|archive|ssl|zstd)' "$T/out" | head -3)" ||
    ok "library dir holds $(wc -l <"$T/out") files, all from libc6"
in_ns "$A/bin/stowage" --version
expect_rc 0 && out_has "^stowage " && ok "the artifact runs: $(cat "$T/out")"

# round_trip NAME URL [ARGS...]: save from runner NAME, restore as NAME-2, same tree.
round_trip() {
    local name=$1 url=$2
    shift 2
    runner "$name"
    make_fixture "$HOME/c"
    in_ns "$A/bin/stowage" save --key "$name-1" --path '~/c' --url "$url" --strict "$@"
    expect_rc 0 || return 0
    runner "$name-2"
    in_ns "$A/bin/stowage" restore --key "$name-1" --path '~/c' --url "$url" --strict "$@"
    expect_rc 0 || return 0
    out_has "cache-hit=true" || { fail "not a hit: $(cat "$T/out")"; return 0; }
    same_tree "$T/home-$name/c" "$HOME/c" && ok "save -> restore through $url"
}

case_begin "glibc-only namespace: round trip against a file store"
round_trip fs "file://$T/store"

case_begin "glibc-only namespace: round trip against nginx over HTTP"
round_trip http "$NGINX_URL/anon/store"

case_begin "glibc-only namespace: HTTPS with the bundled OpenSSL"
round_trip https "$NGINX_TLS_URL/anon/tls" --ca-bundle "$NGINX_CA"
runner tlsdefault
mkdir -p "$HOME/c" && echo x >"$HOME/c/f"
in_ns "$A/bin/stowage" save --key d-1 --path '~/c' --url "$NGINX_TLS_URL/anon/tls" --strict
expect_rc 1 && err_has "TLS verification failed" &&
    ok "the default CA store ($(strings "$A/lib/libcurl.so.4" | grep -m1 '^/etc/ssl/certs/')) is read and refuses the self-signed server" ||
    fail "rc $RC: $(cat "$T/err")"

case_begin "the .deb installs with dpkg into a root that holds only glibc"
[ "$(dpkg-deb -f "$DEB" Depends)" = "libc6 (>= 2.34)" ] && ok "Depends: libc6 (>= 2.34) only" ||
    fail "Depends: $(dpkg-deb -f "$DEB" Depends)"
R=$T/root
mkdir -p "$R/usr/lib/x86_64-linux-gnu" "$R/usr/lib64" "$R/var/lib/dpkg/info" "$R/var/lib/dpkg/updates" "$R/tmp"
cp -a "$G"/. "$R/usr/lib/x86_64-linux-gnu/"
ln -s usr/lib "$R/lib" && ln -s usr/lib64 "$R/lib64"
ln -s ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$R/usr/lib64/ld-linux-x86-64.so.2"
# The root's package database knows only libc6, whose files are what the root holds.
{ dpkg-query -s libc6:amd64 2>/dev/null || dpkg-query -s libc6; } >"$R/var/lib/dpkg/status"
: >"$R/var/lib/dpkg/available"
if dpkg --root="$R" --log=/dev/null --force-script-chrootless -i "$DEB" >"$T/dpkg.out" 2>&1; then
    ok "dpkg --root -i: $(grep -m1 'Setting up' "$T/dpkg.out")"
else
    fail "dpkg -i: $(tail -5 "$T/dpkg.out")"
fi
# /usr/bin/stowage is a symlink: the loader finds $ORIGIN through /proc/self/exe, so the root
# gets a /proc as every real system has.
mkdir -p "$R/proc"
set +e
unshare -m --propagation private /bin/sh -c 'mount -t proc proc "$1/proc" && exec chroot "$1" /usr/bin/stowage --version' \
    ns "$R" >"$T/out" 2>"$T/err"
RC=$?
set -e
expect_rc 0 && out_has "^stowage " && ok "chroot, through the /usr/bin symlink: $(cat "$T/out")"
dpkg --root="$R" -s stowage 2>/dev/null | grep -q '^Status: install ok installed' && ok "dpkg lists it as installed" ||
    fail "not installed in $R"

case_begin "GitHub workflows pass action-validator"
for f in "$SRC"/.github/workflows/*.yml; do
    if "$CI_TOOLS/action-validator" "$f" >"$T/av.out" 2>&1; then ok "${f#"$SRC"/}"; else fail "$f: $(head -40 "$T/av.out")"; fi
done
sed 's/^on:/onn:/' "$SRC/.github/workflows/release.yml" >"$T/bad.yml"
"$CI_TOOLS/action-validator" "$T/bad.yml" >/dev/null 2>&1 && fail "validator accepted a workflow without 'on'" ||
    ok "validator rejects a broken workflow"
grep -q 'run-all.sh' "$SRC/.github/workflows/ci.yml" && ok "ci.yml runs tests/run-all.sh" || fail "ci.yml does not run tests/run-all.sh"
grep -q "tags:" "$SRC/.github/workflows/release.yml" && grep -q "'v\*'" "$SRC/.github/workflows/release.yml" &&
    grep -q 'tools/dist.sh' "$SRC/.github/workflows/release.yml" && ok "release.yml builds with tools/dist.sh on v* tags" ||
    fail "release.yml: no v* tag trigger or no tools/dist.sh"

case_begin "tools/Dockerfile.release lints clean"
if "$CI_TOOLS/dockerfile-utils" lint "$SRC/tools/Dockerfile.release" >"$T/lint.out" 2>&1; then
    ok "dockerfile-utils lint"
else
    fail "$(cat "$T/lint.out")"
fi

finish
