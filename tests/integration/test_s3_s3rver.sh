#!/usr/bin/env bash
# The integration suite against s3rver (npm, pinned by tests/integration/s3rver's lockfile;
# run `npm ci` there once), plus S3 cases: multipart, ranged resume, encoded keys, an
# unreachable endpoint and a missing bucket. s3rver does not check signatures: the
# authentication cases are in test_s3_moto.sh. s3rver is committed test infrastructure, so
# a server that cannot start fails the test.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_s3.sh"
trap _run_cleanups EXIT # lib_s3.sh replaced lib.sh's trap; run both cleanups
at_exit s3_cleanup
. "$(dirname "$0")/suite.sh"
. "$(dirname "$0")/s3_cases.sh"

s3_start_s3rver stowage-s3rver || { echo "FAIL: s3rver did not start" >&2; exit 1; }

# The suite runs below a prefix with a space, a '+', a '~' and a non-ASCII letter.
s3_store_setup "suite dir+ü~"
STOW_TEST_BIG=0 # the >2 GiB case runs on the file store
run_suite
s3_case_encoded_keys "$S3_STORE_PREFIX"
s3_case_multipart
s3_case_resume
s3_case_retries
s3_case_unreachable
s3_case_no_bucket
finish
