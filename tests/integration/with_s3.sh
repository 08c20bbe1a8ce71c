# Runs a command with an S3 test server (lib_s3.sh) started, stopped on exit however the
# command ends. Used by tests/backends/test_s3.c and test_s3_moto.c, which re-run
# themselves through it.
#
#   bash tests/integration/with_s3.sh s3rver|moto COMMAND [ARGS...]
#
# The command sees what lib_s3.sh exports (S3_SERVER, S3_ENDPOINT, S3_BUCKET, AWS_*).
# Exit status: the command's; 77 when moto_server is not installed; 1 when the server
# does not start.
set -u
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib_s3.sh"
server=${1:?usage: with_s3.sh s3rver|moto COMMAND...}
shift
case $server in
s3rver) s3_start_s3rver stowage-unit || exit 1 ;;
moto)
    rc=0
    s3_start_moto stowage-unit || rc=$?
    [ "$rc" = 0 ] || exit "$([ "$rc" = 77 ] && echo 77 || echo 1)"
    ;;
*) echo "with_s3.sh: unknown server $server" >&2; exit 2 ;;
esac
"$@"
status=$?
s3_cleanup
exit "$status"
