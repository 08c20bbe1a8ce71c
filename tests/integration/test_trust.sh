#!/usr/bin/env bash
# Trust boundaries (docs/TRUST.md) through the real binary, on the file store and on moto with
# authentication on: read-only mode writes nothing; scopes derived from ref names are escaped,
# not folded; signed entries (HMAC-SHA256 and Ed25519 verify-only keys) restore, and a tampered
# manifest, a swapped layer, an unsigned entry, a wrong key and a ref pointing at an unsigned
# entry are refused (a miss with a warning, an error with --strict).
# '~/c' is literal on purpose (stowage expands it).
# shellcheck disable=SC2088,SC2015,SC2016
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_s3.sh"
trap _run_cleanups EXIT # lib_s3.sh replaced lib.sh's trap; run both cleanups
at_exit s3_cleanup
. "$(dirname "$0")/s3_cases.sh"
need_openssl() { command -v openssl >/dev/null 2>&1; }
export STOWAGE_CONFIG=/dev/null
unset STOWAGE_SIGNING_KEY STOWAGE_READ_ONLY STOWAGE_SAVE STOWAGE_SCOPE STOWAGE_FALLBACK_SCOPES
KEY1=0123456789abcdef-trust-secret
KEY2=another-secret-of-enough-bytes

# Store access for the checks, per backend: listing, get and put of one object.
file_list() { (cd "$STORE" && find . -type f ! -name '.*' | sed 's|^\./||' | LC_ALL=C sort); }
file_get() { cp "$STORE/$1" "$2"; }
file_put() { mkdir -p "$(dirname "$STORE/$1")" && cp "$2" "$STORE/$1"; }
s3_list() { s3_list_keys "$S3_STORE_PREFIX/" | sed "s|^$S3_STORE_PREFIX/||" | LC_ALL=C sort; }
s3_get() { store_get "$1" "$2"; }
s3_put() { store_put "$1" "$2"; }

fill() { mkdir -p "$HOME/c" && printf '%s\n' "$1" >"$HOME/c/f"; }

