#!/usr/bin/env python3
"""Cold restore only, two stowage binaries (A/B) and the pipeline, interleaved, on one corpus
and the file store: isolates how an entry's layer split affects restore. Not a test.

Each binary saves the corpus once into its own store (so each restores its own split); then
every run removes the tree and the state and restores, A, B, pipeline, A, B, ...

usage: restore_ab.py --bins after=build-bench/stowage,before=/tmp/old-stowage
                     [--corpus realistic] [--runs 5] [--work /dev/shm/ab]
"""
import argparse, os, shutil, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
import corpus  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import manifest_json  # noqa: E402 - manifests of either version


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bins", required=True)
    ap.add_argument("--corpus", default="realistic")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--work", default="/dev/shm/stowage-restore-ab")
    ap.add_argument("--debs", default=corpus.default_debs())
    a = ap.parse_args()
    variants = [tuple(x.split("=", 1)) for x in a.bins.split(",")]
    shutil.rmtree(a.work, ignore_errors=True)
    home = os.path.join(a.work, "home")
    os.makedirs(home)
    roots = corpus.build(a.corpus, home, a.debs)
    rel = [os.path.relpath(r, home) for r in roots]
    archive = os.path.join(a.work, "cache.tzst")
    res = {}
    try:
        envs = {}
        for name, binary in variants:
            env = dict(os.environ, HOME=home, STOWAGE_URL="file://" + os.path.join(a.work, "store-" + name),
                       STOWAGE_STATE_DIR=os.path.join(a.work, "state"), STOWAGE_KEY="ab",
                       STOWAGE_PATHS=",".join("~/" + r for r in rel))
            os.makedirs(env["STOWAGE_URL"][7:])
            shutil.rmtree(env["STOWAGE_STATE_DIR"], ignore_errors=True)
            bench.timed([binary, "save", "--strict"], env=env)
            m = manifest_json.load(os.path.join(env["STOWAGE_URL"][7:], "manifests", "default", "ab.json"))
            print(f"{name}: layers raw MB " + ", ".join(f"{l['raw_size'] / 1e6:.0f}" for l in m["layers"]) +
                  "; stored MB " + ", ".join(f"{l['size'] / 1e6:.0f}" for l in m["layers"]), flush=True)
            envs[name] = (binary, env)
        bench.timed(["tar", "--posix", "-cf", archive, "-C", home, "--use-compress-program", "zstdmt"] + rel,
                    env=dict(os.environ, ZSTD_CLEVEL="3"))
        for i in range(a.runs):
            for name, (binary, env) in envs.items():
                for r in roots:
                    shutil.rmtree(r)
                shutil.rmtree(env["STOWAGE_STATE_DIR"], ignore_errors=True)
                t = bench.timed([binary, "restore", "--strict"], env=env)
                res.setdefault(name, []).append(t)
                print(f"  {name:<10} {t['wall']:6.2f} s wall {t['cpu']:6.2f} CPU-s", flush=True)
            for r in roots:
                shutil.rmtree(r)
            t = bench.timed(["tar", "-xf", archive, "-C", home, "--use-compress-program", "unzstd"])
            res.setdefault("pipeline", []).append(t)
            print(f"  {'pipeline':<10} {t['wall']:6.2f} s wall {t['cpu']:6.2f} CPU-s", flush=True)
        print("| tool | wall s (min) | wall s (median) | CPU s (min) |\n|---|---:|---:|---:|")
        for name, ts in res.items():
            ws = sorted(t["wall"] for t in ts)
            print(f"| {name} | {ws[0]:.2f} | {ws[len(ws) // 2]:.2f} | {min(t['cpu'] for t in ts):.2f} |")
    finally:
        shutil.rmtree(a.work, ignore_errors=True)


if __name__ == "__main__":
    main()
