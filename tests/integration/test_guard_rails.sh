#!/usr/bin/env bash
# Guard rails and trust boundaries (issue 13, points 4-9) through the real binary, against the
# file store and moto_server with authentication and IAM evaluation on:
#   - refs for every separator prefix of the key: a restore key given only to restore finds
#     the newest entry, a key change uploads a delta; a restore key that does not end at a
#     separator is found by listing (file, s3)
#   - no 0-file entries: save refuses (names the missing paths; --strict fails), an entry with
#     no files for the configured paths restores as a miss
#   - errors are not misses: cache-result=error, --fail-on-miss fails on it, usage errors print
#     no cache-* lines
#   - CI set and no store url: warning (error with --strict); a relative file:// URL is refused
#   - prune --max-age 0d expires every entry and reports what the grace period kept;
#     stowage delete removes one entry and its refs
#   - SIGINT/SIGTERM during a save: exit 130/143, no multipart upload, temp object, layer,
#     lease or manifest left behind
#   - moto only: the IAM policy of docs/iam-policy-ci-job.json lets a job save into its scope
#     and refuses (403, an auth error naming the manifest) a save into another scope
# moto_server missing skips only the moto part (the file part still runs).
#
# '~/c' is literal on purpose (stowage expands it); "ok" never fails, so A && ok || fail is safe.
# shellcheck disable=SC2088,SC2015
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_s3.sh"
trap _run_cleanups EXIT # lib_s3.sh replaced lib.sh's trap; run both cleanups
at_exit s3_cleanup
unset CI GITHUB_ACTIONS GITLAB_CI STOWAGE_URL STOWAGE_ENDPOINT

uploaded_bytes() {
    python3 - "$T/err" <<'PY'
import re, sys
m = re.search(r"; ([0-9.]+) (B|kB|MB|GB) uploaded", open(sys.argv[1]).read())
print(int(float(m.group(1)) * {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}[m.group(2)]) if m else -1)
PY
}

# Object names under the store's prefix, one per line (temporary objects included).
objs() {
    if [ "$KIND" = file ]; then
        (cd "$STORE_DIR" 2>/dev/null && find . -type f | sed 's|^\./||' | LC_ALL=C sort) || true
    else
        s3_list_keys "$STORE_PREFIX/" | sed "s|^$STORE_PREFIX/||"
    fi
}

# Polls (up to 60 s) until "$@" succeeds; no fixed sleeps stand in for synchronisation.
wait_until() {
    local i
    for i in $(seq 1 600); do
        "$@" && return 0
        sleep 0.1
    done
    return 1
}

make_files() { # DIR N: N files of 1 MB of random data
    mkdir -p "$1"
    local i
    for i in $(seq 1 "$2"); do head -c 1000000 /dev/urandom >"$1/f$i.bin"; done
}

case_refs() {
    case_begin "$KIND: restore keys given only to restore find the newest entry; a key change uploads a delta"
    runner "${KIND}r1"
    make_files "$HOME/c" 3
    stow save --key gm-linux-aaa --path '~/c' --strict
    expect_rc 0 || return 0
    objs | grep -qx 'refs/default/gm-' && objs | grep -qx 'refs/default/gm-linux-' &&
        ok "save without restore keys wrote refs gm- and gm-linux-" || fail "refs: $(objs | grep refs/)"
    runner "${KIND}r2"
    stow restore --key gm-linux-bbb --restore-key gm-linux- --path '~/c'
    expect_rc 0 && grep -qx 'cache-result=partial' "$T/out" && grep -qx 'cache-matched-key=gm-linux-aaa' "$T/out" &&
        ok "partial hit on gm-linux-aaa" || fail "restore: $(cat "$T/out" "$T/err")"
    mkdir -p "$HOME/c"
    head -c 100000 /dev/urandom >"$HOME/c/added.bin"
    stow save --key gm-linux-bbb --path '~/c' --strict
    local up
    up=$(uploaded_bytes)
    expect_rc 0 && err_has "save gm-linux-bbb: 4 files" && [ "$up" -gt 100000 ] && [ "$up" -lt 400000 ] &&
        ok "key change uploaded $up bytes for a 100 kB change (3.1 MB entry)" ||
        fail "uploaded $up: $(cat "$T/err")"

    case_begin "$KIND: a restore key that does not end at a separator is found by listing"
    runner "${KIND}r3"
    stow restore --key gm-linux-ccc --restore-key gm-lin --path '~/c'
    expect_rc 0 && grep -qx 'cache-result=partial' "$T/out" && grep -qx 'cache-matched-key=gm-linux-bbb' "$T/out" &&
        [ -f "$HOME/c/added.bin" ] && ok "gm-lin matched the newest entry gm-linux-bbb" ||
        fail "restore: $(cat "$T/out" "$T/err")"
    stow restore --key gm-linux-ccc --restore-key gm-nothing --path '~/c'
    expect_rc 0 && grep -qx 'cache-result=miss' "$T/out" && ok "an unmatched prefix is a miss" ||
        fail "$(cat "$T/out" "$T/err")"
}

