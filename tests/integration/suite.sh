# shellcheck shell=bash
# The store-independent integration suite. A store script (test_file_store.sh,
# test_http_store.sh, test_s3_*.sh) sources lib.sh, starts its server, exports STOWAGE_URL
# (and whatever else the store needs), defines the hooks below, sources this file and calls
# run_suite. Hooks:
#   store_put NAME FILE   upload FILE as object NAME (bypassing stowage: for hostile input)
#   store_get NAME FILE   download object NAME into FILE
#   store_del NAME        delete object NAME

suite_roundtrip() {
    case_begin "round trip: nested/empty dirs, symlinks, odd names, modes, mtimes"
    runner a
    make_fixture "$HOME/cache"
    cp -a "$HOME/cache" "$T/expected"
    stow save --key rt-1 --path '~/cache'
    expect_rc 0 && { err_has "save rt-1" && ok "saved" || fail "no save summary: $(cat "$T/err")"; }
    runner b
    stow restore --key rt-1 --path '~/cache'
    expect_rc 0 || return 0
    out_has "cache-hit=true" || fail "restore did not report a hit: $(cat "$T/out")"
    out_has "cache-matched-key=rt-1" || fail "matched key missing"
    same_tree "$T/expected" "$HOME/cache" && ok "restored tree identical under another HOME"
    # A second restore on the warm runner downloads nothing.
    stow restore --key rt-1 --path '~/cache'
    expect_rc 0 && err_has "downloaded, 0 of 1 layers" && ok "warm restore skipped the layer" || fail "warm restore: $(cat "$T/err")"
    same_tree "$T/expected" "$HOME/cache"
    rm -rf "$T/expected"
}

suite_existing_key() {
    case_begin "--no-update keeps an existing entry immutable; by default it gets a delta"
    runner c
    mkdir -p "$HOME/d" && echo one >"$HOME/d/f"
    stow save --key exist-1 --path '~/d'
    expect_rc 0
    echo two >"$HOME/d/f"
    stow save --key exist-1 --path '~/d' --no-update
    expect_rc 0 && err_has "already exists" && ok "--no-update: second save skipped" || fail "second save: $(cat "$T/err")"
    runner c2
    stow restore --key exist-1 --path '~/d'
    [ "$(cat "$HOME/d/f")" = one ] && ok "entry unchanged" || fail "entry was overwritten"
    runner c
    stow save --key exist-1 --path '~/d'
    expect_rc 0 && err_has "1 new or changed files" && ok "default: delta written" || fail "update: $(cat "$T/err")"
    runner c3
    stow restore --key exist-1 --path '~/d'
    [ "$(cat "$HOME/d/f")" = two ] && ok "updated entry restores the new content" || fail "got $(cat "$HOME/d/f")"
}

# uploaded_bytes: the byte count of the last save's "... uploaded" summary, in bytes.
uploaded_bytes() {
    python3 - "$T/err" <<'PY'
import re, sys
m = re.search(r"; ([0-9.]+) (B|kB|MB|GB) uploaded", open(sys.argv[1]).read())
print(int(float(m.group(1)) * {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}[m.group(2)]) if m else -1)
PY
}

make_wheels() { # DIR N: N incompressible 200 kB "wheels"
    mkdir -p "$1"
    local i
    for i in $(seq 1 "$2"); do head -c 200000 /dev/urandom >"$1/pkg$i.whl"; done
}

