"""Reads a stowage manifest of either version as the version 1 JSON object, for tests.

Version 2 (agent/manifest_v2.c): "STOWMF\\0\\2", a 4-byte little-endian header length, a JSON
header, then one zstd frame holding the front-coded file index (decompressed with the zstd
CLI). An independent reader of the format, so a test that uses it also checks the writer.

    python3 manifest_json.py FILE        prints the manifest as version 1 JSON
    import manifest_json; manifest_json.load(FILE)
"""
import json
import subprocess
import sys

MAGIC = b"STOWMF\0\2"


def _varint(b, i):
    v = shift = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return v, i


def load(path):
    data = open(path, "rb").read()
    if not data.startswith(MAGIC):
        return json.loads(data)
    hl = int.from_bytes(data[8:12], "little")
    m = json.loads(data[12:12 + hl])
    idx = subprocess.run(["zstd", "-dc"], input=data[12 + hl:], stdout=subprocess.PIPE,
                         check=True).stdout
    files, i, prev, prev_root = [], 0, b"", None
    for _ in range(m["files"]):
        root, i = _varint(idx, i)
        shared, i = _varint(idx, i)
        n, i = _varint(idx, i)
        base = prev if root == prev_root else b""
        p = base[:shared] + idx[i:i + n]
        i += n
        t = chr(idx[i])
        i += 1
        mode, i = _varint(idx, i)
        mt, i = _varint(idx, i)
        ns, i = _varint(idx, i)
        e = {"r": root, "p": p.decode(), "t": t, "m": mode, "mt": (mt >> 1) ^ -(mt & 1), "ns": ns}
        if t == "f":
            e["s"], i = _varint(idx, i)
            e["l"], i = _varint(idx, i)
            u, i = _varint(idx, i)
            if u:
                e["u"] = u
            flags = idx[i]
            i += 1
            if flags & 1:
                e["h"] = idx[i:i + 32].hex()
                i += 32
        elif t == "l":
            e["l"], i = _varint(idx, i)
            n, i = _varint(idx, i)
            e["lt"] = idx[i:i + n].decode()
            i += n
        files.append(e)
        prev, prev_root = p, root
    if i != len(idx):
        raise ValueError("%s: %d bytes after the last index entry" % (path, len(idx) - i))
    m["files"] = files
    return m


if __name__ == "__main__":
    json.dump(load(sys.argv[1]), sys.stdout)
    print()
