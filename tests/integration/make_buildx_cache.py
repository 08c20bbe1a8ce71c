#!/usr/bin/env python3
"""Writes a Docker buildx local cache directory (`--cache-to type=local,dest=DIR`) in the real
OCI layout BuildKit produces, plus the orphaned blobs that accumulate across builds.

usage: make_buildx_cache.py DIR FORM
FORM: manifest  - image-manifest form: index.json -> image manifest whose config is
                  application/vnd.buildkit.cacheconfig.v0 and whose layers are gzip tarballs
      index     - older form: index.json -> OCI image index listing the layers and the
                  cacheconfig directly
Prints two lines: the referenced blob digests and the orphaned ones (space-separated)."""
import gzip, hashlib, io, json, os, random, sys, tarfile

d, form = sys.argv[1], sys.argv[2]
rnd = random.Random(42 if form == "manifest" else 7)
blobs = os.path.join(d, "blobs", "sha256")
os.makedirs(blobs, exist_ok=True)
os.makedirs(os.path.join(d, "ingest", "partial-upload"), exist_ok=True)
with open(os.path.join(d, "ingest", "partial-upload", "data"), "wb") as f:
    f.write(b"half a blob")

def put(data):
    dg = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, dg), "wb") as f:
        f.write(data)
    return "sha256:" + dg

def gz_layer(name, size):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tf:
        data = bytes(rnd.getrandbits(8) for _ in range(size))
        ti = tarfile.TarInfo(name); ti.size = len(data); ti.mtime = 1700000000
        tf.addfile(ti, io.BytesIO(data))
    comp = gzip.compress(raw.getvalue(), mtime=0)
    return put(comp), len(comp), "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()

LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
layers = [gz_layer("usr/lib/python3/site-packages/torch/%d.so" % i, 20000 + 5000 * i) for i in range(3)]
orphans = [gz_layer("old/%d" % i, 15000)[0] for i in range(4)]  # layers of earlier builds
ldesc = [{"mediaType": LAYER, "digest": dg, "size": sz,
          "annotations": {"buildkit/createdat": "2024-05-01T10:00:00Z", "containerd.io/uncompressed": un}}
         for dg, sz, un in layers]
cacheconfig = json.dumps({
    "layers": [{"blob": dg, "parent": i - 1} for i, (dg, _, _) in enumerate(layers)],
    "records": [{"digest": "sha256:" + hashlib.sha256(b"rec%d" % i).hexdigest(),
                 "layers": [{"layer": i}]} for i in range(3)]}).encode()
cfg_dg = put(cacheconfig)
CFG = "application/vnd.buildkit.cacheconfig.v0"
orphans.append(put(json.dumps({"layers": [], "records": []}).encode() + b" "))  # an old cacheconfig
if form == "manifest":
    man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "config": {"mediaType": CFG, "digest": cfg_dg, "size": len(cacheconfig)},
                      "layers": ldesc}).encode()
    top = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": put(man), "size": len(man),
           "annotations": {"org.opencontainers.image.ref.name": "latest"}}
else:
    man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                      "manifests": ldesc + [{"mediaType": CFG, "digest": cfg_dg, "size": len(cacheconfig)}]}).encode()
    top = {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": put(man), "size": len(man),
           "annotations": {"org.opencontainers.image.ref.name": "latest"}}
# An orphaned manifest of an earlier build, pointing at an orphaned layer.
old = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                  "config": {"mediaType": CFG, "digest": orphans[-1], "size": 1},
                  "layers": [{"mediaType": LAYER, "digest": orphans[0], "size": 1}]}).encode()
orphans.append(put(old))
with open(os.path.join(d, "index.json"), "w") as f:
    json.dump({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [top]}, f)
with open(os.path.join(d, "oci-layout"), "w") as f:
    json.dump({"imageLayoutVersion": "1.0.0"}, f)
print(" ".join([top["digest"], cfg_dg] + [dg for dg, _, _ in layers]))
print(" ".join(orphans))
