# Runs a command with nginx (lib_nginx.sh) and the fault-injecting proxy started, both
# stopped on exit however the command ends. Used by tests/backends/test_http.c and
# test_httpc.c (which re-run themselves through it) and by test_http_big.sh.
#
#   bash tests/integration/with_nginx.sh COMMAND [ARGS...]
#
# The command sees STOW_TEST_NGINX_URL, STOW_TEST_NGINX_ROOT, STOW_TEST_PROXY_URL,
# STOW_TEST_PROXY_LOG, STOW_TEST_BASIC_USER, STOW_TEST_BASIC_PASS and STOW_TEST_TOKEN.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib_nginx.sh"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/stow-nginx.XXXXXX") || exit 1
cleanup() {
    servers_stop
    if [ "${STOW_TEST_KEEP:-0}" = 1 ]; then
        echo "with_nginx: kept $tmp" >&2
    else
        rm -rf "$tmp"
    fi
}
nginx_start "$tmp"
trap cleanup EXIT
proxy_start "$tmp"

export STOW_TEST_NGINX_URL=$NGINX_URL STOW_TEST_NGINX_ROOT=$NGINX_ROOT
export STOW_TEST_PROXY_URL=$PROXY_URL STOW_TEST_PROXY_LOG=$PROXY_LOG
export STOW_TEST_BASIC_USER=$NGINX_USER STOW_TEST_BASIC_PASS=$NGINX_PASS STOW_TEST_TOKEN=$NGINX_TOKEN
"$@"
status=$?
if [ $status -ne 0 ]; then
    echo "with_nginx: command failed with status $status; nginx error log tail:" >&2
    tail -n 20 "$tmp/logs/error.log" >&2
    if [ -s "$tmp/logs/proxy.err" ]; then
        echo "with_nginx: proxy errors:" >&2
        tail -n 20 "$tmp/logs/proxy.err" >&2
    fi
fi
exit $status
