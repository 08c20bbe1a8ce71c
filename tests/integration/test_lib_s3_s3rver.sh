#!/usr/bin/env bash
# The s3rver part of lib_s3.sh: starts, answers, stores and lists objects, stops cleanly.
# s3rver is committed test infrastructure (npm ci in tests/integration/s3rver): no skipping.
set -u
. "${STOW_TEST_SRC:?run through ctest}/tests/integration/lib_s3.sh"

fail() { echo "FAIL: $*" >&2; exit 1; }

s3_start_s3rver stowage-harness || fail "s3rver did not start"
[ "$S3_SERVER" = s3rver ] || fail "S3_SERVER=$S3_SERVER"
[ "$S3_URL" = s3://stowage-harness ] || fail "S3_URL=$S3_URL"
[ "$AWS_EC2_METADATA_DISABLED" = true ] || fail "metadata service not disabled"

work=""
s3_mktemp work
printf 'hello stowage\n' >"$work/in"
s3_put_file "dir/a%20b.txt" "$work/in" || fail "put"
s3_put_file "dir/c.txt" "$work/in" || fail "put 2"
s3_get_file "dir/a%20b.txt" "$work/out" || fail "get"
cmp -s "$work/in" "$work/out" || fail "object came back different"
keys=$(s3_list_keys dir/) || fail "list"
[ "$keys" = $'dir/a b.txt\ndir/c.txt' ] || fail "list gave: $keys"
[ -z "$(s3_list_keys nothing-here/)" ] || fail "list of an empty prefix is not empty"
[ "$(s3_status GET "/$S3_BUCKET/missing")" = 404 ] || fail "missing object is not 404"
[ "$(s3_status HEAD "/no-such-bucket")" = 404 ] || fail "missing bucket is not 404"

pid=$S3_PID endpoint=$S3_ENDPOINT dir=${S3_TMPDIRS[0]}
s3_cleanup
kill -0 "$pid" 2>/dev/null && fail "s3rver still running after s3_cleanup"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$endpoint/")" = 000 ] || fail "port still answers"
[ -d "$dir" ] && fail "temp dir $dir not removed"
echo "s3rver harness ok"
