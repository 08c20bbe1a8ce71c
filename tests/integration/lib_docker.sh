# shellcheck shell=bash
# A real Docker engine for integration tests: dockerd 20.10 (Debian's docker.io) started as
# root with its own data/exec roots and socket under $T, vfs storage, no iptables, no bridge,
# stopped on exit. Builds use the built-in BuildKit (DOCKER_BUILDKIT=1) and --network none;
# base images come from local root filesystems (busybox-static) via `docker import`.
# Source lib.sh first. Tests call docker_start NAME, which exits 77 (skipped) only when the
# daemon cannot be started here.

# Debian's client talks to dockerd 20.10 and has the built-in BuildKit; /usr/local/bin/docker
# may be an unrelated newer client without buildx.
DOCKER_CLI=${DOCKER_CLI:-/usr/bin/docker}
export DOCKER_BUILDKIT=1

# docker_start NAME: starts a daemon with its own roots under $T/docker-NAME and exports
# DOCKER_HOST for it. A second call with another NAME is a second "runner" (fresh builder
# state, nothing shared with the first).
docker_start() {
    local name=$1 d="$T/docker-$1"
    if [ "$(id -u)" -ne 0 ]; then
        echo "SKIP: dockerd needs root"
        exit 77
    fi
    if ! command -v dockerd >/dev/null 2>&1 || [ ! -x "$DOCKER_CLI" ]; then
        echo "SKIP: dockerd or $DOCKER_CLI not installed (tests/install-deps.sh installs docker.io)"
        exit 77
    fi
    # The exec root holds the containerd socket path: keep it short (sun_path is 108 bytes).
    local exec_root
    exec_root=$(mktemp -d /tmp/dx.XXXXXX)
    # vfs copies the whole root filesystem for every layer: on tmpfs (when there is room) the
    # copies and their removal at the end take seconds instead of minutes on disk.
    local data="$d/data"
    if [ -d /dev/shm ] && [ "$(df -Pk /dev/shm | awk 'NR==2 {print $4}')" -gt 8388608 ]; then
        data=$(mktemp -d /dev/shm/stowage-dockerd.XXXXXX)
    fi
    mkdir -p "$d" "$data"
    dockerd --storage-driver=vfs --iptables=false --ip6tables=false --bridge=none \
        --data-root "$data" --exec-root "$exec_root" --pidfile "$d/pid" \
        -H "unix://$exec_root/s" >"$d/log" 2>&1 &
    local pid=$!
    at_exit "docker_stop $pid '$exec_root' '$data'"
    export DOCKER_HOST="unix://$exec_root/s"
    local i
    for ((i = 0; i < 300; i++)); do
        if "$DOCKER_CLI" version >/dev/null 2>&1; then
            echo "dockerd $name up (pid $pid, $DOCKER_HOST)"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "SKIP: dockerd could not start here: $(tail -3 "$d/log")"
            exit 77
        fi
        # Waiting for the daemon's socket to answer: a readiness poll, not synchronisation
        # between test steps.
        sleep 0.1
    done
    echo "SKIP: dockerd did not answer within 30 s: $(tail -3 "$d/log")"
    exit 77
}

docker_stop() {
    local pid=$1 exec_root=$2 data=$3
    kill "$pid" 2>/dev/null
    local i
    for ((i = 0; i < 200; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null
    # containerd-shim processes of this daemon, if any survived it
    umount -R "$exec_root" 2>/dev/null
    rm -rf "$exec_root"
    # vfs layers can be large (and may be on /dev/shm, outside the test's temp dir)
    rm -rf "$data" 2>/dev/null
}

# dk ARGS...: the Debian docker client against the current daemon.
dk() { "$DOCKER_CLI" "$@"; }

# docker_import_busybox TAG: a base image from busybox-static (sh, tar, cp, ...), with
# /etc/passwd for uid 1000 steps.
docker_import_busybox() {
    local tag=$1 root="$T/bbroot"
    if [ ! -d "$root" ]; then
        mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/root"
        cp /bin/busybox "$root/bin/busybox"
        local a
        for a in $(/bin/busybox --list); do
            [ "$a" = busybox ] || ln -s busybox "$root/bin/$a"
        done
        printf 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n' >"$root/etc/passwd"
        printf 'root:x:0:\nuser:x:1000:\n' >"$root/etc/group"
        chmod 1777 "$root/tmp"
    fi
    tar -C "$root" -cf - . | dk import -c 'ENV PATH=/bin' - "$tag" >/dev/null
}
