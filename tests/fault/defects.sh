# shellcheck shell=bash
# Category "defects": the other issue-12 defects as black-box cases, one attempt each.
# shellcheck disable=SC2088,SC2015

put_crafted() { # GENDIR: uploads a crafted entry's objects into the current store
    local f
    while IFS= read -r f; do store_put "$f" "$1/$f"; done < <(cd "$1" && find . -type f | sed 's|^\./||')
}

# 12.3: one bad layer out of five leaves the previous tree exactly as it was.
defect_all_or_nothing() {
    local strict
    use_store file d-aon
    runner aon-s
    mkdir -p "$HOME/c"
    local i
    for i in $(seq 1 40); do head -c 100000 /dev/urandom >"$HOME/c/f$i.bin"; done
    stow save --key five --path '~/c' --layer-size 800k --strict
    expect_rc 0
    local layers n
    layers=$(layers_of five)
    n=$(echo "$layers" | grep -c .)
    store_get "$(echo "$layers" | sed -n 4p)" "$T/aon-layer"
    flip_byte "$T/aon-layer"
    store_put "$(echo "$layers" | sed -n 4p)" "$T/aon-layer"
    for strict in "" --strict; do
        att_begin defects "12.3 all-or-nothing: layer 4 of $n corrupt ${strict:-(default)}"
        [ "$n" -ge 5 ] || fail "the fixture has $n layers, not 5"
        runner aon-r
        rm -rf "$HOME/c" "$STOWAGE_STATE_DIR"
        mkdir -p "$HOME/c"
        for i in $(seq 1 40); do echo "old $i" >"$HOME/c/f$i.bin"; done
        snap "$HOME/c" "$T/aon-before.json"
        # shellcheck disable=SC2086
        stow restore --key five --path '~/c' $strict
        if [ -n "$strict" ]; then expect_rc 1; else expect_rc 0; fi
        grep -qx 'cache-hit=false' "$T/out" || fail "12.2: reports $(tr '\n' ' ' <"$T/out")"
        tree_is "$HOME/c" "$T/aon-before.json" "the previous tree"
        no_tmps "$HOME"
        att_end
    done
}

# 12.1: a chain of links that each look inside the root.
defect_symlink_chain() { # SCENARIO
    att_begin defects "12.1 $1: d/s -> .., t -> d/s/.., e -> t/outside/victim"
    use_store file "d-$1"
    runner "$1"
    local gen="$T/gen-$1"
    mkdir -p "$gen" "$HOME/outside"
    echo original >"$HOME/outside/victim"
    python3 "$FAULT_DIR/make_entry.py" "$gen" default chain '~/c' "$1"
    put_crafted "$gen"
    snap "$HOME/outside" "$T/chain-outside.json"
    stow restore --key chain --path '~/c' --strict
    [ "$RC" -ne 0 ] || fail "--strict restore of the chain exits 0"
    grep -qx 'cache-hit=true' "$T/out" && fail "the refused entry is reported as a hit"
    tree_is "$HOME/outside" "$T/chain-outside.json" "the directory outside the root"
    # No link under the root may resolve outside it.
    local esc
    esc=$(python3 - "$HOME/c" <<'PY'
import os, sys
root = os.path.realpath(sys.argv[1])
for dp, dn, fn in os.walk(sys.argv[1]):
    for n in dn + fn:
        p = os.path.join(dp, n)
        if os.path.islink(p):
            r = os.path.realpath(p)
            if r != root and not r.startswith(root + os.sep):
                print("%s -> %s resolves to %s" % (p, os.readlink(p), r))
PY
)
    [ -z "$esc" ] || fail "links escape the root: $esc"
    att_end
}

