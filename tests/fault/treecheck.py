#!/usr/bin/env python3
"""Tree and store checks for the fault campaign.

  treecheck.py snap DIR OUT.json        record every entry under DIR: type, sha256 of a
                                        file's bytes or a link's target, permission bits
  treecheck.py eq DIR SNAP.json         DIR is exactly the recorded tree (.stowage-*.tmp files
                                        are left to `tmps`, so a leak is reported once)
  treecheck.py mix DIR OLD.json NEW.json
                                        every entry of DIR is identical to its OLD or its NEW
                                        version, no entry outside both, no entry present in
                                        both missing (.stowage-*.tmp files are ignored: a
                                        killed restore may leave them; the next restore must
                                        remove them, checked with `tmps`)
  treecheck.py overlay OLD.json NEW.json OUT.json
                                        the tree a restore of NEW over OLD leaves: restore
                                        writes the entry's files and keeps files it lacks
  treecheck.py tmps DIR                 prints the .stowage-*.tmp files under DIR; exit 1 if any
  treecheck.py store SNAPDIR            SNAPDIR/keys.txt lists every object of a store,
                                        SNAPDIR/obj/<name> holds each manifests/ object: every
                                        manifest parses and every layer it names exists
  treecheck.py storetmp SNAPDIR         prints temporary objects (.NAME.HEX.tmp); exit 1 if any
Exit 0 when the check holds, 1 with the differences on stdout otherwise."""
import hashlib, json, os, re, stat, sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import manifest_json  # noqa: E402 - manifests of either version

TMP_RE = re.compile(r"^\.stowage-.*\.tmp$")


def snap(root):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            perm = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ["l", os.readlink(p), 0]
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ["d", "", perm]
            elif stat.S_ISREG(st.st_mode):
                h = hashlib.sha256()
                with open(p, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                out[rel] = ["f", h.hexdigest() + ":%d" % st.st_size, perm]
            else:
                out[rel] = ["?", "", perm]
    return out


def load(p):
    with open(p) as f:
        return json.load(f)


def is_tmp(rel):
    # a staged file, or anything inside a new directory staged whole under a temporary name
    return any(TMP_RE.match(c) for c in rel.split("/"))


def show(e):
    return "missing" if e is None else "%s %s %o" % (e[0], e[1][:20], e[2])


def main():
    cmd = sys.argv[1]
    if cmd == "snap":
        with open(sys.argv[3], "w") as f:
            json.dump(snap(sys.argv[2]), f)
        return 0
    if cmd == "overlay":
        old, new = load(sys.argv[2]), load(sys.argv[3])
        out = dict(old)
        for p in list(out):
            # a path that became a file or link in NEW drops whatever OLD had below it
            if any(p.startswith(q + "/") for q in new if new[q][0] != "d"):
                del out[p]
        out.update(new)
        with open(sys.argv[4], "w") as f:
            json.dump(out, f)
        return 0
    if cmd == "eq":
        have, want = snap(sys.argv[2]), load(sys.argv[3])
        bad = [p for p in sorted(set(have) | set(want)) if have.get(p) != want.get(p) and not is_tmp(p)]
        for p in bad[:10]:
            print("%r: have %s, want %s" % (p, show(have.get(p)), show(want.get(p))))
        return 1 if bad else 0
    if cmd == "mix":
        have, old, new = snap(sys.argv[2]), load(sys.argv[3]), load(sys.argv[4])
        bad = []
        for p in sorted(set(have) | set(old) | set(new)):
            if is_tmp(p):
                continue
            h = have.get(p)
            if h is None:
                if p in old and p in new:
                    bad.append("%r: in both trees but missing" % p)
                continue
            o, n = old.get(p), new.get(p)
            if h[0] == "d" and ((o and o[0] == "d") or (n and n[0] == "d")):
                continue  # directory permissions may be applied after the files
            if h != o and h != n:
                bad.append("%r: %s is neither old (%s) nor new (%s)" % (p, show(h), show(o), show(n)))
        for b in bad[:10]:
            print(b)
        return 1 if bad else 0
    if cmd == "tmps":
        found = [os.path.join(dp, n) for dp, dn, fn in os.walk(sys.argv[2]) for n in fn + dn if TMP_RE.match(n)]
        for p in found[:20]:
            print(p)
        if len(found) > 20:
            print("... %d in all" % len(found))
        return 1 if found else 0
    if cmd in ("store", "storetmp"):
        d = sys.argv[2]
        with open(os.path.join(d, "keys.txt")) as f:
            keys = set(l.rstrip("\n") for l in f if l.strip())
        if cmd == "storetmp":
            tmp = sorted(k for k in keys if re.match(r"^\..*\.tmp$", os.path.basename(k)))
            for k in tmp[:20]:
                print(k)
            return 1 if tmp else 0
        bad, n = [], 0
        for k in sorted(keys):
            if not k.startswith("manifests/") or not k.endswith(".json"):
                continue
            n += 1
            try:
                m = manifest_json.load(os.path.join(d, "obj", k))
                layers = m["layers"]
                assert isinstance(layers, list) and isinstance(m["files"], list)
            except Exception as e:  # noqa: BLE001 - any failure to parse is the finding
                bad.append("%s: does not parse as a manifest: %s" % (k, e))
                continue
            for l in layers:
                name = "layers/%s.tar.zst" % l.get("id")
                if name not in keys:
                    bad.append("%s: references missing %s" % (k, name))
        for b in bad[:10]:
            print(b)
        print("%d manifests checked" % n, file=sys.stderr)
        return 1 if bad else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
