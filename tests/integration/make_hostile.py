#!/usr/bin/env python3
"""Writes a hostile cache entry (zstd tar layer + manifest) for one scenario into DIR, laid
out like a store: DIR/layers/<id>.tar.zst and DIR/manifests/<scope>/<key>.json.

The manifest is well-formed and lists harmless paths, so the refusal under test has to come
from the extractor looking at the archive itself.
usage: make_hostile.py DIR SCOPE KEY ROOT SCENARIO OUTSIDE
SCENARIO: absolute | dotdot | symlink-escape | device | not-in-index | hardlink
          | symlink-chain | symlink-chain-dir | symlink-chain-write
OUTSIDE: an absolute path outside the root that the archive tries to write to (or link to).

The symlink-chain scenarios are hostile manifests too: every link passes the lexical check on
its own ("d/s -> ..", "u1 -> d/s/..", "u2 -> u1/..", ...) and the index lists them, but
followed together they climb out of the root and end at OUTSIDE; they are spread over two
layers, so a restore that commits layer by layer would commit the first:
  symlink-chain        ... "evil -> uK/<OUTSIDE below the common ancestor>"
  symlink-chain-dir    the same through "d2 -> d", a link to a directory ("u1 -> d2/s/..")
  symlink-chain-write  "evil -> uK/<OUTSIDE's directory>", then a file "evil/<OUTSIDE's name>"
                       written through that symlinked directory component."""
import hashlib, io, json, os, subprocess, sys, tarfile, time

d, scope, key, root, scenario, outside = sys.argv[1:7]
now = int(time.time())
layers = []  # (tarfile, BytesIO) per layer
def new_layer():
    buf = io.BytesIO()
    layers.append((tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT), buf))
    return layers[-1][0]
tf = new_layer()

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
elif scenario.startswith("symlink-chain"):
    # How far OUTSIDE lies above the (expanded) root, and the path down from there.
    real_root = os.path.expanduser(root)
    rel = os.path.relpath(outside, real_root).split("/")
    ups = 0
    while ups < len(rel) and rel[ups] == "..":
        ups += 1
    down = rel[ups:]
    assert ups >= 1 and down, rel
    def add_link(layer, li, name, target):
        ti = tarfile.TarInfo("0/" + name); ti.type = tarfile.SYMTYPE; ti.linkname = target; ti.mtime = now
        layer.addfile(ti)
        index.append({"r": 0, "p": name, "t": "l", "m": 0o777, "mt": now, "ns": 0, "l": li, "lt": target})
    index.append({"r": 0, "p": "d", "t": "d", "m": 0o755, "mt": now, "ns": 0})
    add_link(tf, 0, "d/s", "..")                      # = the root
    base = "d/s"
    if scenario == "symlink-chain-dir":
        add_link(tf, 0, "d2", "d")                    # a link to a directory
        base = "d2/s"
    second = new_layer()
    add_link(second, 1, "u1", base + "/..")           # one above the root
    for i in range(2, ups + 1):
        add_link(second, 1, "u%d" % i, "u%d/.." % (i - 1))
    top = "u%d" % ups
    if scenario == "symlink-chain-write":
        add_link(tf, 0, "evil", "/".join([top] + down[:-1]))
        data = b"pwned\n"
        ti = tarfile.TarInfo("0/evil/" + down[-1]); ti.size = len(data); ti.mtime = now; ti.mode = 0o644
        second.addfile(ti, io.BytesIO(data))
        index.append({"r": 0, "p": "evil/" + down[-1], "t": "f", "m": 0o644, "mt": now, "ns": 0,
                      "s": len(data), "l": 1})
    else:
        add_link(second, 1, "evil", "/".join([top] + down))
else:
    sys.exit("unknown scenario " + scenario)
os.makedirs(os.path.join(d, "layers"), exist_ok=True)
layer_meta = []
for n, (t, buf) in enumerate(layers):
    t.close()
    raw = buf.getvalue()
    comp = subprocess.run(["zstd", "-q", "-c"], input=raw, stdout=subprocess.PIPE, check=True).stdout
    layer_id = hashlib.sha256((scenario + key + str(n)).encode()).hexdigest()[:32]
    with open(os.path.join(d, "layers", layer_id + ".tar.zst"), "wb") as f:
        f.write(comp)
    layer_meta.append({"id": layer_id, "sha256": hashlib.sha256(comp).hexdigest(), "size": len(comp),
                       "raw_size": len(raw), "files": sum(1 for e in index if e.get("l") == n)})
manifest = {"version": 1, "key": key, "scope": scope, "created": now, "roots": [root],
            "layers": layer_meta, "files": sorted(index, key=lambda e: (e["r"], e["p"]))}
os.makedirs(os.path.join(d, "manifests", scope), exist_ok=True)
with open(os.path.join(d, "manifests", scope, key + ".json"), "w") as f:
    json.dump(manifest, f)