suite_delta() {
    case_begin "delta save: only changed files are uploaded"
    runner d1
    make_wheels "$HOME/c/pip" 50
    mkdir -p "$HOME/c/apt" && seq 1 1000 >"$HOME/c/apt/list"
    stow save --key delta-1 --restore-key delta- --path '~/c'
    expect_rc 0
    local full delta
    full=$(uploaded_bytes)
    stow save --key delta-1 --restore-key delta- --path '~/c'
    expect_rc 0 && err_has "nothing to upload" && ok "unchanged: nothing uploaded" || fail "no-change save: $(cat "$T/err")"
    head -c 200000 /dev/urandom >"$HOME/c/pip/pkg7.whl"   # changed
    head -c 200000 /dev/urandom >"$HOME/c/pip/new.whl"    # added
    rm "$HOME/c/pip/pkg9.whl"                               # removed
    stow save --key delta-1 --restore-key delta- --path '~/c'
    expect_rc 0
    delta=$(uploaded_bytes)
    err_has "2 new or changed files, 1 removed" && ok "delta found 2 changed, 1 removed" || fail "$(cat "$T/err")"
    [ "$delta" -gt 0 ] && [ "$delta" -lt $((full / 10)) ] && ok "delta uploaded $delta of $full bytes" ||
        fail "delta uploaded $delta bytes, full save $full"
    cp -a "$HOME/c" "$T/delta-expected"

    case_begin "a fresh runner restores parent layers plus the delta"
    runner d2
    stow restore --key delta-1 --path '~/c'
    expect_rc 0 && same_tree "$T/delta-expected" "$HOME/c" && [ ! -e "$HOME/c/pip/pkg9.whl" ] &&
        ok "tree matches, removed file absent" || fail "delta restore: tree differs or pkg9.whl present: $(cat "$T/err")"

    case_begin "warm runner downloads only the layers it lacks"
    runner d1
    stow restore --key delta-1 --path '~/c'
    expect_rc 0 && err_has "downloaded, 0 of 2 layers" && ok "runner that saved downloads nothing" || fail "$(cat "$T/err")"

    case_begin "restore-key match + new key uploads about the added package"
    runner d3
    stow restore --key delta-2 --restore-key delta- --path '~/c'
    out_has "cache-result=partial" || fail "expected a partial match: $(cat "$T/out")"
    head -c 200000 /dev/urandom >"$HOME/c/pip/added.whl"
    stow save --key delta-2 --restore-key delta- --path '~/c'
    expect_rc 0
    delta=$(uploaded_bytes)
    [ "$delta" -gt 200000 ] && [ "$delta" -lt 260000 ] && err_has "1 new or changed files, 0 removed" &&
        ok "new key uploaded $delta bytes for one 200 kB package" || fail "uploaded $delta: $(cat "$T/err")"
    runner d4
    stow restore --key delta-2 --path '~/c'
    [ -f "$HOME/c/pip/added.whl" ] && [ -f "$HOME/c/pip/pkg1.whl" ] && ok "new key restores old and added files" ||
        fail "delta-2 restore incomplete"

    case_begin "new key with no changes uploads only a manifest"
    runner d3
    stow save --key delta-3 --restore-key delta- --path '~/c'
    # Parent here is delta-2 (the last save from this runner).
    expect_rc 0 && err_has "0 new or changed files, 0 removed" && [ "$(uploaded_bytes)" -lt 100000 ] &&
        ok "manifest only: $(uploaded_bytes) bytes" || fail "$(cat "$T/err")"

    case_begin "compaction: a mostly dead layer is repacked"
    runner d5
    make_wheels "$HOME/c" 10
    stow save --key compact-1 --path '~/c'
    local i
    for i in 1 2 3 4 5 6; do head -c 200000 /dev/urandom >"$HOME/c/pkg$i.whl"; done
    stow save --key compact-1 --path '~/c'
    expect_rc 0 && err_has "1 layers repacked" && ok "old layer repacked" || fail "$(cat "$T/err")"
    cp -a "$HOME/c" "$T/compact-expected"
    runner d6
    stow restore --key compact-1 --path '~/c'
    expect_rc 0 && err_has "1 of 1 layers" && same_tree "$T/compact-expected" "$HOME/c" &&
        ok "restore needs one layer" || fail "$(cat "$T/err")"

    case_begin "layer count stays bounded over many deltas"
    runner d7
    make_wheels "$HOME/c" 3
    for i in 1 2 3 4 5 6 7 8; do
        head -c 1000 /dev/urandom >"$HOME/c/small$i"
        stow save --key chain-1 --path '~/c' --max-layers 4
        expect_rc 0 || break
    done
    runner d8
    stow restore --key chain-1 --path '~/c'
    local nl
    nl=$(grep -o 'of [0-9]* layers' "$T/err" | grep -o '[0-9]*')
    [ -n "$nl" ] && [ "$nl" -le 4 ] && [ -f "$HOME/c/small8" ] && [ -f "$HOME/c/pkg1.whl" ] &&
        ok "8 deltas with --max-layers 4: $nl layers" || fail "layers: $nl; $(cat "$T/err")"

    case_begin "--checksum sees a change that keeps size and mtime"
    runner d9
    mkdir -p "$HOME/c" && echo aaaa >"$HOME/c/f" && touch -d '2020-01-01' "$HOME/c/f"
    stow save --key sum-1 --path '~/c' --checksum
    echo bbbb >"$HOME/c/f" && touch -d '2020-01-01' "$HOME/c/f"
    stow save --key sum-1 --path '~/c'
    err_has "nothing to upload" && ok "size/mtime compare misses it (as documented)" || fail "$(cat "$T/err")"
    stow save --key sum-1 --path '~/c' --checksum
    err_has "1 new or changed files" && ok "--checksum finds it" || fail "$(cat "$T/err")"

    case_begin "a parent layer pruned since the restore is repacked, never referenced"
    runner g1
    make_wheels "$HOME/c" 4
    stow save --key gone-1 --path '~/c'
    local layer
    layer=$(stow_layers_of gone-1)
    store_del "$layer"
    echo new >"$HOME/c/new"
    stow save --key gone-1 --path '~/c'
    expect_rc 0 && err_has "is gone from the store" && ok "missing layer detected" || fail "$(cat "$T/err")"
    runner g2
    stow restore --key gone-1 --path '~/c' --strict
    expect_rc 0 && [ -f "$HOME/c/pkg1.whl" ] && [ -f "$HOME/c/new" ] && ok "entry complete" || fail "$(cat "$T/err")"

    case_begin "concurrent saves of one key both finish with one complete entry"
    runner e1
    make_wheels "$HOME/c" 20
    echo "job e1" >"$HOME/c/who"
    runner e2
    make_wheels "$HOME/c" 20
    echo "job e2" >"$HOME/c/who"
    local p1 p2
    (runner e1; "$STOWAGE_BIN" save --key race-1 --path '~/c' --strict >"$T/e1.out" 2>&1; echo $? >"$T/e1.rc") &
    p1=$!
    (runner e2; "$STOWAGE_BIN" save --key race-1 --path '~/c' --strict >"$T/e2.out" 2>&1; echo $? >"$T/e2.rc") &
    p2=$!
    wait "$p1" "$p2" # not a bare wait: a store script may run its servers as background jobs
    [ "$(cat "$T/e1.rc")$(cat "$T/e2.rc")" = 00 ] && ok "both saves exit 0" || fail "exit codes $(cat "$T/e1.rc") $(cat "$T/e2.rc"): $(cat "$T/e1.out" "$T/e2.out")"
    runner e3
    stow restore --key race-1 --path '~/c' --strict
    local who
    who=$(cat "$HOME/c/who" 2>/dev/null || echo none)
    expect_rc 0 && { same_tree "$T/home-${who#job }/c" "$HOME/c" && ok "entry is exactly $who's tree"; } || fail "restore: $(cat "$T/err")"
}