case_empty() {
    case_begin "$KIND: saving paths that do not exist stores nothing"
    runner "${KIND}e1"
    stow save --key ge-1 --path '~/missing-a' --path '~/missing-b'
    expect_rc 0 && err_has "not saving ge-1: no files to save; 2 of 2 paths do not exist: ~/missing-a, ~/missing-b" &&
        ! objs | grep -q 'manifests/default/ge-1.json' && ok "refused, naming both paths" ||
        fail "$(cat "$T/err"); objects: $(objs | grep manifests/)"
    mkdir -p "$HOME/only-dirs/sub"
    stow save --key ge-1 --path '~/only-dirs' --strict
    expect_rc 1 && err_has "no files to save" && ! objs | grep -q 'manifests/default/ge-1.json' &&
        ok "--strict: an empty directory tree fails the save" || fail "rc=$RC $(cat "$T/err")"
    stow restore --key ge-1 --path '~/missing-a'
    expect_rc 0 && grep -qx 'cache-hit=false' "$T/out" && grep -qx 'cache-result=miss' "$T/out" &&
        ok "the next restore is a miss" || fail "$(cat "$T/out")"

    case_begin "$KIND: an entry with no files for the configured paths is not a hit"
    make_files "$HOME/c" 1
    stow save --key ge-2 --path '~/c' --strict
    expect_rc 0 || return 0
    runner "${KIND}e2"
    stow restore --key ge-2 --path '~/d' --fail-on-miss
    expect_rc 3 && grep -qx 'cache-hit=false' "$T/out" && grep -qx 'cache-result=miss' "$T/out" &&
        err_has "holds no files for the configured paths" && ok "cache-hit=false, and --fail-on-miss fails" ||
        fail "rc=$RC $(cat "$T/out" "$T/err")"
}

case_errors() {
    case_begin "$KIND: usage errors print no cache-* lines; lookup errors are cache-result=error"
    runner "${KIND}x1"
    stow restore --url 'foo://x' --key gx-1 --path '~/c'
    expect_rc 2 && ! grep -q '^cache-' "$T/out" && ok "bad URL scheme: exit 2, no outputs" ||
        fail "rc=$RC out: $(cat "$T/out")"
    stow restore --url 'http://127.0.0.1:1/x' --key gx-1 --path '~/c' --retries 0
    expect_rc 0 && grep -qx 'cache-result=error' "$T/out" && grep -qx 'cache-hit=false' "$T/out" &&
        ok "unreachable store: cache-result=error" || fail "rc=$RC $(cat "$T/out")"
    stow restore --url 'http://127.0.0.1:1/x' --key gx-1 --path '~/c' --retries 0 --fail-on-miss
    expect_rc 1 && grep -qx 'cache-result=error' "$T/out" && err_has "fail-on-miss" &&
        ok "--fail-on-miss fails on a lookup error" || fail "rc=$RC $(cat "$T/out" "$T/err")"
    if [ "$KIND" = s3 ]; then
        AWS_SECRET_ACCESS_KEY=wrong stow restore --key gx-1 --path '~/c' --fail-on-miss
        expect_rc 1 && grep -qx 'cache-result=error' "$T/out" && ok "refused credentials: cache-result=error, exit 1" ||
            fail "rc=$RC $(cat "$T/out" "$T/err")"
    fi
}

case_prune_delete() {
    case_begin "$KIND: stowage delete removes one entry and its refs"
    runner "${KIND}d1"
    make_files "$HOME/c" 1
    stow save --key gd-x-1 --scope s1 --path '~/c' --strict
    expect_rc 0 || return 0
    stow save --key gd-x-2 --scope s2 --path '~/c' --strict
    stow delete gd-x-1 --scope s1
    expect_rc 0 && out_has "deleted entry manifests/s1/gd-x-1.json" && out_has "deleted ref refs/s1/gd-x-" &&
        ! objs | grep -q '^manifests/s1/' && ! objs | grep -q '^refs/s1/' &&
        objs | grep -qx 'manifests/s2/gd-x-2.json' && objs | grep -q '^layers/' &&
        ok "manifest and refs of s1 gone; s2 and the layers stay" || fail "rc=$RC $(cat "$T/out" "$T/err"); $(objs)"
    stow delete gd-x-1 --scope s1
    expect_rc 3 && err_has "no entry gd-x-1 in scope s1" && ok "deleting it again: exit 3" || fail "rc=$RC $(cat "$T/err")"

    case_begin "$KIND: prune --max-age 0d expires every entry and reports what the grace period keeps"
    stow prune --max-age 0d
    expect_rc 0 && out_has "deleted entry manifests/s2/gd-x-2.json" &&
        err_has "prune kept [1-9][0-9]* unreferenced layers (.*) younger than the grace period" &&
        objs | grep -q '^layers/' && ok "entries deleted; their layers kept back, and said so" ||
        fail "rc=$RC $(cat "$T/out" "$T/err")"
    stow prune --grace 0
    expect_rc 0 && ! objs | grep -q '^layers/' && ok "--grace 0 then removes it" || fail "$(objs)"
}

