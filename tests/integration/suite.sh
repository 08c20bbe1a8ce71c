# The store-independent integration suite. A store script (test_file_store.sh,
# test_http_store.sh, test_s3_*.sh) sources lib.sh, starts its server, exports STOWAGE_URL
# (and whatever else the store needs), defines the hooks below, sources this file and calls
# run_suite. Hooks:
#   store_put NAME FILE   upload FILE as object NAME (bypassing stowage: for hostile input)
#   store_get NAME FILE   download object NAME into FILE
#   store_layers          print the object names under layers/, one per line

suite_roundtrip() {
    case_begin "round trip: nested/empty dirs, symlinks, odd names, modes, mtimes"
    runner a
    make_fixture "$HOME/cache"
    cp -a "$HOME/cache" "$T/expected"
    stow save --key rt-1 --path '~/cache'
    expect_rc 0 && err_has "save rt-1" && ok "saved"
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
    case_begin "saving an existing key uploads nothing"
    runner c
    mkdir -p "$HOME/d" && echo one >"$HOME/d/f"
    stow save --key exist-1 --path '~/d'
    expect_rc 0
    echo two >"$HOME/d/f"
    stow save --key exist-1 --path '~/d'
    expect_rc 0 && err_has "already exists" && ok "second save skipped" || fail "second save: $(cat "$T/err")"
    runner c2
    stow restore --key exist-1 --path '~/d'
    [ "$(cat "$HOME/d/f")" = one ] && ok "entry unchanged" || fail "entry was overwritten"
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
    python3 -c 'import json,sys; [print("layers/%s.tar.zst" % l["id"]) for l in json.load(open(sys.argv[1]))["layers"]]' "$T/m.json"
}

suite_hostile() {
    local sc
    for sc in absolute dotdot symlink-escape device hardlink not-in-index; do
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

suite_big_file() {
    case_begin "a file over 2 GiB (sparse zeros with random patches)"
    runner big1
    mkdir -p "$HOME/big"
    truncate -s $((2 * 1024 * 1024 * 1024 + 5)) "$HOME/big/huge.bin"
    for off in 0 1073741824 2147483648; do
        head -c 4096 /dev/urandom | dd of="$HOME/big/huge.bin" bs=1 seek="$off" conv=notrunc status=none
    done
    local sum size
    sum=$(sha256sum <"$HOME/big/huge.bin")
    size=$(stat -c %s "$HOME/big/huge.bin")
    stow save --key big-1 --path '~/big'
    expect_rc 0 && ok "saved: $(grep -o 'save big-1.*' "$T/err")"
    rm -rf "$HOME/big"
    runner big2
    stow restore --key big-1 --path '~/big'
    expect_rc 0 && ok "restored: $(grep -o 'restore hit.*' "$T/err")"
    [ "$(sha256sum <"$HOME/big/huge.bin")" = "$sum" ] && ok "content identical" || fail "content differs"
    [ "$(stat -c %s "$HOME/big/huge.bin")" = "$size" ] || fail "size differs"
    rm -rf "$HOME/big"
}

run_suite() {
    suite_roundtrip
    suite_existing_key
    suite_lookup
    suite_corrupt_layer
    suite_hostile
    if [ "${STOW_TEST_BIG:-1}" = 1 ]; then suite_big_file; fi
}