suite_lookup() {
    case_begin "lookup order: exact, fallback scope, restore-key prefix, newest ref"
    runner l1
    mkdir -p "$HOME/c"
    echo main-old >"$HOME/c/v"; stow save --key deps-aaa --restore-key deps- --scope main --path '~/c'; expect_rc 0
    sleep 1
    echo main-new >"$HOME/c/v"; stow save --key deps-bbb --restore-key deps- --scope main --path '~/c'; expect_rc 0
    echo feature >"$HOME/c/v"; stow save --key other-1 --restore-key other- --scope feature --path '~/c'; expect_rc 0

    runner l2
    stow restore --key deps-zzz --restore-key deps- --scope feature --fallback-scope main --path '~/c'
    expect_rc 0
    out_has "cache-result=partial" && out_has "cache-matched-key=deps-bbb" && out_has "cache-hit=false" &&
        [ "$(cat "$HOME/c/v")" = main-new ] && ok "prefix in fallback scope restores the newest key" ||
        fail "prefix lookup: $(cat "$T/out")"

    runner l3
    stow restore --key deps-aaa --restore-key deps- --scope feature --fallback-scope main --path '~/c'
    out_has "cache-result=hit" && out_has "cache-matched-key=deps-aaa" && [ "$(cat "$HOME/c/v")" = main-old ] &&
        ok "exact key in fallback scope beats the newer prefix match" || fail "exact vs prefix: $(cat "$T/out")"

    runner l4
    stow restore --key nothing-here --restore-key nope- --scope feature --path '~/c'
    expect_rc 0 && out_has "cache-result=miss" && out_has "cache-matched-key=$" && ok "miss reported, exit 0" ||
        fail "miss: $(cat "$T/out")"
    [ ! -e "$HOME/c/v" ] || fail "miss wrote files"
    stow restore --key nothing-here --fail-on-miss --path '~/c'
    expect_rc 3 && ok "--fail-on-miss exits 3"

    runner l5
    stow restore --key deps-bbb --scope main --lookup-only --path '~/c'
    expect_rc 0 && out_has "cache-hit=true" && [ ! -e "$HOME/c/v" ] && ok "--lookup-only reports without restoring" ||
        fail "lookup-only: $(cat "$T/out")"

    case_begin "GITHUB_OUTPUT"
    runner l6
    export GITHUB_OUTPUT="$T/gh-output"
    : >"$GITHUB_OUTPUT"
    stow restore --key deps-ccc --restore-key deps- --scope main --path '~/c'
    unset GITHUB_OUTPUT
    grep -qx "cache-hit=false" "$T/gh-output" && grep -qx "cache-primary-key=deps-ccc" "$T/gh-output" &&
        grep -qx "cache-matched-key=deps-bbb" "$T/gh-output" && ok "outputs written" ||
        fail "GITHUB_OUTPUT: $(cat "$T/gh-output")"
}

suite_corrupt_layer() {
    case_begin "a flipped byte in a stored layer fails the restore cleanly"
    runner k1
    mkdir -p "$HOME/c/sub"
    head -c 2000000 /dev/urandom >"$HOME/c/sub/blob"
    echo fresh >"$HOME/c/keep"
    stow save --key corrupt-1 --path '~/c'
    expect_rc 0
    local layer
    layer=$(stow_layers_of corrupt-1)
    [ -n "$layer" ] || { fail "cannot find the layer of corrupt-1"; return 0; }
    store_get "$layer" "$T/layer"
    python3 -c 'import sys; p=sys.argv[1]; b=bytearray(open(p,"rb").read()); b[len(b)//2]^=0x01; open(p,"wb").write(b)' "$T/layer"
    store_put "$layer" "$T/layer"
    runner k2
    mkdir -p "$HOME/c"
    echo "user data" >"$HOME/c/keep"
    stow restore --key corrupt-1 --path '~/c' --strict
    expect_rc 1 && ok "--strict: exit 1"
    [ "$(cat "$HOME/c/keep")" = "user data" ] && ok "existing file untouched" || fail "existing file replaced"
    [ ! -e "$HOME/c/sub/blob" ] && ok "no file from the bad layer" || fail "bad layer left $HOME/c/sub/blob"
    [ -z "$(find "$HOME/c" -name '.stowage-*')" ] || fail "temp files left behind: $(find "$HOME/c" -name '.stowage-*')"
    stow restore --key corrupt-1 --path '~/c'
    expect_rc 0 && err_has "warning" && ok "default: warning and exit 0" || fail "fail-open: $(cat "$T/err")"
}

# The layer objects a manifest references.
stow_layers_of() {
    store_get "manifests/default/$1.json" "$T/m.json"
    python3 -c 'import manifest_json,sys; [print("layers/%s.tar.zst" % l["id"]) for l in manifest_json.load(sys.argv[1])["layers"]]' "$T/m.json"
}

