#!/usr/bin/env python3
"""stowage benchmark: stowage vs the actions/cache pipeline, side by side, same corpus, same
server. Not a test: it asserts nothing and prints numbers.

The pipeline is actions/cache's archive step: `tar --posix -cf cache.tzst ...
--use-compress-program zstdmt` (zstd level 3) into a temporary file, uploaded with curl; on
restore, downloaded with curl into a file, then `tar -xf cache.tzst --use-compress-program
unzstd`. For the file store, upload and download are a copy.

usage: bench.py --size 1G --stores file[,http,s3] [--out docs/BENCHMARKS.md]
Servers come from the environment (tests/bench/run.sh starts them):
  BENCH_HTTP_URL   base URL of a WebDAV-enabled nginx location (stowage and curl use it)
  BENCH_S3_URL     s3://bucket/prefix, with STOWAGE_ENDPOINT, AWS_ACCESS_KEY_ID/SECRET set
"""
import argparse, os, platform, random, re, shutil, subprocess, sys, tempfile, time

STOWAGE = os.environ.get("STOWAGE_BIN", "build/stowage")


def parse_size(s):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMG]?)", s.upper())
    if not m:
        sys.exit("bad size " + s)
    return int(float(m.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[m.group(2)])


# --------------------------------------------------------------------------------------------
# Corpus: shaped like a torch/CUDA runner cache, reproducible from a seed.
# --------------------------------------------------------------------------------------------

def write_random(path, n, rnd):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        while n > 0:
            k = min(n, 8 << 20)
            f.write(rnd.randbytes(k))
            n -= k


def write_text(path, n, rnd, i):
    """Compressible text like apt Packages lists and pip METADATA."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    parts, size = [], 0
    while size < n:
        s = ("Package: lib%s%d\nVersion: %d.%d-%d\nArchitecture: amd64\nDepends: libc6 (>= 2.%d)\n"
             "Description: package number %d of the fake archive\n\n" %
             (rnd.choice(["ssl", "z", "curl", "python3-", "nvidia-"]), i, rnd.randrange(9),
              rnd.randrange(30), rnd.randrange(5), rnd.randrange(40), size))
        parts.append(s)
        size += len(s)
    with open(path, "w") as f:
        f.write("".join(parts)[:n])


def make_corpus(root, total, seed=20261122):
    rnd = random.Random(seed)
    c = os.path.join(root, ".docker-cache")
    plan = []  # (path, size, kind)
    plan.append((f"{c}/pip/wheels/torch-2.7.1-cp311-cp311-manylinux_2_28_x86_64.whl", int(total * 0.40), "rand"))
    plan.append((f"{c}/pip/wheels/nvidia_cublas_cu12-12.6.4.1-py3-none-manylinux2014_x86_64.whl", int(total * 0.18), "rand"))
    plan.append((f"{c}/pip/wheels/nvidia_cudnn_cu12-9.5.1.17-py3-none-manylinux2014_x86_64.whl", int(total * 0.14), "rand"))
    n_med = 200
    for i in range(n_med):  # medium wheels: deflate inside, so incompressible
        plan.append((f"{c}/pip/wheels/pkg{i:03d}-1.{i % 7}.0-py3-none-any.whl", int(total * 0.15 / n_med), "rand"))
    n_deb = 20
    for i in range(n_deb):
        plan.append((f"{c}/apt/archives/lib{i:02d}_1.0-{i}_amd64.deb", int(total * 0.03 / n_deb), "rand"))
    n_small = 3000
    for i in range(n_small):  # apt lists, pip http cache metadata: compressible
        d = "apt/lists" if i % 3 == 0 else f"pip/http/{i % 16:x}/{i % 13:x}"
        plan.append((f"{c}/{d}/meta{i:05d}.txt", int(total * 0.05 / n_small), "text"))
    bx = os.path.join(root, ".buildx-cache")
    n_blob = 30
    for i in range(n_blob):  # gzip layers of a buildx local cache
        plan.append((f"{bx}/blobs/sha256/{i:064x}", int(total * 0.05 / n_blob), "rand"))
    for i, (path, size, kind) in enumerate(plan):
        if kind == "rand":
            write_random(path, size, rnd)
        else:
            write_text(path, size, rnd, i)
    # A buildx layout whose index references every blob, so pruning keeps them all.
    import json
    blobs = [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
              "digest": "sha256:%064x" % i, "size": int(total * 0.05 / n_blob)} for i in range(n_blob)]
    with open(f"{bx}/index.json", "w") as f:
        json.dump({"schemaVersion": 2, "manifests": blobs}, f)
    with open(f"{bx}/oci-layout", "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    return [c, bx], sum(p[1] for p in plan)


def change_one_percent(roots, total, seed=7):
    """Rewrites medium wheels and small files until ~1% of the bytes changed."""
    rnd = random.Random(seed)
    target, done = total // 100, 0
    wheels = sorted(p for p in os.listdir(f"{roots[0]}/pip/wheels") if p.startswith("pkg"))
    for w in wheels:
        if done >= target:
            break
        p = f"{roots[0]}/pip/wheels/{w}"
        n = os.path.getsize(p)
        write_random(p, n, rnd)
        done += n
    return done


# --------------------------------------------------------------------------------------------
# Running and measuring
# --------------------------------------------------------------------------------------------

def settle():
    """Writes back dirty pages so one run's writeback does not land in the next one's time."""
    os.sync()


def run(cmd, env=None):
    """Runs cmd; returns (seconds, peak RSS in bytes, stdout+stderr). Peak RSS comes from GNU
    time: the largest resident set of the command or any process it waited for (a fork from
    this Python process would count Python's own pages)."""
    settle()
    with tempfile.NamedTemporaryFile(mode="r", suffix=".rss") as rss:
        t0 = time.monotonic()
        p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss.name] + cmd, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        secs = time.monotonic() - t0
        out = p.stdout.decode(errors="replace")
        if p.returncode != 0:
            sys.stderr.write(out)
            raise SystemExit(f"command failed ({p.returncode}): {cmd}")
        lines = [x for x in rss.read().split() if x.isdigit()]
        return secs, int(lines[-1]) * 1024 if lines else 0, out


def moved_bytes(out, word):
    m = re.search(r"; ([0-9.]+) (B|kB|MB|GB) " + word, out)
    if not m:
        return 0
    return int(float(m.group(1)) * {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}[m.group(2)])


class Store:
    def __init__(self, name, url, upload, download):
        self.name, self.url, self.upload, self.download = name, url, upload, download


def stores_from_env(names, work):
    out = []
    for n in names:
        if n == "file":
            d = os.path.join(work, "store")
            os.makedirs(d, exist_ok=True)
            out.append(Store("file", "file://" + d,
                             lambda f, d=d: ["cp", f, os.path.join(d, "pipeline.tzst")],
                             lambda f, d=d: ["cp", os.path.join(d, "pipeline.tzst"), f]))
        elif n == "http":
            base = os.environ["BENCH_HTTP_URL"].rstrip("/")
            out.append(Store("http (nginx)", base + "/stowage",
                             lambda f, b=base: ["curl", "-sSf", "-T", f, b + "/pipeline/cache.tzst"],
                             lambda f, b=base: ["curl", "-sSf", "-o", f, b + "/pipeline/cache.tzst"]))
        elif n == "s3":
            url = os.environ["BENCH_S3_URL"]
            ep = os.environ["STOWAGE_ENDPOINT"].rstrip("/")
            bucket = url[5:].split("/")[0]
            auth = ["--aws-sigv4", "aws:amz:us-east-1:s3", "--user",
                    os.environ["AWS_ACCESS_KEY_ID"] + ":" + os.environ["AWS_SECRET_ACCESS_KEY"],
                    "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"]
            obj = f"{ep}/{bucket}/pipeline/cache.tzst"
            out.append(Store("s3 (s3rver)", url + "/stowage",
                             lambda f, o=obj, a=auth: ["curl", "-sSf"] + a + ["-T", f, o],
                             lambda f, o=obj, a=auth: ["curl", "-sSf"] + a + ["-o", f, o]))
        else:
            sys.exit("unknown store " + n)
    return out


def bench_store(store, roots, total, work, results):
    home = os.path.dirname(roots[0])
    env = dict(os.environ, HOME=home, STOWAGE_URL=store.url, STOWAGE_STATE_DIR=os.path.join(work, "state"),
               STOWAGE_KEY="bench-{os}-{arch}", STOWAGE_PATHS="~/.docker-cache,~/.buildx-cache")
    shutil.rmtree(env["STOWAGE_STATE_DIR"], ignore_errors=True)
    tmp = os.path.join(work, "tmp")
    os.makedirs(tmp, exist_ok=True)
    archive = os.path.join(tmp, "cache.tzst")
    rel = [os.path.relpath(r, home) for r in roots]
    mb = total / 1e6

    def pipeline_save():
        t1, r1, _ = run(["tar", "--posix", "-cf", archive, "-C", home, "--use-compress-program", "zstdmt"] + rel,
                        env=dict(env, ZSTD_CLEVEL="3"))
        t2, r2, _ = run(store.upload(archive))
        size = os.path.getsize(archive)
        os.unlink(archive)
        return t1 + t2, max(r1, r2), size

    def pipeline_restore():
        t1, r1, _ = run(store.download(archive))
        for r in roots:
            shutil.rmtree(r, ignore_errors=True)
        t2, r2, _ = run(["tar", "-xf", archive, "-C", home, "--use-compress-program", "unzstd"])
        size = os.path.getsize(archive)
        os.unlink(archive)
        return t1 + t2, max(r1, r2), size

    def row(scenario, s, base):
        secs, rss, up, down = s
        bsecs, brss, bup, bdown = base
        results.append({"store": store.name, "scenario": scenario, "secs": secs, "mbps": mb / secs,
                        "up": up, "down": down, "rss": rss, "base_secs": bsecs, "base_mbps": mb / bsecs,
                        "base_up": bup, "base_down": bdown, "base_rss": brss, "ratio": bsecs / secs})
        print(f"  {scenario:<22} stowage {secs:7.2f} s  pipeline {bsecs:7.2f} s  x{bsecs / secs:5.2f}", flush=True)

    print(f"== {store.name}", flush=True)
    # cold save: empty store
    t, rss, out = run([STOWAGE, "save", "--strict"], env=env)
    st = (t, rss, moved_bytes(out, "uploaded"), 0)
    bt, brss, bsize = pipeline_save()
    row("cold save", st, (bt, brss, bsize, 0))
    snapshot = os.path.join(work, "snapshot")
    # cold restore: nothing local, no state
    for r in roots:
        shutil.rmtree(r)
    shutil.rmtree(env["STOWAGE_STATE_DIR"], ignore_errors=True)
    t, rss, out = run([STOWAGE, "restore", "--strict"], env=env)
    st = (t, rss, 0, moved_bytes(out, "downloaded"))
    bt, brss, bsize = pipeline_restore()
    row("cold restore", st, (bt, brss, 0, bsize))
    # warm restore: everything already there (the pipeline has no warm path: it restores fully)
    t, rss, out = run([STOWAGE, "restore", "--strict"], env=env)
    st = (t, rss, 0, moved_bytes(out, "downloaded"))
    bt, brss, bsize = pipeline_restore()
    row("warm restore", st, (bt, brss, 0, bsize))
    # The pipeline's tar restored fresh files (new mtimes for directories only; file mtimes
    # are kept), and stowage's state still describes the entry: restore once more so the
    # delta below starts from what stowage restored.
    run([STOWAGE, "restore", "--strict"], env=env)
    changed = change_one_percent(roots, total)
    t, rss, out = run([STOWAGE, "save", "--strict"], env=env)
    st = (t, rss, moved_bytes(out, "uploaded"), 0)
    bt, brss, bsize = pipeline_save()
    row(f"delta save ({changed * 100 / total:.1f}%)", st, (bt, brss, bsize, 0))


def fmt_bytes(n):
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n} B"