# 12.7: store-controlled names reach the log raw.
defect_log_injection() {
    local sc
    for sc in log-index log-archive; do
        att_begin defects "12.7 log injection through $sc (a name with \\n::error:: and ESC)"
        use_store file "d-$sc"
        runner "$sc"
        mkdir -p "$T/gen-$sc"
        python3 "$FAULT_DIR/make_entry.py" "$T/gen-$sc" default inj '~/c' "$sc"
        put_crafted "$T/gen-$sc"
        stow restore --key inj --path '~/c' -v
        cat "$T/out" "$T/err" >"$T/inj-all"
        grep -q 'evil' "$T/inj-all" || echo "    note: the name is not printed at all: $(head -c 300 "$T/inj-all" | cat -v)"
        grep -n '^::error::' "$T/inj-all" >"$T/inj-lines" && fail "a workflow command reached the log: $(head -c 200 "$T/inj-lines")"
        grep -q $'\x1b' "$T/inj-all" && fail "an escape sequence reached the log: $(grep -n $'\x1b' "$T/inj-all" | head -2 | cat -v)"
        att_end
    done
}

# 12.8: an endless config file.
defect_dev_zero() {
    att_begin defects "12.8 STOWAGE_CONFIG=/dev/zero finishes within 5 s with an error"
    local t0 ms
    t0=$(ms_now)
    (
        # The old code grows without bound: cap it at 2 GB. A sanitizer build cannot run under
        # ulimit -v (its shadow memory), so it gets the sanitizer's own RSS cap instead.
        if grep -q __asan_init "$STOWAGE_BIN"; then
            export ASAN_OPTIONS="hard_rss_limit_mb=2000:${ASAN_OPTIONS:-}"
        else
            ulimit -v 2000000
        fi
        STOWAGE_CONFIG=/dev/zero exec timeout -s KILL 5 "$STOWAGE_BIN" key --key k --path "$T/c"
    ) >"$T/out" 2>"$T/err"
    RC=$?
    ms=$(($(ms_now) - t0))
    if [ "$RC" -ge 128 ]; then
        fail "killed or crashed (exit $RC) after $ms ms: $(head -c 300 "$T/err")"
    elif [ "$RC" -eq 124 ]; then
        fail "still running after 5 s"
    elif [ "$RC" -eq 0 ]; then
        fail "exit 0 on /dev/zero as a config file"
    elif grep -q 'Sanitizer\|rss limit' "$T/err"; then
        fail "stopped by the sanitizer, not by stowage: $(head -c 300 "$T/err")"
    elif [ ! -s "$T/err" ]; then
        fail "exit $RC without a message"
    fi
    [ "$RC" -gt 0 ] && [ "$RC" -lt 124 ] && ok "rc $RC in $ms ms: $(head -c 200 "$T/err")"
    att_end
}

# 12.9: setuid/setgid bits from the store.
defect_setuid() {
    att_begin defects "12.9 setuid and setgid bits are stripped on restore"
    use_store file d-suid
    runner suid-s
    mkdir -p "$HOME/c/sg"
    printf '#!/bin/sh\n' >"$HOME/c/su" && chmod 4755 "$HOME/c/su"
    printf '#!/bin/sh\n' >"$HOME/c/sgf" && chmod 2755 "$HOME/c/sgf"
    chmod 2775 "$HOME/c/sg"
    stow save --key suid --path '~/c' --strict
    expect_rc 0
    runner suid-r
    stow restore --key suid --path '~/c' --strict
    expect_rc 0
    local bad
    bad=$(find "$HOME/c" \( -perm -4000 -o -perm -2000 \) -printf '%p %m\n')
    [ -z "$bad" ] || fail "restored with setuid/setgid: $bad"
    [ -x "$HOME/c/su" ] || fail "the execute bit was lost too"
    att_end
}

# 12.9: "[cache" without "]".
defect_ini_bracket() {
    att_begin defects "12.9 '[cache' without ']' names the syntax error and its line"
    printf '# config\n[cache\nkey = k\npaths = ~/c\n' >"$T/bracket.ini"
    stow key --config "$T/bracket.ini"
    expect_rc 2
    err_has "bracket.ini:2" || fail "line 2 not named: $(cat "$T/err")"
    err_has "unknown section" && fail "reported as an unknown section: $(cat "$T/err")"
    grep -qi "\]\|syntax\|unterminated\|unclosed\|missing" "$T/err" || fail "the syntax error is not named: $(cat "$T/err")"
    att_end
}