suite_hostile() {
    local sc
    for sc in absolute dotdot symlink-escape device hardlink; do
        case_begin "hostile archive: $sc"
        runner "h-$sc"
        local root="$HOME/c" outside="$T/outside-$sc/pwned"
        mkdir -p "$T/outside-$sc" "$T/gen-$sc"
        python3 "$STOW_TEST_SRC/tests/integration/make_hostile.py" "$T/gen-$sc" default "hostile-$sc" '~/c' "$sc" "$outside"
        local f
        for f in $(cd "$T/gen-$sc" && find . -type f | sed 's|^\./||'); do store_put "$f" "$T/gen-$sc/$f"; done
        # The expanded root for the outside path computation must match what the entry says.
        stow restore --key "hostile-$sc" --path '~/c' --strict
        expect_rc 1 && err_has "refusing\|not a valid\|not listed" && ok "refused: $(grep -o 'refusing[^:]*: [^:]*$\|not listed.*' "$T/err" | head -1)" ||
            fail "not refused: $(cat "$T/err")"
        [ -z "$(ls -A "$T/outside-$sc")" ] && ok "nothing written outside the root" || fail "wrote outside: $(ls -A "$T/outside-$sc")"
        [ ! -e "$root/good.txt" ] || fail "files of a refused layer were committed"
        [ -z "$(find "$HOME" -name '.stowage-*')" ] || fail "temp files left behind"
    done
}

suite_unlisted_entry() {
    case_begin "an archive entry the index does not list is read past, never written"
    runner h-unlisted
    mkdir -p "$T/gen-unlisted"
    python3 "$STOW_TEST_SRC/tests/integration/make_hostile.py" "$T/gen-unlisted" default hostile-unlisted '~/c' not-in-index "$T/unused"
    local f
    for f in $(cd "$T/gen-unlisted" && find . -type f | sed 's|^\./||'); do store_put "$f" "$T/gen-unlisted/$f"; done
    stow restore --key hostile-unlisted --path '~/c' --strict
    expect_rc 0 && [ -f "$HOME/c/good.txt" ] && [ ! -e "$HOME/c/unlisted.txt" ] && ok "listed file restored, unlisted one not" ||
        fail "$(cat "$T/err"); $(ls -A "$HOME/c" 2>&1)"
}

# No symlink under $1 may resolve outside $1 (followed the way a build would follow it).
links_stay_inside() {
    python3 - "$1" <<'PY'
import os, sys
root = os.path.realpath(sys.argv[1])
bad = []
for d, dirs, files in os.walk(root):
    for n in dirs + files:
        p = os.path.join(d, n)
        if os.path.islink(p):
            r = os.path.realpath(p)
            if r != root and not r.startswith(root + "/"):
                bad.append("%s -> %s" % (p, r))
print("\n".join(bad))
sys.exit(1 if bad else 0)
PY
}

suite_hostile_links() {
    local sc
    for sc in symlink-chain symlink-chain-dir symlink-chain-write; do
        case_begin "hostile entry: $sc (links that pass the lexical check one by one)"
        runner "h-$sc"
        local outside="$T/outside-$sc/pwned" f
        mkdir -p "$T/outside-$sc" "$T/gen-$sc"
        echo original >"$outside"
        python3 "$STOW_TEST_SRC/tests/integration/make_hostile.py" "$T/gen-$sc" default "hostile-$sc" '~/c' "$sc" "$outside"
        for f in $(cd "$T/gen-$sc" && find . -type f | sed 's|^\./||'); do store_put "$f" "$T/gen-$sc/$f"; done
        mkdir -p "$HOME/c" && echo mine >"$HOME/c/keep"
        stow restore --key "hostile-$sc" --path '~/c' --strict
        expect_rc 1 && err_has "resolves outside\|refusing" && ok "--strict: refused, exit 1" || fail "not refused: $(cat "$T/err")"
        out_has "cache-hit=false" && out_has "cache-result=error" && ok "reported as an error" || fail "outputs: $(cat "$T/out")"
        [ "$(cat "$outside")" = original ] && [ "$(ls -A "$T/outside-$sc")" = pwned ] &&
            ok "nothing outside the root written or replaced" || fail "outside changed: $(ls -la "$T/outside-$sc")"
        links_stay_inside "$HOME/c" >"$T/escapes" && ok "no link in the root resolves outside it" ||
            fail "links escape: $(cat "$T/escapes")"
        [ "$(ls -A "$HOME/c")" = keep ] && ok "previous tree as it was" || fail "tree changed: $(ls -A "$HOME/c")"
        [ -z "$(find "$HOME" -name '.stowage-*.tmp')" ] || fail "temp files left behind"
        stow restore --key "hostile-$sc" --path '~/c'
        expect_rc 0 && err_has "warning" && out_has "cache-result=error" && links_stay_inside "$HOME/c" >/dev/null &&
            ok "default: warning, exit 0, still nothing restored" || fail "fail-open: $(cat "$T/err")"
    done
}

