#!/usr/bin/env python3
"""stowage benchmark: stowage vs the actions/cache pipeline, side by side, same corpus, same
server. Not a test: it asserts nothing and prints numbers.

The pipeline is actions/cache's archive step: `tar --posix -cf cache.tzst ...
--use-compress-program zstdmt` (zstd level 3) into a temporary file, uploaded with curl; on
restore, downloaded with curl into a file, then `tar -xf cache.tzst --use-compress-program
unzstd`. For the file store, upload and download are a copy.

usage: bench.py --corpus realistic|small100k|files1m [--stores file,http] [--runs 3]
                [--bins after=build-bench/stowage,before=/path/to/old/stowage] [--json results.jsonl]
       bench.py --report results.jsonl          (markdown tables from the collected runs)
       bench.py --corpus random --size 1G --stores file[,http,s3] [--out docs/BENCHMARKS.md]
The realistic corpora are built by corpus.py from real Debian packages (issue 16). Each case
runs every tool --runs times, interleaved (stowage, the pipeline, the floors, stowage, ...):
wall is the minimum, CPU-seconds (user+sys of the command and the processes it waited for,
from GNU time) the minimum too. On a shared machine wall times move with the neighbours'
load; CPU-seconds much less, so compare those first. The floors: `zstd -d` of the pipeline's
archive to /dev/null, `tar -x` of an uncompressed tar of the corpus, `cp -a` of the corpus.
The file system is the one under --work (tmpfs for /dev/shm, the disk for /var/tmp).
Servers come from the environment (tests/bench/run.sh starts them):
  BENCH_HTTP_URL   base URL of a WebDAV-enabled nginx location (stowage and curl use it)
  BENCH_HTTP_DIR   the directory nginx serves that URL from (emptied between runs)
  BENCH_S3_URL     s3://bucket/prefix, with STOWAGE_ENDPOINT, AWS_ACCESS_KEY_ID/SECRET set
"""
import argparse, json, os, platform, random, re, shutil, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import corpus  # noqa: E402

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


# --------------------------------------------------------------------------------------------
# Real-package corpora (issue 16): stowage variants vs the pipeline vs the floors, interleaved
# --------------------------------------------------------------------------------------------

def timed(cmd, env=None, stdout=subprocess.PIPE):
    """Runs cmd under GNU time; returns wall, CPU-seconds (user+sys, waited-for children
    included), peak RSS of the largest process, and the output."""
    settle()
    with tempfile.NamedTemporaryFile(mode="r", suffix=".time") as tf:
        t0 = time.monotonic()
        p = subprocess.run(["/usr/bin/time", "-f", "%U %S %M", "-o", tf.name] + cmd, env=env,
                           stdout=stdout, stderr=subprocess.STDOUT if stdout == subprocess.PIPE else subprocess.PIPE)
        wall = time.monotonic() - t0
        out = (p.stdout or b"").decode(errors="replace") if stdout == subprocess.PIPE else ""
        if p.returncode != 0:
            sys.stderr.write(out + ((p.stderr or b"").decode(errors="replace") if stdout != subprocess.PIPE else ""))
            raise SystemExit(f"command failed ({p.returncode}): {cmd}")
        u, s_, m = tf.read().split()[-3:]
        return {"wall": wall, "cpu": float(u) + float(s_), "rss": int(m) * 1024, "out": out}


def add(a, b):
    return {"wall": a["wall"] + b["wall"], "cpu": a["cpu"] + b["cpu"], "rss": max(a["rss"], b["rss"]),
            "out": a["out"] + b["out"]}


def fs_name(path):
    out = subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "-T", path], capture_output=True, text=True).stdout
    out = out.split()[0] if out.split() else "unknown"
    return "tmpfs" if out == "tmpfs" else f"disk ({out})"


def tree_stats(roots):
    n, b = 0, 0
    for r in roots:
        for dp, _, fs in os.walk(r):
            for f in fs:
                st = os.lstat(os.path.join(dp, f))
                n += 1
                b += st.st_size
    return n, b


