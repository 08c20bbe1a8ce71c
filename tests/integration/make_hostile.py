#!/usr/bin/env python3
"""Writes a hostile cache entry (zstd tar layer + manifest) for one scenario into DIR, laid
out like a store: DIR/layers/<id>.tar.zst and DIR/manifests/<scope>/<key>.json.

The manifest is well-formed and lists harmless paths, so the refusal under test has to come
from the extractor looking at the archive itself.
usage: make_hostile.py DIR SCOPE KEY ROOT SCENARIO OUTSIDE
SCENARIO: absolute | dotdot | symlink-escape | device | not-in-index | hardlink
OUTSIDE: an absolute path outside the root that the archive tries to write to."""
import hashlib, io, json, os, subprocess, sys, tarfile, time

d, scope, key, root, scenario, outside = sys.argv[1:7]
layer_id = hashlib.sha256((scenario + key).encode()).hexdigest()[:32]
now = int(time.time())
buf = io.BytesIO()
tf = tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT)

def add_file(name, data=b"pwned\n"):
    ti = tarfile.TarInfo(name); ti.size = len(data); ti.mtime = now; ti.mode = 0o644
    tf.addfile(ti, io.BytesIO(data))

index = [{"r": 0, "p": "good.txt", "t": "f", "m": 0o644, "mt": now, "ns": 0, "s": 5, "l": 0}]
add_file("0/good.txt", b"good\n")
rel_outside = os.path.relpath(outside, root)
if scenario == "absolute":
    add_file(outside)
    index.append({"r": 0, "p": "evil.txt", "t": "f", "m": 0o644, "mt": now, "ns": 0, "s": 6, "l": 0})
elif scenario == "dotdot":
    add_file("0/" + rel_outside)
    index.append({"r": 0, "p": "evil.txt", "t": "f", "m": 0o644, "mt": now, "ns": 0, "s": 6, "l": 0})
elif scenario == "symlink-escape":
    ti = tarfile.TarInfo("0/link"); ti.type = tarfile.SYMTYPE; ti.linkname = os.path.dirname(outside); ti.mtime = now
    tf.addfile(ti)
    add_file("0/link/" + os.path.basename(outside))
    index.append({"r": 0, "p": "link", "t": "l", "m": 0o777, "mt": now, "ns": 0, "l": 0, "lt": "good.txt"})
    index.append({"r": 0, "p": "link/" + os.path.basename(outside), "t": "f", "m": 0o644, "mt": now, "ns": 0, "s": 6, "l": 0})
elif scenario == "device":
    ti = tarfile.TarInfo("0/dev0"); ti.type = tarfile.CHRTYPE; ti.devmajor = 1; ti.devminor = 3; ti.mtime = now
    tf.addfile(ti)
    index.append({"r": 0, "p": "dev0", "t": "f", "m": 0o644, "mt": now, "ns": 0, "s": 0, "l": 0})
elif scenario == "hardlink":
    ti = tarfile.TarInfo("0/hl"); ti.type = tarfile.LNKTYPE; ti.linkname = outside; ti.mtime = now
    tf.addfile(ti)
    index.append({"r": 0, "p": "hl", "t": "f", "m": 0o644, "mt": now, "ns": 0, "s": 0, "l": 0})
elif scenario == "not-in-index":
    add_file("0/unlisted.txt")
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