run_cases() { # BACKEND: file or s3
    local B=$1 before after m

    case_begin "$B: read-only save writes nothing, exits 0, says why"
    runner "$B-ro"
    fill one
    stow save --key ro-1 --path '~/c'
    expect_rc 0
    before=$("${B}_list")
    fill two
    for how in flag env-ro env-save file; do
        case $how in
        flag) stow save --key ro-2 --path '~/c' --read-only ;;
        env-ro) STOWAGE_READ_ONLY=true stow save --key ro-2 --path '~/c' ;;
        env-save) STOWAGE_SAVE=false stow save --key ro-2 --path '~/c' ;;
        file)
            printf '[cache]\nsave = false\n' >"$T/ro.ini"
            stow save --config "$T/ro.ini" --key ro-2 --path '~/c'
            ;;
        esac
        expect_rc 0 && err_has "read-only: not saving" && ok "$how: logged" || fail "$how: $(cat "$T/err")"
    done
    STOWAGE_READ_ONLY=true stow run --key ro-1 --path '~/c' -- sh -c 'echo three >"$HOME/c/f"'
    expect_rc 0 && err_has "read-only: not saving" && err_has "restore hit" && ok "run: restored, did not save" ||
        fail "run: $(cat "$T/err")"
    after=$("${B}_list")
    [ "$before" = "$after" ] && ok "store listing unchanged (no entry, ref, layer or access marker)" ||
        fail "store changed: $(diff <(echo "$before") <(echo "$after"))"
    stow prune --read-only --max-age 0
    expect_rc 1 && err_has "prune refused" && ok "prune refuses" || fail "prune: $RC $(cat "$T/err")"
    [ "$before" = "$("${B}_list")" ] || fail "prune changed the store"

    case_begin "$B: scopes from ref names are escaped, not folded"
    runner "$B-scope"
    fill slash
    REF=feature/x stow save --key sc-1 --path '~/c' --scope '{ref:REF}'
    expect_rc 0
    fill dash
    REF=feature-x stow save --key sc-1 --path '~/c' --scope '{ref:REF}'
    expect_rc 0
    "${B}_list" | grep -qx 'manifests/feature_2fx/sc-1.json' && "${B}_list" | grep -qx 'manifests/feature-x/sc-1.json' &&
        ok "feature/x -> feature_2fx, feature-x -> feature-x" || fail "$("${B}_list" | grep manifests/)"
    runner "$B-scope2"
    REF=feature/x stow restore --key sc-1 --path '~/c' --scope '{ref:REF}'
    [ "$(cat "$HOME/c/f")" = slash ] && ok "feature/x restores its own entry" || fail "got $(cat "$HOME/c/f")"
    runner "$B-scope3"
    REF=pr-branch BASE=feature/x stow restore --key sc-1 --path '~/c' --scope '{ref:REF}' \
        --fallback-scope '{ref:NOT_SET}' --fallback-scope '{ref:BASE}'
    out_has "cache-result=hit" && [ "$(cat "$HOME/c/f")" = slash ] && ok "fallback to the escaped base ref" ||
        fail "$(cat "$T/out" "$T/err")"

    case_begin "$B: signed entries (HMAC-SHA256)"
    runner "$B-sign"
    fill signed-A # the same size as signed-B below, for the swapped layer
    STOWAGE_SIGNING_KEY=$KEY1 stow save --key sg-1 --restore-key sg- --path '~/c'
    expect_rc 0
    m="manifests/default/sg-1.json"
    "${B}_get" "$m" "$T/m.json"
    tail -n 1 "$T/m.json" | grep -q '^stowage-signature hmac-sha256 [0-9a-f]\{64\}$' && ok "manifest carries the signature" ||
        fail "no signature line: $(tail -c 200 "$T/m.json")"
    runner "$B-sign2"
    STOWAGE_SIGNING_KEY=$KEY1 stow restore --key sg-1 --path '~/c' --strict
    expect_rc 0 && out_has "cache-result=hit" && [ "$(cat "$HOME/c/f")" = signed-A ] && ok "signed entry restores" ||
        fail "$(cat "$T/out" "$T/err")"
    runner "$B-sign3"
    STOWAGE_SIGNING_KEY=$KEY1 stow restore --key sg-2 --restore-key sg- --path '~/c' --strict
    out_has "cache-result=partial" && ok "restore key through a ref to a signed entry" || fail "$(cat "$T/out" "$T/err")"

    case_begin "$B: wrong key refused"
    runner "$B-wrong"
    STOWAGE_SIGNING_KEY=$KEY2 stow restore --key sg-1 --path '~/c'
    expect_rc 0 && out_has "cache-result=miss" && err_has "sg-1.json refused: the HMAC-SHA256 signature does not match" &&
        [ ! -e "$HOME/c/f" ] && ok "miss, with a warning naming the entry" || fail "$(cat "$T/out" "$T/err")"
    STOWAGE_SIGNING_KEY=$KEY2 stow restore --key sg-1 --path '~/c' --strict
    expect_rc 1 && out_has "cache-result=error" && ok "--strict: error" || fail "$(cat "$T/out" "$T/err")"

    case_begin "$B: tampered manifest refused"
    runner "$B-tamper"
    # change one file's size in the index (written back as a version 1 manifest, which
    # stowage still reads), keep the signature line
    python3 - "$T/m.json" "$T/m2.json" "$T/body" <<'PY'