# 12.6: a stalled store costs at most about a minute by default.
defect_stall() {
    att_begin defects "12.6 stall: default overall deadline <= 90 s; a stalled store gives up and says how long it waited"
    # The default: stowage help lists an overall deadline setting with a default <= 90 s.
    "$STOWAGE_BIN" help >"$T/help" 2>&1
    local dl
    dl=$(python3 - "$T/help" <<'PY'
import re, sys
lines = open(sys.argv[1]).read().splitlines()
for i, l in enumerate(lines):
    m = re.match(r"\s+(\w*(deadline|timeout|max_time|stall)\w*)\s+STOWAGE_\w+\s+(--[\w-]+)", l)
    if not m or m.group(1) in ("connect_timeout_ms", "low_speed_timeout"):
        continue
    d = re.search(r"\((\d+)\s*(ms|s|seconds?|m|min|minutes?)?\)", lines[i + 1] if i + 1 < len(lines) else "")
    if d:
        unit = {"ms": 0.001, None: 1, "m": 60, "min": 60}.get(d.group(2), 60 if (d.group(2) or "").startswith("min") else 1)
        v = int(d.group(1)) * unit
        if "_ms" in m.group(1) and d.group(2) is None:
            v /= 1000.0
        print(m.group(1), m.group(3), v)
        break
PY
)
    if [ -z "$dl" ]; then
        fail "stowage help documents no overall deadline setting (deadline/max_time) with a default"
    else
        local secs=${dl##* }
        python3 -c "import sys; sys.exit(0 if 0 < float('$secs') <= 90 else 1)" ||
            fail "default deadline $dl is over 90 s"
        ok "default deadline: $dl"
    fi
    # A short run: every layer answer stalls; small explicit limits.
    if [ "$NGINX_UP" != 1 ]; then
        fail "nginx did not start"
        att_end
        return 0
    fi
    use_store nginx d-stall
    runner stall-s
    make_tree_a "$HOME/c" 4
    stow save --key st --path '~/c' --strict
    expect_rc 0
    if fproxy_start "127.0.0.1:$NGINX_PORT" stallall/1000 layers/; then
        runner stall-r
        local extra=() t0 ms opt
        opt=$(echo "$dl" | awk '{print $2}')
        [ -n "$opt" ] && extra=("$opt" 6)
        t0=$(ms_now)
        # At most 25 s (2 attempts of 2 s each need about 6): a restore still stalled then is
        # killed and reported.
        stow_bounded 25 restore --key st --path '~/c' --url "$FPROXY_URL/anon/d-stall" --low-speed-timeout 2 --retries 1 "${extra[@]}"
        ms=$(($(ms_now) - t0))
        fproxy_stop
        if [ "$RC" = 137 ]; then
            fail "still running after 25 s with --low-speed-timeout 2 --retries 1 ${extra[*]}: killed; $(grep -c 'attempt' "$T/err") attempts logged"
            att_end
            return 0
        fi
        expect_rc 0
        [ "$ms" -lt 30000 ] || fail "gave up after $ms ms with --low-speed-timeout 2 --retries 1 ${extra[*]}"
        grep -qx 'cache-hit=false' "$T/out" || fail "a stalled restore reports $(tr '\n' ' ' <"$T/out")"
        grep -Eiq '(waited|after|for) [0-9.]+ ?(s|ms|seconds?)\b' "$T/err" ||
            fail "the message does not say how long it waited: $(grep -i 'warning\|error' "$T/err" | tail -2)"
        echo "    gave up in $ms ms: $(tail -1 "$T/err")"
    fi
    att_end
}

defect_cases() {
    defect_all_or_nothing
    defect_symlink_chain symlink-chain
    defect_symlink_chain symlink-chain-write
    defect_log_injection
    defect_dev_zero
    defect_setuid
    defect_ini_bracket
    defect_stall
}