case_signal() { # SIGNAL EXPECTED_RC
    case_begin "$KIND: $1 during a save aborts the upload and leaves nothing behind"
    runner "${KIND}s1"
    mkdir -p "$HOME/c"
    head -c 60000000 /dev/urandom >"$HOME/c/big.bin"
    local before pid rc=0
    before=$(objs | wc -l)
    # zstd level 19 on one thread packs slowly, so the save is still uploading when signalled.
    # A script's background job inherits SIGINT ignored (and stowage keeps an ignored signal
    # ignored): start it with the default disposition, as a CI runner's job step has.
    python3 -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])' \
        "$STOWAGE_BIN" save --key gs-1 --path '~/c' --compression-level 19 --threads 1 -v >"$T/out" 2>"$T/err" &
    pid=$!
    if [ "$KIND" = file ]; then
        wait_until sh -c "ls -a '$STORE_DIR/layers' 2>/dev/null | grep -q '\.tmp$'" ||
            fail "no temporary layer object appeared"
    else
        wait_until sh -c "grep -q 'multipart upload started' '$T/err'" ||
            fail "no multipart upload started: $(tail -3 "$T/err")"
        [ "$(mpu_count)" -ge 1 ] && ok "a multipart upload is in progress" || fail "no multipart upload listed"
    fi
    kill "-$1" "$pid"
    wait "$pid" || rc=$?
    [ "$rc" = "$2" ] && err_has "save interrupted by SIG$1" && ok "exit $rc" || fail "rc=$rc $(tail -5 "$T/err")"
    local left
    left=$(objs | grep -E '^(layers|leases|manifests)/|\.tmp$' || true)
    [ -z "$left" ] && [ "$(objs | wc -l)" = "$before" ] && ok "no layer, lease, manifest or temporary object left" ||
        fail "left behind: $left"
    if [ "$KIND" = s3 ]; then
        [ "$(mpu_count)" = 0 ] && ok "no multipart upload left (ListMultipartUploads)" ||
            fail "multipart uploads left: $(s3_request GET "/$S3_BUCKET?uploads=")"
    fi
}

mpu_count() { # open multipart uploads in the bucket
    s3_request GET "/$S3_BUCKET?uploads=" | python3 -c '
import sys, xml.etree.ElementTree as ET
root = ET.fromstring(sys.stdin.buffer.read())
ns = root.tag[:root.tag.index("}") + 1] if root.tag.startswith("{") else ""
print(len(root.findall(ns + "Upload")))'
}

# ---- the file store ----
KIND="file"
STORE_DIR="$T/store"
export STOWAGE_URL="file://$STORE_DIR"
case_refs
case_empty
case_errors
case_prune_delete
case_signal TERM 143

case_begin "file: CI set and no store url"
runner ci1
unset STOWAGE_URL
CI=true stow restore --key gc-1 --path '~/c'
expect_rc 0 && err_has "no store configured (CI is set" && err_has "every run misses" &&
    ok "warns that the default store is on the runner's disk" || fail "rc=$RC $(cat "$T/err")"
CI=true stow restore --key gc-1 --path '~/c' --strict
expect_rc 2 && ! grep -q '^cache-' "$T/out" && ok "--strict: exit 2, no outputs" || fail "rc=$RC $(cat "$T/out" "$T/err")"
CI=false stow restore --key gc-1 --path '~/c'
expect_rc 0 && ! err_has "no store configured" && ok "CI=false: no warning" || fail "$(cat "$T/err")"
CI=true stow restore --url "file://$T/ci-store" --key gc-1 --path '~/c'
expect_rc 0 && ! err_has "no store configured" && ok "CI with a url: no warning" || fail "$(cat "$T/err")"

case_begin "file: a relative file:// URL is refused with its absolute form"
cd "$T"
stow restore --url 'file://rel/store' --key gc-1 --path '~/c'
cd - >/dev/null
expect_rc 2 && err_has "file://$T/rel/store" && ! grep -q '^cache-' "$T/out" &&
    ok "refused, showing file://$T/rel/store" || fail "rc=$RC $(cat "$T/err")"

