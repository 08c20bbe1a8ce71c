#!/usr/bin/env bash
# The moto part of lib_s3.sh: moto_server with authentication on and an IAM user made
# through the IAM API. Skipped (77) only when moto_server is not installed.
set -u
. "${STOW_TEST_SRC:?run through ctest}/tests/integration/lib_s3.sh"

fail() { echo "FAIL: $*" >&2; exit 1; }

rc=0
s3_start_moto stowage-harness || rc=$?
[ "$rc" = 77 ] && exit 77
[ "$rc" = 0 ] || fail "moto did not start"
[ "$S3_SERVER" = moto ] || fail "S3_SERVER=$S3_SERVER"
[[ "$AWS_ACCESS_KEY_ID" == AKIA* ]] || fail "no IAM access key: $AWS_ACCESS_KEY_ID"

work=""
s3_mktemp work
printf 'hello moto\n' >"$work/in"
s3_put_file "dir/a%20b~c.txt" "$work/in" || fail "put"
s3_get_file "dir/a%20b~c.txt" "$work/out" || fail "get"
cmp -s "$work/in" "$work/out" || fail "object came back different"
[ "$(s3_list_keys dir/)" = "dir/a b~c.txt" ] || fail "list"
[ "$(s3_status GET "/$S3_BUCKET/missing")" = 404 ] || fail "missing object is not 404"

# authentication is enforced
out=$(AWS_SECRET_ACCESS_KEY=wrong s3_curl GET "/$S3_BUCKET/dir/a%20b~c.txt" -w '\n%{http_code}')
[[ "$out" == *SignatureDoesNotMatch*$'\n'403 ]] || fail "wrong secret: $out"
out=$(AWS_ACCESS_KEY_ID=AKIANOSUCHKEY s3_curl GET "/$S3_BUCKET/dir/a%20b~c.txt" -w '\n%{http_code}')
[[ "$out" == *InvalidAccessKeyId*$'\n'403 ]] || fail "unknown key: $out"
code=$(curl -s -o /dev/null -w '%{http_code}' "$S3_ENDPOINT/$S3_BUCKET/dir/a%20b~c.txt")
[ "$code" -ge 400 ] || fail "unsigned request got HTTP $code"

# known quirk, reported rather than asserted: correct signatures over %2F are refused
code=$(s3_status GET "/$S3_BUCKET?list-type=2&delimiter=%2F")
echo "note: moto answers a correctly signed delimiter=%2F listing with HTTP $code"

pid=$S3_PID endpoint=$S3_ENDPOINT
s3_cleanup
kill -0 "$pid" 2>/dev/null && fail "moto still running after s3_cleanup"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$endpoint/moto-api/")" = 000 ] || fail "port still answers"
echo "moto harness ok"