suite_all_or_nothing() {
    case_begin "one bad layer of five: nothing replaced, reported as an error"
    runner aon1
    local i
    mkdir -p "$HOME/c"
    for i in $(seq 1 10); do head -c 100000 /dev/urandom >"$HOME/c/f$i"; echo "old $i" >"$HOME/c/s$i"; done
    stow save --key aon-1 --path '~/c' --strict
    expect_rc 0
    runner aon2
    stow restore --key aon-1 --path '~/c' --strict
    expect_rc 0 || return 0
    cp -a "$HOME/c" "$T/aon-before"
    runner aon1
    for i in $(seq 1 10); do head -c 100000 /dev/urandom >"$HOME/c/f$i"; echo "new $i" >"$HOME/c/s$i"; done
    stow save --key aon-2 --path '~/c' --strict --layer-size 200k --no-update
    expect_rc 0
    local layers n
    layers=$(stow_layers_of aon-2)
    n=$(echo "$layers" | wc -l)
    [ "$n" -ge 5 ] && ok "entry has $n layers" || fail "expected at least 5 layers, got $n"
    store_get "$(echo "$layers" | sed -n 3p)" "$T/layer"
    python3 -c 'import sys; p=sys.argv[1]; b=bytearray(open(p,"rb").read()); b[len(b)//2]^=0x01; open(p,"wb").write(b)' "$T/layer"
    store_put "$(echo "$layers" | sed -n 3p)" "$T/layer"
    runner aon2
    export GITHUB_OUTPUT="$T/aon-gh"
    : >"$GITHUB_OUTPUT"
    stow restore --key aon-2 --path '~/c' --strict
    unset GITHUB_OUTPUT
    expect_rc 1 && ok "--strict: exit 1"
    if same_tree "$T/aon-before" "$HOME/c"; then ok "previous tree exactly as it was"; fi # same_tree fails itself
    out_has "cache-hit=false" && out_has "cache-result=error" && ok "stdout: cache-hit=false, cache-result=error" ||
        fail "stdout: $(cat "$T/out")"
    grep -qx "cache-hit=false" "$T/aon-gh" && grep -qx "cache-result=error" "$T/aon-gh" &&
        ok "GITHUB_OUTPUT: cache-hit=false, cache-result=error" || fail "GITHUB_OUTPUT: $(cat "$T/aon-gh")"
    [ -z "$(find "$HOME/c" -name '.stowage-*.tmp')" ] || fail "temp files left behind"
    stow restore --key aon-2 --path '~/c'
    expect_rc 0 && err_has "warning" && out_has "cache-result=error" && same_tree "$T/aon-before" "$HOME/c" &&
        ok "default: warning, exit 0, error reported, tree unchanged" || fail "fail-open: $(cat "$T/out") $(cat "$T/err")"

    case_begin "a missing layer: cache-hit=false, cache-result=error"
    store_del "$(echo "$layers" | sed -n 2p)"
    stow restore --key aon-2 --path '~/c'
    expect_rc 0 && out_has "cache-hit=false" && out_has "cache-result=error" && same_tree "$T/aon-before" "$HOME/c" &&
        ok "missing layer reported as an error, tree unchanged" || fail "$(cat "$T/out") $(cat "$T/err")"

    case_begin "warm runner: present layers are still skipped"
    runner aon1
    stow restore --key aon-1 --path '~/c' --strict
    expect_rc 0 && err_has "downloaded, 1 of 1 layers" || fail "$(cat "$T/err")"
    stow restore --key aon-1 --path '~/c' --strict
    expect_rc 0 && err_has "downloaded, 0 of 1 layers" && out_has "cache-hit=true" && ok "second restore skipped the layer" ||
        fail "warm restore: $(cat "$T/err")"
    rm -rf "$T/aon-before"
}

suite_temp_sweep() {
    case_begin "restore removes the temp files an interrupted restore left, and only those"
    runner ts1
    mkdir -p "$HOME/c/sub" && echo data >"$HOME/c/sub/f"
    stow save --key ts-1 --path '~/c' --strict
    expect_rc 0
    runner ts2
    mkdir -p "$HOME/c/deep/er" "$T/ts-outside"
    head -c 1000 /dev/urandom >"$HOME/c/.stowage-0123456789abcdef.tmp"
    head -c 1000 /dev/urandom >"$HOME/c/deep/er/.stowage-fedcba9876543210.tmp"
    ln -s somewhere "$HOME/c/deep/.stowage-00112233445566ff.tmp"   # a staged symlink
    echo mine >"$HOME/c/.stowage-notes.tmp"                       # not stowage's pattern
    mkdir -p "$HOME/c/.stowage-aaaaaaaaaaaaaaaa.tmp/x"               # a new directory staged whole
    echo staged >"$HOME/c/.stowage-aaaaaaaaaaaaaaaa.tmp/x/f"
    echo theirs >"$T/ts-outside/.stowage-bbbbbbbbbbbbbbbb.tmp"
    ln -s "$T/ts-outside" "$HOME/c/out-link"                        # never followed
    stow restore --key ts-1 --path '~/c' --strict
    expect_rc 0 && err_has "removed 4 stale temporary files" && ok "$(grep -o 'removed 4 stale.*' "$T/err")" ||
        fail "$(cat "$T/err")"
    [ ! -e "$HOME/c/.stowage-0123456789abcdef.tmp" ] && [ ! -e "$HOME/c/deep/er/.stowage-fedcba9876543210.tmp" ] &&
        [ ! -L "$HOME/c/deep/.stowage-00112233445566ff.tmp" ] && [ ! -e "$HOME/c/.stowage-aaaaaaaaaaaaaaaa.tmp" ] &&
        ok "stale temp files and staged directories removed" || fail "$(find "$HOME/c")"
    [ -f "$HOME/c/.stowage-notes.tmp" ] && [ -f "$T/ts-outside/.stowage-bbbbbbbbbbbbbbbb.tmp" ] &&
        ok "other names and files behind a link kept" ||
        fail "removed too much: $(find "$HOME/c" "$T/ts-outside")"
    [ "$(cat "$HOME/c/sub/f")" = data ] || fail "entry not restored"
}