def machine():
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    zv = subprocess.run(["zstd", "--version"], capture_output=True, text=True).stdout.strip()
    tv = subprocess.run(["tar", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    return (f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, Linux {platform.release()}; "
            f"baseline tools: {tv}, {zv}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="1G")
    ap.add_argument("--stores", default="file")
    ap.add_argument("--out", default="")
    ap.add_argument("--work", default="")
    a = ap.parse_args()
    total = parse_size(a.size)
    work = a.work or tempfile.mkdtemp(prefix="stowage-bench.")
    try:
        print(f"generating a {fmt_bytes(total)} corpus in {work} ...", flush=True)
        t0 = time.monotonic()
        home = os.path.join(work, "home")
        roots, actual = make_corpus(home, total)
        print(f"  {actual / 1e6:.0f} MB in {time.monotonic() - t0:.1f} s", flush=True)
        pristine = os.path.join(work, "pristine")
        shutil.copytree(home, pristine, symlinks=True)
        results = []
        for store in stores_from_env(a.stores.split(","), work):
            shutil.rmtree(home)
            shutil.copytree(pristine, home, symlinks=True)
            bench_store(store, roots, actual, work, results)
        lines = [
            f"Corpus: {actual / 1e6:.0f} MB (torch/CUDA-sized incompressible wheels, 200 medium wheels, 20 .debs, "
            f"3000 small text files, a 30-blob buildx layout). Machine: {machine()}.",
            "",
            "| store | scenario | stowage s | MB/s | up | down | peak RSS | pipeline s | MB/s | up | down | peak RSS | speed-up |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in results:
            lines.append(
                f"| {r['store']} | {r['scenario']} | {r['secs']:.2f} | {r['mbps']:.0f} | {fmt_bytes(r['up'])} | "
                f"{fmt_bytes(r['down'])} | {r['rss'] / (1 << 20):.0f} MiB | {r['base_secs']:.2f} | "
                f"{r['base_mbps']:.0f} | {fmt_bytes(r['base_up'])} | {fmt_bytes(r['base_down'])} | "
                f"{r['base_rss'] / (1 << 20):.0f} MiB | x{r['ratio']:.2f} |")
        table = "\n".join(lines)
        print()
        print(table)
        if a.out:
            with open(a.out, "w") as f:
                f.write("# Benchmarks\n\nMeasured by `tests/bench/run.sh " + " ".join(sys.argv[1:]) +
                        "` on " + time.strftime("%Y-%m-%d") + ". MB/s is the corpus size divided by the "
                        "wall time. The pipeline is actions/cache's: tar + zstdmt (level 3) to a temporary "
                        "file, uploaded/downloaded with curl (a copy for the file store), then tar -x. Its warm "
                        "restore is a full restore: it has no way to skip what is present. Peak RSS is the "
                        "largest single process.\n\n" + table + "\n")
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
