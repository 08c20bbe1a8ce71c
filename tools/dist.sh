#!/usr/bin/env bash
# Builds the release artifacts of stowage (docs/RELEASE.md), reproducibly:
#   stowage-<version>-linux-<arch>.tar.gz   bin/stowage + the shared libraries it needs but glibc's,
#                                           under lib/, found through DT_RPATH $ORIGIN/../lib
#   stowage_<version>_<debarch>.deb          the same tree under /opt/stowage, /usr/bin/stowage
#   and a .sha256 beside each ("<sha256>  <file name>", as sha256sum -c reads it).
#
# Usage:
#   tools/dist.sh [--build-dir DIR] [--out DIR]
#       configures DIR (default build-dist; RelWithDebInfo, the project's default, so that
#       the result is the same bytes as `cmake --build build --target dist`), builds the stowage_dist target
#       and packages it into --out (default dist/)
#   tools/dist.sh --package-only --binary FILE --out DIR
#       packages an already built stowage_dist binary (what `cmake --build B --target dist` runs)
#
# Reproducible: every mtime is SOURCE_DATE_EPOCH (default: the last commit's time), tar entries
# are sorted with owner/group 0, gzip -n, and the binary is stripped and built with its source
# paths mapped to "."; the same checkout and toolchain give the same bytes.
# Needs a Debian/Ubuntu build host (dpkg tells which bundled files are glibc's own).
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=$SRC/build-dist
OUT=$SRC/dist
BIN=
PACKAGE_ONLY=0
# The oldest glibc the artifact must run on: Ubuntu 22.04's.
MAX_GLIBC=${STOW_DIST_MAX_GLIBC:-2.35}

die() {
    echo "dist.sh: error: $*" >&2
    exit 1
}

while [ $# -gt 0 ]; do
    case $1 in
    --build-dir) BUILD_DIR=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --binary) BIN=$2; shift 2 ;;
    --package-only) PACKAGE_ONLY=1; shift ;;
    -h | --help) sed -n '2,19p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
done

for cmd in readelf objdump strip dpkg dpkg-deb gzip tar sha256sum; do
    command -v "$cmd" >/dev/null || die "$cmd is needed"
done

if [ "$PACKAGE_ONLY" = 0 ]; then
    cmake -S "$SRC" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$BUILD_DIR" --target stowage_dist -j "$(nproc)"
    BIN=$BUILD_DIR/dist-bin/stowage
fi
[ -n "$BIN" ] && [ -x "$BIN" ] || die "no binary to package (--binary FILE)"

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH=$(git -C "$SRC" log -1 --format=%ct 2>/dev/null || true)
    [ -n "$SOURCE_DATE_EPOCH" ] || SOURCE_DATE_EPOCH=$(stat -c %Y "$SRC/CMakeLists.txt")
fi
export SOURCE_DATE_EPOCH

# "stowage 0.1.0 (git abc1234)"
vline=$("$BIN" --version) || die "$BIN --version failed"
VERSION=$(printf '%s\n' "$vline" | awk '{print $2}')
[[ $VERSION =~ ^[0-9][0-9A-Za-z.+~-]*$ ]] || die "cannot read the version from: $vline"
case $(readelf -h "$BIN" | awk -F: '/Machine:/{print $2}' | sed 's/^ *//') in
"Advanced Micro Devices X86-64") ARCH=x86_64 DEBARCH=amd64 ;;
AArch64) ARCH=aarch64 DEBARCH=arm64 ;;
*) die "unsupported machine type of $BIN" ;;
esac