suite_setid() {
    case_begin "setuid/setgid bits are stripped unless --preserve-setid"
    runner si1
    mkdir -p "$HOME/c/gdir" && printf '#!/bin/sh\n' >"$HOME/c/tool" && chmod 4755 "$HOME/c/tool" && chmod 2775 "$HOME/c/gdir"
    printf '#!/bin/sh\n' >"$HOME/c/gtool" && chmod 2711 "$HOME/c/gtool"
    stow save --key si-1 --path '~/c' --strict
    expect_rc 0
    runner si2
    stow restore --key si-1 --path '~/c' --strict
    expect_rc 0 && [ "$(stat -c %a "$HOME/c/tool" "$HOME/c/gtool" "$HOME/c/gdir" | tr '\n' ' ')" = "755 711 775 " ] &&
        ok "default: stripped" || fail "modes: $(stat -c '%a %n' "$HOME/c/tool" "$HOME/c/gtool" "$HOME/c/gdir")"
    runner si3
    stow restore --key si-1 --path '~/c' --strict --preserve-setid
    expect_rc 0 && [ "$(stat -c %a "$HOME/c/tool" "$HOME/c/gtool" "$HOME/c/gdir" | tr '\n' ' ')" = "4755 2711 2775 " ] &&
        ok "--preserve-setid: kept" || fail "modes: $(stat -c '%a %n' "$HOME/c/tool" "$HOME/c/gtool" "$HOME/c/gdir")"
}

blob_file() { echo "$1/blobs/sha256/${2#sha256:}"; }

suite_buildx() {
    local form
    for form in manifest index; do
        case_begin "buildx local cache ($form form): unreachable blobs pruned before save"
        runner "bx-$form"
        local dir="$HOME/buildx-cache" refs orphans dg
        mkdir -p "$dir"
        { read -r refs; read -r orphans; } < <(python3 "$STOW_TEST_SRC/tests/integration/make_buildx_cache.py" "$dir" "$form")
        stow save --key "bx-$form" --path '~/buildx-cache' --path '~/other'
        expect_rc 0 && err_has "deleted $(echo "$orphans" | wc -w) unreferenced" && ok "$(grep -o 'kept.*' "$T/err" | head -1)" ||
            fail "$(cat "$T/err")"
        for dg in $refs; do [ -f "$(blob_file "$dir" "$dg")" ] || fail "referenced blob $dg was deleted"; done
        for dg in $orphans; do [ ! -e "$(blob_file "$dir" "$dg")" ] || fail "orphan $dg survived"; done
        [ -f "$dir/index.json" ] && [ -f "$dir/oci-layout" ] && [ -f "$dir/ingest/partial-upload/data" ] &&
            ok "index.json, oci-layout and ingest/ kept" || fail "layout files lost"
        cp -a "$dir" "$T/bx-expected"
        runner "bx-$form-2"
        stow restore --key "bx-$form" --path '~/buildx-cache' --path '~/other'
        # expect_rc and same_tree record their own failures
        if expect_rc 0 && same_tree "$T/bx-expected" "$HOME/buildx-cache"; then ok "restored the pruned cache"; fi
        rm -rf "$T/bx-expected"
    done

    case_begin "buildx: a missing referenced blob warns; a broken index.json deletes nothing"
    runner bx-broken
    local dir="$HOME/bx" refs orphans
    mkdir -p "$dir"
    { read -r refs; read -r orphans; } < <(python3 "$STOW_TEST_SRC/tests/integration/make_buildx_cache.py" "$dir" manifest)
    read -ra refs_a <<<"$refs"
    rm "$(blob_file "$dir" "${refs_a[2]}")"
    stow save --key bx-missing --path '~/bx'
    expect_rc 0 && err_has "missing" && ok "missing blob reported" || fail "$(cat "$T/err")"
    rm -rf "$dir" && mkdir -p "$dir"
    python3 "$STOW_TEST_SRC/tests/integration/make_buildx_cache.py" "$dir" index >/dev/null
    local before
    before=$(find "$dir/blobs" -type f | wc -l)
    echo '{"manifests": [' >"$dir/index.json"
    stow save --key bx-broken --path '~/bx'
    expect_rc 0 && err_has "not pruning" && [ "$(find "$dir/blobs" -type f | wc -l)" = "$before" ] &&
        ok "nothing deleted, save went on" || fail "$(cat "$T/err")"
}

# set_last_used KEY SECONDS_AGO: an access marker as restore writes it, dated by the test.
set_last_used() {
    printf '{"time":%s}' $(($(date +%s) - $2)) >"$T/marker"
    store_put "lc/access/default/$1" "$T/marker"
}

