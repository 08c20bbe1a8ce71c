#!/usr/bin/env python3
"""Builds benchmark corpora from real software packages (issue 16). Not a test.

  realistic  the shape of an apt/pip cache: Debian .deb files fetched with `apt-get download`
             (kept in a cache dir between runs) next to the unpacked trees of most of them
             (`dpkg-deb -x`). About 330 MB of .debs and 0.9 GB of unpacked files.
  small100k  100,000 small real files (<= 16 KiB) copied from the unpacked trees, renamed and
             spread over 1,000 directories; the same bytes repeat, as headers and docs do.
  files1m    1,000,000 files the same way (opt-in: slow to build, minutes per pass).

usage: corpus.py realistic|small100k|files1m DEST [--debs DIR]
The .deb cache defaults to $STOWAGE_BENCH_DEBS or /var/tmp/stowage-bench-debs.
"""
import argparse, os, shutil, subprocess, sys

# Large toolchains and runtimes plus many small libraries, as a CI runner's apt cache holds.
PACKAGES = [
    "golang-1.19-go", "openjdk-17-jre-headless", "libreoffice-core", "libllvm14", "gcc-12",
    "llvm-14", "libclang-cpp14", "g++-12", "libnode108", "libicu-dev", "cpp-12", "libicu72",
    "cmake", "git", "vim-runtime", "python3-numpy", "libpython3.11-dev", "libperl5.36", "gdb",
    "perl-modules-5.36", "linux-libc-dev", "libssl-dev", "libgcc-12-dev",
    "binutils-x86-64-linux-gnu", "python3.11-minimal", "libstdc++-12-dev", "libssl3",
    "cmake-data", "libc6-dev", "libpython3.11-stdlib", "fonts-dejavu-core", "zlib1g-dev",
    "libclang-common-14-dev", "libsqlite3-0", "libxml2", "xz-utils", "make", "libcurl4",
    "libzstd-dev", "tzdata", "libonig5", "ca-certificates", "libjq1", "less", "patch", "jq",
]
# Kept only as .debs: unpacked they would add 0.7 GB and make every pass too slow here.
DEB_ONLY = {"golang-1.19-go", "openjdk-17-jre-headless"}

SMALL_MAX = 16 << 10


def default_debs():
    return os.environ.get("STOWAGE_BENCH_DEBS", "/var/tmp/stowage-bench-debs")


def fetch_debs(debs):
    """apt-get download into debs (once); returns the .deb paths, one per package."""
    os.makedirs(debs, exist_ok=True)
    have = {f.split("_")[0] for f in os.listdir(debs) if f.endswith(".deb")}
    missing = [p for p in PACKAGES if p not in have]
    if missing:
        subprocess.run(["apt-get", "download"] + missing, cwd=debs, check=True,
                       stdout=subprocess.DEVNULL)
    out = {}
    for f in sorted(os.listdir(debs)):
        if f.endswith(".deb"):
            out.setdefault(f.split("_")[0], os.path.join(debs, f))
    return [out[p] for p in PACKAGES if p in out]


def unpacked_cache(debs):
    """The unpacked trees live next to the .debs, built once."""
    tree = os.path.join(debs, "unpacked")
    if not os.path.isdir(tree):
        tmp = tree + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        for deb in fetch_debs(debs):
            name = os.path.basename(deb).split("_")[0]
            if name not in DEB_ONLY:
                subprocess.run(["dpkg-deb", "-x", deb, os.path.join(tmp, name)], check=True)
        os.rename(tmp, tree)
    return tree


def realistic(dest, debs):
    """dest/apt-archives/*.deb and dest/unpacked/<pkg>/... (copies, not links)."""
    files = fetch_debs(debs)
    tree = unpacked_cache(debs)
    arch = os.path.join(dest, "apt-archives")
    os.makedirs(arch, exist_ok=True)
    for f in files:
        shutil.copy2(f, arch)
    unp = os.path.join(dest, "unpacked")
    subprocess.run(["cp", "-a", tree, unp], check=True)
    # stowage refuses symlinks that point outside the cache (absolute targets such as
    # libc6-dev's libanl.so -> /lib/...): 11 of 14k entries. Drop them so both tools restore
    # the same tree.
    for dp, dns, fs in os.walk(unp):
        for f in fs + dns:
            p = os.path.join(dp, f)
            if os.path.islink(p) and os.readlink(p).startswith("/"):
                os.unlink(p)
    return [arch, unp]


def small_sources(debs):
    tree = unpacked_cache(debs)
    out = []
    for dp, _, fs in os.walk(tree):
        for f in fs:
            p = os.path.join(dp, f)
            if os.path.isfile(p) and not os.path.islink(p) and 0 < os.path.getsize(p) <= SMALL_MAX:
                out.append(p)
    out.sort()
    if not out:
        sys.exit("no small files in " + tree)
    return out


def many_files(dest, debs, n, per_dir=100):
    """n real small files, renamed into n/per_dir directories (two levels deep)."""
    src = small_sources(debs)
    blobs = []
    for p in src[:20000]:
        with open(p, "rb") as f:
            blobs.append((os.path.basename(p).replace("/", "_")[:40], f.read()))
    root = os.path.join(dest, "files")
    for i in range(n):
        if i % per_dir == 0:
            d = os.path.join(root, f"{i // (per_dir * 100):03d}", f"{i // per_dir % 100:02d}")
            os.makedirs(d, exist_ok=True)
        name, data = blobs[i % len(blobs)]
        with open(os.path.join(d, f"{i:07d}-{name}"), "wb") as f:
            f.write(data)
    return [root]


def build(kind, dest, debs):
    if kind == "realistic":
        return realistic(dest, debs)
    if kind == "small100k":
        return many_files(dest, debs, 100_000)
    if kind == "files1m":
        return many_files(dest, debs, 1_000_000)
    sys.exit("unknown corpus " + kind)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=["realistic", "small100k", "files1m", "fetch"])
    ap.add_argument("dest", nargs="?", default="")
    ap.add_argument("--debs", default=default_debs())
    a = ap.parse_args()
    if a.kind == "fetch":
        unpacked_cache(a.debs)
        return
    print("\n".join(build(a.kind, a.dest, a.debs)))


if __name__ == "__main__":
    main()