# ---- moto with authentication and IAM evaluation on ----
IAM_BUCKET=stowage-guard IAM_PREFIX=guard-iam IAM_SCOPE=feature
moto_setup_scoped_user() { # three IAM calls: the user of docs/iam-policy-ci-job.json
    local policy body
    policy=$(sed -e "s|BUCKET|$IAM_BUCKET|g" -e "s|PREFIX|$IAM_PREFIX|g" -e "s|SCOPE|$IAM_SCOPE|g" \
        "$STOW_TEST_SRC/docs/iam-policy-ci-job.json" | python3 -c '
import json, sys
d = json.load(sys.stdin)
for s in d["Statement"]:
    s.pop("Condition", None)  # moto does not evaluate conditions on S3 requests (docs/SECURITY.md)
print(json.dumps(d))')
    s3_moto_iam --data-urlencode "Action=CreateUser" --data-urlencode "UserName=ci-feature" >/dev/null || return 1
    s3_moto_iam --data-urlencode "Action=PutUserPolicy" --data-urlencode "UserName=ci-feature" \
        --data-urlencode "PolicyName=stowage-ci-job" --data-urlencode "PolicyDocument=$policy" >/dev/null || return 1
    body=$(s3_moto_iam --data-urlencode "Action=CreateAccessKey" --data-urlencode "UserName=ci-feature") || return 1
    read -r IAM_AK IAM_SK < <(printf '%s' "$body" | python3 -c '
import sys, xml.etree.ElementTree as ET
root = ET.fromstring(sys.stdin.buffer.read())
ns = root.tag[:root.tag.index("}") + 1] if root.tag.startswith("{") else ""
print(root.find(".//" + ns + "AccessKeyId").text, root.find(".//" + ns + "SecretAccessKey").text)')
    [ -n "$IAM_AK" ] && [ -n "$IAM_SK" ]
}
rc=0
S3_MOTO_SETUP=moto_setup_scoped_user S3_MOTO_SETUP_CALLS=3 s3_start_moto "$IAM_BUCKET" || rc=$?
if [ "$rc" = 77 ]; then
    echo "moto_server is not installed: the moto cases are skipped"
    finish
    exit 0
fi
[ "$rc" = 0 ] || { echo "FAIL: moto_server did not start" >&2; exit 1; }

KIND="s3"
STORE_PREFIX=guard
export STOWAGE_ENDPOINT="$S3_ENDPOINT" STOWAGE_URL="s3://$S3_BUCKET/$STORE_PREFIX"
case_refs
case_empty
case_errors
case_prune_delete
case_signal INT 130

case_begin "moto IAM: the ci-job policy lets a job write its own scope only"
runner iam1
make_files "$HOME/c" 2
export STOWAGE_URL="s3://$IAM_BUCKET/$IAM_PREFIX"
AWS_ACCESS_KEY_ID=$IAM_AK AWS_SECRET_ACCESS_KEY=$IAM_SK stow save --scope feature --key gi-1 --path '~/c' --strict
expect_rc 0 && [ -n "$(s3_list_keys "$IAM_PREFIX/manifests/feature/")" ] && ok "save into its scope works" ||
    fail "rc=$RC $(cat "$T/err")"
AWS_ACCESS_KEY_ID=$IAM_AK AWS_SECRET_ACCESS_KEY=$IAM_SK stow save --scope main --key gi-1 --path '~/c' --strict
expect_rc 1 && err_has "manifests/main/gi-1.json" && grep -qi "access denied\|403" "$T/err" &&
    [ -z "$(s3_list_keys "$IAM_PREFIX/manifests/main/")" ] && [ -z "$(s3_list_keys "$IAM_PREFIX/refs/main/")" ] &&
    ok "save into main refused: $(grep -i 'access denied' "$T/err" | head -1 | cut -c1-240)" || fail "rc=$RC $(cat "$T/err")"
AWS_ACCESS_KEY_ID=$IAM_AK AWS_SECRET_ACCESS_KEY=$IAM_SK stow save --scope main --key gi-1 --path '~/c'
expect_rc 0 && err_has "save failed, continuing without the cache" && grep -qi "access denied\|403" "$T/err" &&
    ok "without --strict: a warning naming the auth error (fail-open), not a miss" || fail "rc=$RC $(cat "$T/err")"
runner iam2
AWS_ACCESS_KEY_ID=$IAM_AK AWS_SECRET_ACCESS_KEY=$IAM_SK stow restore --scope feature --key gi-1 --path '~/c' --strict
expect_rc 0 && grep -qx 'cache-hit=true' "$T/out" && ok "the job restores its entry" || fail "$(cat "$T/out" "$T/err")"
AWS_ACCESS_KEY_ID=$IAM_AK AWS_SECRET_ACCESS_KEY=$IAM_SK stow delete gi-1 --scope main --url "s3://$IAM_BUCKET/$IAM_PREFIX"
expect_rc 3 && ok "nothing to delete in main" || fail "rc=$RC $(cat "$T/err")"

finish
