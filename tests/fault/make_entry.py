#!/usr/bin/env python3
"""Writes a crafted cache entry (one zstd tar layer + manifest) into DIR, laid out like a
store: DIR/layers/<id>.tar.zst and DIR/manifests/<scope>/<key>.json (as
tests/integration/make_hostile.py, for the cases of issue 12).

usage: make_entry.py DIR SCOPE KEY ROOT SCENARIO
SCENARIO:
  symlink-chain  d/s -> ..  then  t -> d/s/..  then  e -> t/outside/victim: every link passes a lexical "inside the root" check, but
                 resolved against the links before it, t is the root's parent, e names
                 ROOT/../outside/victim
  symlink-chain-write
                 the same, and a file t/outside/pwned that would land in ROOT/../outside
  log-index      the manifest lists a path containing "\\n::error::" and ESC that is unsafe
                 (a ".." component), so the refusal prints it
  log-archive    the archive holds an entry with that name that climbs out of the root, so
                 the extractor's refusal prints it
"""
import hashlib, io, json, os, subprocess, sys, tarfile, time

d, scope, key, root, scenario = sys.argv[1:6]
INJ = "evil\n::error::injected\x1b[31mred\x1b]0;title\x07"
layer_id = hashlib.sha256((scenario + key).encode()).hexdigest()[:32]
now = int(time.time())
buf = io.BytesIO()
tf = tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT)
index = []


def add_file(name, data, listed=True):
    ti = tarfile.TarInfo("0/" + name)
    ti.size, ti.mtime, ti.mode = len(data), now, 0o644
    tf.addfile(ti, io.BytesIO(data))
    if listed:
        index.append({"r": 0, "p": name, "t": "f", "m": 0o644, "mt": now, "ns": 0, "s": len(data), "l": 0})


def add_dir(name):  # directories live in the index only, as in the layers stowage writes
    index.append({"r": 0, "p": name, "t": "d", "m": 0o755, "mt": now, "ns": 0})


def add_link(name, target):
    ti = tarfile.TarInfo("0/" + name)
    ti.type, ti.linkname, ti.mtime = tarfile.SYMTYPE, target, now
    tf.addfile(ti)
    index.append({"r": 0, "p": name, "t": "l", "m": 0o777, "mt": now, "ns": 0, "l": 0, "lt": target})


add_file("good.txt", b"good\n")
if scenario in ("symlink-chain", "symlink-chain-write"):
    add_dir("d")
    add_link("d/s", "..")
    add_link("t", "d/s/..")
    add_link("e", "t/outside/victim")
    if scenario == "symlink-chain-write":
        add_file("t/outside/pwned", b"pwned\n")
elif scenario == "log-index":
    add_file("x.txt", b"x\n")
    index.append({"r": 0, "p": INJ + "/../x.txt", "t": "f", "m": 0o644, "mt": now, "ns": 0, "s": 2, "l": 0})
elif scenario == "log-archive":
    add_file(INJ + "/../../../pwned", b"pwned\n", listed=False)
    index.append({"r": 0, "p": "evil.txt", "t": "f", "m": 0o644, "mt": now, "ns": 0, "s": 6, "l": 0})
else:
    sys.exit("unknown scenario " + scenario)
tf.close()
raw = buf.getvalue()
comp = subprocess.run(["zstd", "-q", "-c"], input=raw, stdout=subprocess.PIPE, check=True).stdout
os.makedirs(os.path.join(d, "layers"), exist_ok=True)
with open(os.path.join(d, "layers", layer_id + ".tar.zst"), "wb") as f:
    f.write(comp)
manifest = {"version": 1, "key": key, "scope": scope, "created": now, "roots": [root],
            "layers": [{"id": layer_id, "sha256": hashlib.sha256(comp).hexdigest(), "size": len(comp),
                        "raw_size": len(raw), "files": len(index)}],
            "files": sorted(index, key=lambda e: e["p"])}
os.makedirs(os.path.join(d, "manifests", scope), exist_ok=True)
with open(os.path.join(d, "manifests", scope, key + ".json"), "w") as f:
    json.dump(manifest, f)
