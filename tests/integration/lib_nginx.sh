# shellcheck shell=bash disable=SC2034 # variables set here are used by the scripts that source this file
# Shell functions that run a throw-away nginx WebDAV server (Debian's nginx with
# http_dav_module) on 127.0.0.1 for the HTTP backend tests. Source this file, then:
#
#   nginx_start DIR      config, data and logs under DIR (a fresh temp dir); sets
#                        NGINX_PORT, NGINX_URL, NGINX_ROOT, NGINX_USER, NGINX_PASS, NGINX_TOKEN,
#                        and for the same tree over TLS (HTTP/2 enabled, self-signed
#                        certificate for 127.0.0.1): NGINX_TLS_URL, NGINX_CA
#   proxy_start DIR [ARG...]  the fault-injecting proxy (flaky_proxy.py, given ARGs such as
#                        --all MODE --match SUBSTR) in front of nginx; sets PROXY_PORT,
#                        PROXY_URL, PROXY_LOG
#   servers_stop         stops both
#
# nginx_start installs an EXIT trap that stops both servers and removes DIR (unless
# STOW_TEST_KEEP=1), so a sourcing script must not replace the EXIT trap.
#
# Locations: /anon/ (no auth), /basic/ (basic auth, user from `openssl passwd -apr1`),
# /bearer/ ("Authorization: Bearer $NGINX_TOKEN" or 401). All accept PUT and DELETE
# (dav_methods, create_full_put_path on, client_max_body_size 0).
# A missing nginx is a hard failure, never a skip.

NGINX_PID=
PROXY_PID=
NGINX_DIR=

_lib_nginx_die() {
    echo "lib_nginx: FATAL: $*" >&2
    exit 1
}

_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Waits until 127.0.0.1:$1 accepts connections (pid $2 must stay alive); 0 ok, 1 no.
_wait_port() {
    local port=$1 pid=$2 i
    for i in $(seq 1 100); do
        if ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

_lib_nginx_exit() {
    servers_stop
    if [ -n "$NGINX_DIR" ] && [ -d "$NGINX_DIR" ]; then
        if [ "${STOW_TEST_KEEP:-0}" = 1 ]; then
            echo "lib_nginx: kept $NGINX_DIR" >&2
        else
            rm -rf "$NGINX_DIR"
        fi
    fi
}

servers_stop() {
    if [ -n "$PROXY_PID" ]; then
        kill "$PROXY_PID" 2>/dev/null
        wait "$PROXY_PID" 2>/dev/null
        PROXY_PID=
    fi
    if [ -n "$NGINX_PID" ]; then
        kill -QUIT "$NGINX_PID" 2>/dev/null
        local i
        for i in $(seq 1 50); do
            kill -0 "$NGINX_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$NGINX_PID" 2>/dev/null
        wait "$NGINX_PID" 2>/dev/null
        NGINX_PID=
    fi
}

nginx_start() {
    local dir=$1
    NGINX_DIR=$dir
    trap _lib_nginx_exit EXIT
    local nginx_bin=${NGINX:-}
    if [ -z "$nginx_bin" ]; then
        nginx_bin=$(command -v nginx || true)
        [ -n "$nginx_bin" ] || nginx_bin=/usr/sbin/nginx
    fi
    [ -x "$nginx_bin" ] || _lib_nginx_die "nginx is not installed (apt-get install nginx); the HTTP backend tests need it"
    "$nginx_bin" -V 2>&1 | grep -q -- --with-http_dav_module ||
        _lib_nginx_die "$nginx_bin was built without http_dav_module"
    command -v openssl >/dev/null || _lib_nginx_die "openssl is needed to make the htpasswd file"
    command -v python3 >/dev/null || _lib_nginx_die "python3 is needed to pick a free port"

    NGINX_ROOT=$dir/www
    NGINX_USER=stowtest
    NGINX_PASS="p@ss:w/rd%$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
    NGINX_TOKEN="tok$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
    mkdir -p "$dir/www/anon" "$dir/www/basic" "$dir/www/bearer" "$dir/tmp" "$dir/logs" || return 1
    printf '%s:%s\n' "$NGINX_USER" "$(openssl passwd -apr1 "$NGINX_PASS")" >"$dir/htpasswd" || return 1
    NGINX_CA=$dir/tls-cert.pem
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=127.0.0.1" \
        -addext "subjectAltName=IP:127.0.0.1" -keyout "$dir/tls-key.pem" -out "$NGINX_CA" \
        2>"$dir/logs/openssl.err" || _lib_nginx_die "openssl could not make a test certificate"
    cat >"$dir/locations.conf" <<CONF
        root $dir/www;
        client_max_body_size 0;
        dav_methods PUT DELETE;
        create_full_put_path on;
        dav_access user:rw group:r all:r;
        location /anon/ {
        }
        location /basic/ {
            auth_basic "stowage test";
            auth_basic_user_file $dir/htpasswd;
        }
        location /bearer/ {
            if (\$http_authorization != "Bearer $NGINX_TOKEN") {
                return 401;
            }
        }
CONF

    local attempt
    for attempt in 1 2 3 4 5; do
        NGINX_PORT=$(_free_port)
        NGINX_TLS_PORT=$(_free_port)
        cat >"$dir/nginx.conf" <<CONF
user $(id -un) $(id -gn);
daemon off;
worker_processes 2;
pid $dir/nginx.pid;
error_log $dir/logs/error.log info;
events { worker_connections 512; }
http {
    access_log $dir/logs/access.log;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    default_type application/octet-stream;
    sendfile on;
    keepalive_requests 10000;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        include $dir/locations.conf;
    }
    server {
        listen 127.0.0.1:$NGINX_TLS_PORT ssl http2;
        ssl_certificate $dir/tls-cert.pem;
        ssl_certificate_key $dir/tls-key.pem;
        include $dir/locations.conf;
    }
}
CONF
        "$nginx_bin" -t -q -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log" ||
            _lib_nginx_die "nginx rejected the test config $dir/nginx.conf"
        "$nginx_bin" -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log" &
        NGINX_PID=$!
        if _wait_port "$NGINX_PORT" "$NGINX_PID" && _wait_port "$NGINX_TLS_PORT" "$NGINX_PID"; then
            NGINX_URL=http://127.0.0.1:$NGINX_PORT
            NGINX_TLS_URL=https://127.0.0.1:$NGINX_TLS_PORT
            return 0
        fi
        servers_stop
        echo "lib_nginx: nginx did not come up on port $NGINX_PORT (attempt $attempt):" >&2
        tail -n 5 "$dir/logs/error.log" >&2
    done
    _lib_nginx_die "could not start nginx; see $dir/logs/error.log"
}

proxy_start() {
    local dir=$1
    shift
    local here
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    PROXY_LOG=$dir/logs/proxy.log
    : >"$PROXY_LOG"
    local attempt
    for attempt in 1 2 3 4 5; do
        PROXY_PORT=$(_free_port)
        python3 "$here/flaky_proxy.py" --port "$PROXY_PORT" --upstream "127.0.0.1:$NGINX_PORT" \
            --log "$PROXY_LOG" "$@" 2>>"$dir/logs/proxy.err" &
        PROXY_PID=$!
        if _wait_port "$PROXY_PORT" "$PROXY_PID"; then
            PROXY_URL=http://127.0.0.1:$PROXY_PORT
            return 0
        fi
        kill "$PROXY_PID" 2>/dev/null
        wait "$PROXY_PID" 2>/dev/null
        PROXY_PID=
    done
    _lib_nginx_die "could not start the test proxy; see $dir/logs/proxy.err"
}