def bench_real(a, work, variants, out_json):
    home = os.path.join(work, "home")
    shutil.rmtree(home, ignore_errors=True)
    os.makedirs(home)
    t0 = time.monotonic()
    roots = corpus.build(a.corpus, home, a.debs)
    nfiles, nbytes = tree_stats(roots)
    print(f"corpus {a.corpus}: {nfiles} files, {nbytes / 1e6:.0f} MB in {time.monotonic() - t0:.0f} s", flush=True)
    rel = [os.path.relpath(r, home) for r in roots]
    fs = fs_name(work)
    meta = {"corpus": a.corpus, "files": nfiles, "bytes": nbytes, "fs": fs, "machine": machine(),
            "date": time.strftime("%Y-%m-%d %H:%M")}
    tmp = os.path.join(work, "tmp")
    os.makedirs(tmp, exist_ok=True)
    archive = os.path.join(tmp, "cache.tzst")
    plain = os.path.join(tmp, "plain.tar")
    subprocess.run(["tar", "--posix", "-cf", plain, "-C", home] + rel, check=True)
    floor_dest = os.path.join(work, "floor")
    state = os.path.join(work, "state")
    results = []

    def record(store, tool, scenario, r, up=0, down=0):
        row = dict(meta, store=store.name, tool=tool, scenario=scenario, wall=r["wall"], cpu=r["cpu"],
                   rss=r["rss"], up=up, down=down)
        results.append(row)
        with open(out_json, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"  {store.name:<13} {scenario:<13} {tool:<16} {r['wall']:7.2f} s wall {r['cpu']:7.2f} CPU-s "
              f"{r['rss'] / (1 << 20):5.0f} MiB  up {fmt_bytes(up)} down {fmt_bytes(down)}", flush=True)

    def clear_roots():
        for r in roots:
            shutil.rmtree(r, ignore_errors=True)

    def clear_store(store):
        if store.name == "file":
            d = store.url[len("file://"):]
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(d)
        elif os.environ.get("BENCH_HTTP_DIR"):
            d = os.environ["BENCH_HTTP_DIR"]
            for n in os.listdir(d):
                p = os.path.join(d, n)
                shutil.rmtree(p) if os.path.isdir(p) else os.unlink(p)

    for store in stores_from_env(a.stores.split(","), work):
        print(f"== {store.name} on {fs}", flush=True)
        for run_i in range(a.runs):
            clear_store(store)
            for name, binary in variants:
                env = dict(os.environ, HOME=home, STOWAGE_URL=store.url, STOWAGE_STATE_DIR=state,
                           STOWAGE_KEY=f"bench-{name}-{run_i}", STOWAGE_PATHS=",".join("~/" + r for r in rel))
                shutil.rmtree(state, ignore_errors=True)
                r = timed([binary, "save", "--strict"], env=env)
                record(store, "stowage " + name, "cold save", r, up=moved_bytes(r["out"], "uploaded"))
                clear_roots()
                shutil.rmtree(state, ignore_errors=True)
                r = timed([binary, "restore", "--strict"], env=env)
                m = re.search(r"(\d+) of (\d+) layers", r["out"])
                record(store, "stowage " + name, "cold restore", r, down=moved_bytes(r["out"], "downloaded"))
                if m and run_i == 0:
                    print(f"    {name}: {m.group(2)} layers", flush=True)
                if run_i == 0 and tree_stats(roots) != (nfiles, nbytes):
                    raise SystemExit(f"{name}: the restored tree differs from the corpus")
                r = timed([binary, "restore", "--strict"], env=env)
                record(store, "stowage " + name, "warm restore", r, down=moved_bytes(r["out"], "downloaded"))
            # The pipeline: tar + zstdmt (level 3) into a file, then upload; download, then tar -x.
            penv = dict(os.environ, ZSTD_CLEVEL="3")
            r = timed(["tar", "--posix", "-cf", archive, "-C", home, "--use-compress-program", "zstdmt"] + rel, env=penv)
            size = os.path.getsize(archive)
            r = add(r, timed(store.upload(archive)))
            record(store, "pipeline", "cold save", r, up=size)
            os.unlink(archive)
            r = timed(store.download(archive))
            clear_roots()
            r = add(r, timed(["tar", "-xf", archive, "-C", home, "--use-compress-program", "unzstd"]))
            record(store, "pipeline", "cold restore", r, down=size)
            # Floors, on the same file system (not per store: once per run, under "file").
            if store.name == stores_from_env(a.stores.split(","), work)[0].name:
                with open(os.devnull, "wb") as null:
                    r = timed(["zstd", "-q", "-d", "-c", archive], stdout=null)
                record(store, "floor", "zstd -d", r, down=size)
                shutil.rmtree(floor_dest, ignore_errors=True)
                os.makedirs(floor_dest)
                r = timed(["tar", "-xf", plain, "-C", floor_dest])
                record(store, "floor", "tar -x", r)
                shutil.rmtree(floor_dest)
                os.makedirs(floor_dest)
                r = timed(["cp", "-a"] + roots + [floor_dest])
                record(store, "floor", "cp -a", r)
                shutil.rmtree(floor_dest)
            os.unlink(archive)
        clear_store(store)
    os.unlink(plain)
    return results