import json, sys
import manifest_json
data = open(sys.argv[1], "rb").read()
cut = data.rindex(b"\n", 0, len(data) - 1)
open(sys.argv[3], "wb").write(data[:cut])
m = manifest_json.load(sys.argv[3])
m["files"][0]["s"] += 1
open(sys.argv[2], "wb").write(json.dumps(m).encode() + data[cut:])
PY
    cmp -s "$T/m.json" "$T/m2.json" && fail "the tamper script changed nothing"
    "${B}_put" "$m" "$T/m2.json"
    STOWAGE_SIGNING_KEY=$KEY1 stow restore --key sg-1 --path '~/c'
    expect_rc 0 && out_has "cache-result=miss" && err_has "refused: the HMAC-SHA256 signature does not match" &&
        ok "tampered index: miss" || fail "$(cat "$T/out" "$T/err")"
    "${B}_put" "$m" "$T/m.json"

    case_begin "$B: unsigned entry with a key set refused; a ref pointing at it too"
    runner "$B-unsigned"
    fill signed-B
    stow save --key us-1 --restore-key us- --path '~/c'
    expect_rc 0
    runner "$B-unsigned2"
    STOWAGE_SIGNING_KEY=$KEY1 stow restore --key us-1 --path '~/c'
    expect_rc 0 && out_has "cache-result=miss" && err_has "us-1.json refused: the entry is not signed" &&
        ok "unsigned: miss with a warning" || fail "$(cat "$T/out" "$T/err")"
    STOWAGE_SIGNING_KEY=$KEY1 stow restore --key us-1 --path '~/c' --strict
    expect_rc 1 && out_has "cache-result=error" && ok "unsigned, --strict: error" || fail "$(cat "$T/out" "$T/err")"
    # a ref rewritten to point at the unsigned entry, from a signed prefix
    printf '{"key":"sg-evil","created":1}' >"$T/ref"
    cp "$T/m.json" "$T/dummy"
    "${B}_get" "manifests/default/us-1.json" "$T/us.json"
    python3 -c 'import sys,json,manifest_json; d=manifest_json.load(sys.argv[1]); d["key"]="sg-evil"; open(sys.argv[2],"w").write(json.dumps(d))' \
        "$T/us.json" "$T/evil.json"
    "${B}_put" "manifests/default/sg-evil.json" "$T/evil.json"
    "${B}_put" "refs/default/sg-" "$T/ref"
    STOWAGE_SIGNING_KEY=$KEY1 stow restore --key sg-9 --restore-key sg- --path '~/c'
    expect_rc 0 && out_has "cache-result=miss" && err_has "sg-evil.json refused: the entry is not signed" &&
        [ ! -e "$HOME/c/f" ] && ok "tampered ref to an unsigned entry: refused" || fail "$(cat "$T/out" "$T/err")"
    # a signed manifest copied to another key does not verify (the name is signed)
    "${B}_put" "manifests/default/sg-copy.json" "$T/m.json"
    printf '{"key":"sg-copy","created":2}' >"$T/ref"
    "${B}_put" "refs/default/sg-" "$T/ref"
    STOWAGE_SIGNING_KEY=$KEY1 stow restore --key sg-9 --restore-key sg- --path '~/c'
    out_has "cache-result=miss" && err_has "sg-copy.json" && ok "signed manifest copied to another key: refused" ||
        fail "$(cat "$T/out" "$T/err")"

    case_begin "$B: swapped layer refused by its sha256"
    runner "$B-swap"
    local layer
    layer=$(python3 -c 'import sys,manifest_json
d=open(sys.argv[1],"rb").read(); open(sys.argv[2],"wb").write(d[:d.rindex(b"\n",0,len(d)-1)])
print(manifest_json.load(sys.argv[2])["layers"][0]["id"])' "$T/m.json" "$T/body")
    "${B}_get" "manifests/default/us-1.json" "$T/us.json"
    other=$(python3 -c 'import sys,manifest_json; print(manifest_json.load(sys.argv[1])["layers"][0]["id"])' "$T/us.json")
    "${B}_get" "layers/$other.tar.zst" "$T/other.layer"
    "${B}_get" "layers/$layer.tar.zst" "$T/orig.layer"
    "${B}_put" "layers/$layer.tar.zst" "$T/other.layer"
    STOWAGE_SIGNING_KEY=$KEY1 stow restore --key sg-1 --path '~/c'
    out_has "cache-result=error" && err_has "sha256" && [ ! -e "$HOME/c/f" ] &&
        ok "the signature covers the layer's sha256: not restored" || fail "$(cat "$T/out" "$T/err")"
    "${B}_put" "layers/$layer.tar.zst" "$T/orig.layer"

    case_begin "$B: a signed save does not build on an unsigned entry"
    runner "$B-launder"
    STOWAGE_SIGNING_KEY=$KEY1 stow restore --key us-1 --path '~/c' # refused: a miss
    fill signed-C
    STOWAGE_SIGNING_KEY=$KEY1 stow save --key us-1 --path '~/c'
    expect_rc 0 && err_has "us-1.json refused: the entry is not signed; not building on it, saving in full" &&
        ok "warned, saved in full" || fail "$(cat "$T/err")"
    runner "$B-launder2"
    STOWAGE_SIGNING_KEY=$KEY1 stow restore --key us-1 --path '~/c' --strict
    expect_rc 0 && out_has "cache-result=hit" && [ "$(cat "$HOME/c/f")" = signed-C ] && ok "the re-signed entry restores" ||
        fail "$(cat "$T/out" "$T/err")"
}

