#!/usr/bin/env bash
# The adaptive-level benchmark (docs/BENCHMARKS.md, "Adaptive compression across layers"):
# interleaved saves of DATA (e.g. `dpkg-deb -x` of a few .debs into /dev/shm/adapt-data) by
# BEFORE_BIN and AFTER_BIN, at auto and pinned levels, to the file store and through
# tests/integration/flaky_proxy.py in front of nginx at 20 MB/s and 2 MB/s; one TSV row per save.
# usage: BEFORE_BIN=... AFTER_BIN=... tests/bench/adapt_link.sh OUTFILE [ROUNDS] [DATA]
#        (STORES="file up20 up2", CFGS="before:auto after:auto after:1 after:3", EXTRA=flags)
set -u
SRC=$(cd "$(dirname "$0")/../.." && pwd)
export STOWAGE_BIN=${AFTER_BIN:?set AFTER_BIN} STOW_TEST_SRC=$SRC
export TMPDIR=${TMPDIR:-/dev/shm}
. "$SRC/tests/integration/lib.sh"
. "$SRC/tests/integration/lib_nginx.sh"
OUT=$1 ROUNDS=${2:-3} DATA=${3:-/dev/shm/adapt-data}
STORES=${STORES:-"file up20 up2"}
CFGS=${CFGS:-"before:auto after:auto after:1 after:3"}
mkdir -p "$T/srv"
nginx_start "$T/srv"
proxy_start "$T/srv"
trap 'set +e; _lib_nginx_exit; _run_cleanups' EXIT
export HOME=$T/home STOWAGE_STATE_DIR=$T/home/state
mkdir -p "$HOME"
ln -s "$DATA" "$HOME/c"
n=0
for r in $(seq "$ROUNDS"); do
  for st in $STORES; do
    for cfg in $CFGS; do
        name=${cfg%%:*} lv=${cfg#*:}
        case $name in before) bin=${BEFORE_BIN:?set BEFORE_BIN} ;; *) bin=$AFTER_BIN ;; esac
        n=$((n + 1))
        rm -rf "$STOWAGE_STATE_DIR"
        case $st in
          file) url="file://$T/fstore/$n"; dir="$T/fstore/$n" ;;
          disk) url="file:///var/tmp/adapt-disk/$n"; dir="/var/tmp/adapt-disk/$n" ;;
          up20) url="$PROXY_URL/slowup/20000000/anon/s$n"; dir="$T/srv/www/anon/s$n" ;;
          up2) url="$PROXY_URL/slowup/2000000/anon/s$n"; dir="$T/srv/www/anon/s$n" ;;
        esac
        lvarg=(); [ "$lv" = auto ] || lvarg=(--compression-level "$lv")
        sync
        # shellcheck disable=SC2086 # EXTRA is a list of flags
        /usr/bin/time -f '%e %U %S %M' -o "$T/time" "$bin" save --key k$n --path "~/c/" --url "$url" "${lvarg[@]}" ${EXTRA:-} --strict -v >"$T/out" 2>"$T/err"
        rc=$?
        read -r wall us sy rss <"$T/time"
        bytes=$(find "$dir" -type f -path '*/layers/*' -printf '%s\n' | awk '{s+=$1} END {print s+0}')
        nl=$(find "$dir" -type f -path '*/layers/*' | wc -l)
        lvl=$(sed -n 's/.*zstd level auto \([0-9]*\.\.[0-9]*\): used \([0-9]*\.\.[0-9]*\), mean \([0-9.]*\), final \([0-9]*\).*/used=\2 mean=\3 final=\4/p' "$T/err" | tail -1)
        ch=$(grep -c 'zstd level [0-9]* -> ' "$T/err" || true)
        cp "$T/err" "$OUT.err.$name.$st.$lv.$r"
        printf '%s\t%s\t%s\t%s\trc=%s\t%s\t%s\t%s\t%s\t%s\tlayers=%s\tchanges=%s\t%s\n' "$r" "$st" "$lv" "$name" "$rc" "$wall" "$(awk -v u="$us" -v s="$sy" 'BEGIN {print u + s}')" "$rss" "$bytes" "$(uptime | sed 's/.*average: //;s/,.*//')" "$nl" "$ch" "$lvl" | tee -a "$OUT"
        rm -rf "$dir"
    done
  done
done
