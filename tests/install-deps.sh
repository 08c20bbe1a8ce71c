#!/bin/sh
# Installs what building and testing stowage needs on Debian/Ubuntu (idempotent).
set -eu
PKGS="build-essential cmake pkg-config libcurl4-openssl-dev libarchive-dev libzstd-dev libssl-dev
libinih-dev libjansson-dev libexpat1-dev libacl1-dev zstd python3 curl ca-certificates nginx-light openssl
nodejs npm shellcheck cppcheck time rsync git dash clang libclang-rt-dev clang-format clang-tidy
docker.io busybox-static debootstrap dpkg-dev"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# Machines with a Node.js from elsewhere (nvm, NodeSource) keep it.
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
    missing=$(echo "$missing" | tr ' ' '\n' | grep -vx 'nodejs\|npm' | tr '\n' ' ')
fi
if [ -n "$(echo "$missing" | tr -d ' ')" ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "installing:$missing"
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