if need_openssl; then
    openssl genpkey -algorithm ed25519 -out "$T/ed.pem" 2>/dev/null
    openssl pkey -in "$T/ed.pem" -pubout -out "$T/ed.pub" 2>/dev/null
    openssl genpkey -algorithm ed25519 -out "$T/ed-other.pem" 2>/dev/null
    openssl pkey -in "$T/ed-other.pem" -pubout -out "$T/ed-other.pub" 2>/dev/null
fi

ed25519_cases() { # BACKEND
    local B=$1
    case_begin "$B: Ed25519: the private key signs, the public key only verifies"
    need_openssl || { ok "openssl not installed: skipped"; return; }
    runner "$B-ed"
    fill ed
    stow save --key ed-1 --path '~/c' --signing-key-file "$T/ed.pem"
    expect_rc 0
    "${B}_get" manifests/default/ed-1.json "$T/ed.json"
    tail -n 1 "$T/ed.json" | grep -q '^stowage-signature ed25519 [0-9a-f]\{128\}$' && ok "signed with ed25519" ||
        fail "$(tail -c 200 "$T/ed.json")"
    runner "$B-ed2"
    stow restore --key ed-1 --path '~/c' --verify-key-file "$T/ed.pub" --strict
    expect_rc 0 && out_has "cache-result=hit" && ok "the public key verifies" || fail "$(cat "$T/out" "$T/err")"
    before=$("${B}_list")
    fill changed
    stow save --key ed-2 --path '~/c' --verify-key-file "$T/ed.pub"
    expect_rc 0 && err_has "verify-only key" && [ "$before" = "$("${B}_list")" ] &&
        ok "a verify-only job cannot save" || fail "$(cat "$T/err")"
    stow restore --key ed-1 --path '~/c' --verify-key-file "$T/ed-other.pub"
    out_has "cache-result=miss" && err_has "Ed25519 signature does not verify" && ok "another public key refuses" ||
        fail "$(cat "$T/out" "$T/err")"
    STOWAGE_SIGNING_KEY=$KEY1 stow restore --key ed-1 --path '~/c'
    out_has "cache-result=miss" && err_has "signed with ed25519, but the key is hmac-sha256" && ok "algorithm mismatch refused" ||
        fail "$(cat "$T/out" "$T/err")"
    stow restore --key ed-1 --path '~/c' --verify-key-file "$T/ed.pem"
    expect_rc 2 && err_has "verify_key_file" && ok "a private key as verify key: usage error" || fail "$RC $(cat "$T/err")"
}

case_begin "keys that cannot be used are usage errors"
runner keys
STOWAGE_SIGNING_KEY=short stow restore --key x --path '~/c' --url "file://$T/none"
expect_rc 2 && err_has "at least 16" && ok "short secret" || fail "$(cat "$T/err")"
printf 'x%.0s' $(seq 1 20) >"$T/hmac.key"
STOWAGE_SIGNING_KEY=$KEY1 stow restore --key x --path '~/c' --url "file://$T/none" --signing-key-file "$T/hmac.key"
expect_rc 2 && err_has "not several" && ok "two key sources" || fail "$(cat "$T/err")"

STORE="$T/store"
export STOWAGE_URL="file://$STORE"
run_cases file
ed25519_cases file

rc=0
s3_start_moto stowage-trust || rc=$?
if [ "$rc" = 77 ]; then
    echo "moto_server is not installed: S3 cases skipped"
elif [ "$rc" != 0 ]; then
    fail "moto_server did not start"
else
    s3_store_setup "trust"
    run_cases s3
    ed25519_cases s3
fi
finish