def report(paths):
    rows = []
    for p in paths:
        with open(p) as f:
            rows += [json.loads(line) for line in f if line.strip()]
    for r in rows:
        r["fs"] = r["fs"].replace("ext2/ext3", "ext4")
    groups = {}
    for r in rows:
        k = (r["corpus"], r["fs"], r["store"], r["scenario"], r["tool"])
        groups.setdefault(k, []).append(r)
    out = []
    by_case = {}
    for k, rs in groups.items():
        by_case.setdefault(k[:3], {})[(k[3], k[4])] = rs
    for (corp, fs, store), cases in by_case.items():
        any_row = next(iter(cases.values()))[0]
        out.append(f"### {corp}, {store}, {fs}")
        out.append("")
        out.append(f"{any_row['files']} files, {any_row['bytes'] / 1e6:.0f} MB; {len(next(iter(cases.values())))} "
                   f"interleaved runs, measured {any_row['date']}.")
        out.append("")
        out.append("| scenario | tool | wall s (min) | CPU s (min) | peak RSS | moved | wall vs pipeline | CPU vs pipeline |")
        out.append("|---|---|---:|---:|---:|---:|---:|---:|")
        order = ["cold save", "cold restore", "warm restore", "zstd -d", "tar -x", "cp -a"]
        for scen in order:
            base = cases.get((scen if scen != "warm restore" else "cold restore", "pipeline"))
            for (sc, tool), rs in sorted(cases.items(), key=lambda x: x[0][1]):
                if sc != scen:
                    continue
                w = min(r["wall"] for r in rs)
                c = min(r["cpu"] for r in rs)
                rss = max(r["rss"] for r in rs)
                moved = max(max(r["up"], r["down"]) for r in rs)
                vs = cvs = ""
                if base and tool != "pipeline" and tool != "floor":
                    bw = min(r["wall"] for r in base)
                    bc = min(r["cpu"] for r in base)
                    vs, cvs = f"x{bw / w:.2f}", f"x{bc / c:.2f}"
                out.append(f"| {scen} | {tool} | {w:.2f} | {c:.2f} | {rss / (1 << 20):.0f} MiB | {fmt_bytes(moved)} | {vs} | {cvs} |")
        out.append("")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="1G")
    ap.add_argument("--stores", default="file")
    ap.add_argument("--out", default="")
    ap.add_argument("--work", default="")
    ap.add_argument("--corpus", default="realistic", choices=["realistic", "small100k", "files1m", "random"])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--bins", default="", help="name=path,... stowage binaries to compare (default: STOWAGE_BIN)")
    ap.add_argument("--json", default="bench-results.jsonl")
    ap.add_argument("--debs", default=corpus.default_debs())
    ap.add_argument("--report", nargs="*")
    a = ap.parse_args()
    if a.report:
        print(report(a.report))
        return
    if a.corpus != "random":
        variants = [tuple(x.split("=", 1)) for x in a.bins.split(",") if x] or [("", STOWAGE)]
        work = a.work or tempfile.mkdtemp(prefix="stowage-bench.")
        try:
            bench_real(a, work, variants, a.json)
        finally:
            if not a.work:
                shutil.rmtree(work, ignore_errors=True)
        print(report([a.json]))
        return
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