suite_lifecycle() {
    # A store of its own (a sub-prefix), so pruning does not see other cases' entries.
    local saved_url="$STOWAGE_URL"
    export STOWAGE_URL="$STOWAGE_URL/lc"
    case_begin "list, stats and prune by age, by size, dry run, shared layers, refs"
    runner lc
    make_wheels "$HOME/c" 5
    stow save --key lc-old --restore-key lc- --path '~/c'
    head -c 200000 /dev/urandom >"$HOME/c/extra.whl"
    stow save --key lc-mid --restore-key lc- --path '~/c'   # delta: shares lc-old's layer
    runner lc2
    make_wheels "$HOME/c" 3
    stow save --key lc-new --path '~/c'
    # Entries are "created" 10 days ago by the test clock; last use comes from markers.
    local future=$(($(date +%s) + 10 * 86400))
    set_last_used lc-old $((9 * 86400 - 10 * 86400))  # = 9 days before the clock
    set_last_used lc-mid $((3 * 86400 - 10 * 86400))
    set_last_used lc-new $((1 * 86400 - 10 * 86400))
    stow list --json
    expect_rc 0
    python3 - "$T/out" <<'PY' && ok "list --json: 3 entries with sizes and layer counts" || fail "list: $(cat "$T/out")"
import json, sys
e = {x["key"]: x for x in json.load(open(sys.argv[1]))}
assert set(e) >= {"lc-old", "lc-mid", "lc-new"}, e
assert e["lc-mid"]["layers"] == 2 and e["lc-old"]["layers"] == 1, e
assert e["lc-mid"]["size"] == 1200000 and e["lc-old"]["stored"] > 1000000, e
PY
    stow stats --json
    python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["store"]; assert s["shared_bytes"] > 1000000, s' "$T/out" &&
        ok "stats: shared bytes counted" || fail "stats: $(cat "$T/out")"

    STOWAGE_NOW=$future stow prune --max-age 7d --dry-run
    expect_rc 0 && out_has "would delete entry manifests/default/lc-old.json" && ! out_has "lc-mid" &&
        ok "dry run names the stale entry" || fail "dry run: $(cat "$T/out")"
    stow list
    grep -q lc-old "$T/out" && ok "dry run deleted nothing" || fail "dry run deleted lc-old"

    STOWAGE_NOW=$future stow prune --max-age 7d
    expect_rc 0 && out_has "deleted entry manifests/default/lc-old.json" && ! out_has "deleted layer" &&
        ok "stale entry deleted; its layer is shared with lc-mid and kept" || fail "prune: $(cat "$T/out")"
    runner lc3
    stow restore --key lc-mid --path '~/c' --strict
    expect_rc 0 && [ -f "$HOME/c/pkg1.whl" ] && [ -f "$HOME/c/extra.whl" ] && ok "lc-mid still restores" || fail "$(cat "$T/err")"

    # Size budget: only the most recently used entry fits.
    STOWAGE_NOW=$future stow prune --max-size 700k --grace 0
    # refs/default/lc- was last written by lc-new's save (every separator prefix of the key
    # gets a ref), so it does not dangle and stays.
    expect_rc 0 && out_has "deleted entry manifests/default/lc-mid.json" && out_has "deleted layer" &&
        ! out_has "deleted ref refs/default/lc-" && ok "LRU entry and its layers deleted; ref lc- (now lc-new's) kept" ||
        fail "$(cat "$T/out")"
    stow list
    grep -q lc-new "$T/out" && ! grep -q lc-mid "$T/out" && ok "most recently used entry kept" || fail "$(cat "$T/out")"

    export STOWAGE_URL="$saved_url"
}

# wait_prune_sees PATTERN: the event a prune-during-save case waits for. Runs a dry-run prune
# (-v) until its log matches PATTERN, e.g. a finished layer of the save in progress that no
# manifest references yet. Fails when the save ends first or after 120 s (a bound, not a delay).
wait_prune_sees() {
    local deadline=$((SECONDS + 120))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if "$STOWAGE_BIN" prune --dry-run -v >"$T/poll.out" 2>&1 && grep -Eq -- "$1" "$T/poll.out"; then
            return 0
        fi
        [ -s "$T/race.rc" ] && return 1
        # Each poll is a whole dry-run prune (a listing and a read of every manifest and
        # lease; on moto that was 10 CPU-s a case at 20 polls a second). The events last
        # seconds: the save's first layer is done within about 1 s of its 4.
        sleep 0.2
    done
    return 1
}

# slow_delta_save KEY: on the current runner (whose last save is the parent), adds four
# incompressible 2 MB blobs and saves KEY in the background at zstd level 19 on one thread,
# one 2 MB layer at a time: seconds during which finished layers exist without a manifest
# (level 19 is what makes it slow: 2 MB a layer costs 2/3 of the CPU of the 3 MB it was).
slow_delta_save() {
    mkdir -p "$HOME/c/big"
    local i
    for i in 1 2 3 4; do head -c 2000000 /dev/urandom >"$HOME/c/big/blob$i"; done
    rm -f "$T/race.rc"
    ("$STOWAGE_BIN" save --key "$1" --path '~/c' --layer-size 2M --parallel 1 --threads 1 --compression-level 19 \
        --strict -v >"$T/race.out" 2>&1; echo $? >"$T/race.rc") &
    SAVER=$!
}