NAME=stowage-$VERSION-linux-$ARCH
WORK=$(mktemp -d "${TMPDIR:-/tmp}/stowage-dist.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ROOT=$WORK/$NAME
mkdir -p "$ROOT/bin" "$ROOT/lib" "$ROOT/share/doc/stowage/third-party" "$OUT"
strip --strip-all -o "$ROOT/bin/stowage" "$BIN"

# glibc's own files (package libc6) stay on the target; everything else the binary loads is
# bundled under lib/ with its soname as file name.
owner_of() {
    local real
    real=$(readlink -f "$1")
    { dpkg -S "$real" 2>/dev/null || dpkg -S "$1" 2>/dev/null; } | head -1 | cut -d: -f1
}
pkgs=()
while read -r soname path; do
    [ -n "$path" ] && [ -f "$path" ] || continue
    pkg=$(owner_of "$path")
    [ -n "$pkg" ] || die "no package owns $path"
    [ "$pkg" = libc6 ] && continue
    cp -L "$path" "$ROOT/lib/$soname"
    pkgs+=("$pkg")
done < <(env -u LD_LIBRARY_PATH ldd "$BIN" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}')

# Licences and versions of what is bundled (the libraries keep their own licences).
printf '%s\n' "${pkgs[@]}" | LC_ALL=C sort -u >"$WORK/pkgs"
while read -r pkg; do
    cp "/usr/share/doc/$pkg/copyright" "$ROOT/share/doc/stowage/third-party/$pkg.copyright"
    dpkg-query -W -f '${Package} ${Version}\n' "$pkg" | head -1
done <"$WORK/pkgs" >"$ROOT/share/doc/stowage/BUNDLED"
cp "$SRC/README.md" "$ROOT/share/doc/stowage/README.md"
[ -f "$SRC/docs/RELEASE.md" ] && cp "$SRC/docs/RELEASE.md" "$ROOT/share/doc/stowage/RELEASE.md"
printf '%s\n' "$vline" >"$ROOT/share/doc/stowage/VERSION"

# Checks: every NEEDED entry is bundled or glibc's, the RPATH is $ORIGIN/../lib, and no
# symbol needs a glibc newer than MAX_GLIBC.
glibc_sonames=" libc.so.6 libm.so.6 libpthread.so.0 libdl.so.2 librt.so.1 libresolv.so.2 ld-linux-x86-64.so.2 ld-linux-aarch64.so.1 libmvec.so.1 libanl.so.1 libutil.so.1 "
for f in "$ROOT/bin/stowage" "$ROOT"/lib/*; do
    for n in $(readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
        [ -f "$ROOT/lib/$n" ] || [[ $glibc_sonames == *" $n "* ]] ||
            die "${f#"$ROOT"/} needs $n, which is neither bundled nor part of glibc"
    done
done
# shellcheck disable=SC2016 # a literal $ORIGIN
readelf -d "$ROOT/bin/stowage" | grep -q '(RPATH).*\[\$ORIGIN/../lib\]' || die "bin/stowage lacks RPATH \$ORIGIN/../lib"
need=$(for f in "$ROOT/bin/stowage" "$ROOT"/lib/*; do objdump -T "$f" | grep -oE 'GLIBC_[0-9]+\.[0-9]+(\.[0-9]+)?'; done |
    sed 's/GLIBC_//' | sort -uV | tail -1)
[ "$(printf '%s\n%s\n' "$need" "$MAX_GLIBC" | sort -V | tail -1)" = "$MAX_GLIBC" ] ||
    die "the bundle needs glibc $need, newer than $MAX_GLIBC"
env -u LD_LIBRARY_PATH "$ROOT/bin/stowage" --version >/dev/null || die "the bundled binary does not run"

# Fixed modes and times, sorted entries, numeric owner 0.
find "$ROOT" -type d -exec chmod 0755 {} +
find "$ROOT" -type f -exec chmod 0644 {} +
chmod 0755 "$ROOT/bin/stowage"
find "$ROOT" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
TARBALL=$NAME.tar.gz
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" --format=gnu \
    -C "$WORK" -cf - "$NAME" | gzip -n -6 >"$OUT/$TARBALL.tmp"
mv "$OUT/$TARBALL.tmp" "$OUT/$TARBALL"

# The .deb: the same tree under /opt/stowage; it needs only glibc.
DEB=stowage_${VERSION}_$DEBARCH.deb
D=$WORK/deb
mkdir -p "$D/DEBIAN" "$D/opt" "$D/usr/bin" "$D/usr/share/doc/stowage"
cp -a "$ROOT" "$D/opt/stowage"
ln -s ../../opt/stowage/bin/stowage "$D/usr/bin/stowage"
{
    echo "stowage $VERSION: a CI cache persistence agent."
    echo "Bundled third-party libraries and their licences: /opt/stowage/share/doc/stowage/"
    cat "$ROOT/share/doc/stowage/BUNDLED"
} >"$D/usr/share/doc/stowage/copyright"
cat >"$D/DEBIAN/control" <<CTL
Package: stowage
Version: $VERSION
Architecture: $DEBARCH
Maintainer: stowage maintainers <stowage@localhost>
Depends: libc6 (>= 2.34)
Installed-Size: $(du -sk --apparent-size "$D" | cut -f1)
Section: devel
Priority: optional
Description: CI cache persistence agent
 Restores and saves CI cache directories from S3, HTTP or file stores as
 zstd tarball layers with deltas. Self-contained: the libraries it needs
 beyond glibc are bundled under /opt/stowage/lib.
CTL
find "$D" -type d -exec chmod 0755 {} +
find "$D" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
dpkg-deb --root-owner-group -Zgzip -z6 --build "$D" "$OUT/$DEB.tmp" >/dev/null
mv "$OUT/$DEB.tmp" "$OUT/$DEB"

(cd "$OUT" && sha256sum "$TARBALL" >"$TARBALL.sha256" && sha256sum "$DEB" >"$DEB.sha256")
echo "dist.sh: $vline, glibc >= $need"
for f in "$TARBALL" "$DEB"; do
    echo "  $OUT/$f  $(stat -c %s "$OUT/$f") bytes  sha256 $(cut -d' ' -f1 "$OUT/$f.sha256")"
done