# Prune while a delta save uploads (issue 12.4): the parent entry is evicted (grace respected)
# while the save that reuses its layers is uploading. The save's lease keeps those layers; a
# save whose lease was missed re-uploads what prune removed; --grace 0 is refused meanwhile.
suite_prune_during_save() {
    local saved_url="$STOWAGE_URL" later
    export STOWAGE_URL="$STOWAGE_URL/ps"
    later=$(($(date +%s) + 7200)) # prune's clock: the parent is 2 h old, its layers too

    case_begin "prune evicting the parent while a delta save uploads keeps the save whole"
    runner ps1
    make_wheels "$HOME/c" 5
    stow save --key ps-parent --path '~/c' --strict
    expect_rc 0 || fail "parent save: $(cat "$T/err")"
    slow_delta_save ps-child
    if wait_prune_sees 'keeping unreferenced layers/.*(younger than the grace period|named by a live lease)'; then
        ok "prune sees a finished layer of the save in progress"
        stow prune --grace 0
        expect_rc 2 && err_has "refusing --grace 0" && ok "--grace 0 refused while a save holds a lease" ||
            fail "--grace 0 during a save: rc=$RC $(cat "$T/err") $(cat "$T/out")"
        STOWAGE_NOW=$later stow prune --max-age 1h -v
        expect_rc 0 && out_has "deleted entry manifests/default/ps-parent.json" && ok "parent entry evicted mid-save" ||
            fail "prune: $(cat "$T/out") $(cat "$T/err")"
        out_has "deleted layer" && fail "prune deleted layers the save relies on: $(cat "$T/out")"
    else
        fail "the save ended before prune saw its layers; the race was not exercised: $(cat "$T/poll.out")"
    fi
    set +e
    wait "$SAVER"
    set -e
    [ "$(cat "$T/race.rc")" = 0 ] && ok "save --strict exit 0" || fail "save failed: $(cat "$T/race.out")"
    cp -a "$HOME/c" "$T/ps-expected"
    runner ps2
    stow restore --key ps-child --path '~/c' --strict
    expect_rc 0 && same_tree "$T/ps-expected" "$HOME/c" && ok "child entry restores whole after the parent was evicted" ||
        fail "restore after prune: $(cat "$T/err")"
    stow prune --grace 0
    expect_rc 0 && ok "--grace 0 accepted once no save holds a lease" || fail "$(cat "$T/err")"

    case_begin "a save whose parent layers vanish behind its lease re-uploads them"
    runner ps3
    rm -rf "$HOME/c" "$T/ps-expected"
    make_wheels "$HOME/c" 5
    stow save --key ps-parent2 --path '~/c' --strict
    expect_rc 0 || fail "parent save: $(cat "$T/err")"
    store_get "ps/manifests/default/ps-parent2.json" "$T/ps-parent2.json"
    slow_delta_save ps-child2
    if wait_prune_sees 'live lease leases/[0-9a-f]*\.json'; then
        # What a prune that listed the leases just before this save wrote its own would do.
        store_del "ps/manifests/default/ps-parent2.json"
        for l in $(python3 -c 'import manifest_json,sys; [print("layers/%s.tar.zst" % l["id"]) for l in manifest_json.load(sys.argv[1])["layers"]]' "$T/ps-parent2.json"); do
            store_del "ps/$l"
        done
        ok "parent entry and its layers deleted while the save uploads"
    else
        fail "no lease seen while the save ran: $(cat "$T/poll.out")"
    fi
    set +e
    wait "$SAVER"
    set -e
    [ "$(cat "$T/race.rc")" = 0 ] && grep -q "uploading it again" "$T/race.out" && ok "save repaired its entry" ||
        fail "save: rc=$(cat "$T/race.rc") $(cat "$T/race.out")"
    cp -a "$HOME/c" "$T/ps-expected"
    runner ps4
    stow restore --key ps-child2 --path '~/c' --strict
    expect_rc 0 && same_tree "$T/ps-expected" "$HOME/c" && ok "repaired entry restores whole" ||
        fail "restore: $(cat "$T/err")"
    rm -rf "$T/ps-expected" "$T/home-ps1" "$T/home-ps2" "$T/home-ps3" "$T/home-ps4"
    export STOWAGE_URL="$saved_url"
}

suite_big_file() {
    case_begin "a file over 2 GiB (sparse zeros with random patches)"
    runner big1
    mkdir -p "$HOME/big"
    truncate -s $((2 * 1024 * 1024 * 1024 + 5)) "$HOME/big/huge.bin"
    for off in 0 1073741824 2147483648; do
        head -c 4096 /dev/urandom | dd of="$HOME/big/huge.bin" bs=1 seek="$off" conv=notrunc status=none
    done
    local orig="$HOME/big/huge.bin" size
    size=$(stat -c %s "$orig")
    stow save --key big-1 --path '~/big'
    expect_rc 0 && ok "saved: $(grep -o 'save big-1.*' "$T/err")"
    runner big2
    stow restore --key big-1 --path '~/big'
    expect_rc 0 && ok "restored: $(grep -o 'restore hit.*' "$T/err")"
    # Byte by byte against the original (sparse: 12 kB on disk), not a sha256sum of each:
    # the same check, 5 CPU-s instead of 31 (sha256sum does 2 GiB in 15 CPU-s here).
    cmp "$orig" "$HOME/big/huge.bin" >"$T/cmp.out" 2>&1 && ok "content identical" || fail "content differs: $(cat "$T/cmp.out")"
    [ "$(stat -c %s "$HOME/big/huge.bin")" = "$size" ] || fail "size differs"
    rm -rf "$HOME/big" "$(dirname "$orig")"
}

run_suite() {
    suite_roundtrip
    suite_existing_key
    suite_lookup
    suite_corrupt_layer
    suite_hostile
    suite_hostile_links
    suite_unlisted_entry
    suite_all_or_nothing
    suite_temp_sweep
    suite_setid
    suite_delta
    suite_buildx
    if [ "${STORE_CAN_LIST:-1}" = 1 ]; then suite_lifecycle; suite_prune_during_save; fi
    if [ "${STOW_TEST_BIG:-1}" = 1 ]; then suite_big_file; fi
}
