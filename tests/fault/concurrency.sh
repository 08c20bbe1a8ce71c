# shellcheck shell=bash
# Category "concurrency": saves (new keys and delta updates of one key), prunes (--grace 0
# and the default grace, evicting entries by size) and restores run together on the file
# store; afterwards every listed entry restores exactly one of the trees saved under its key
# and no manifest references a missing layer. FAULT_CONC_ROUNDS rounds (1) of three
# variants: --grace 0; the default grace; the default grace with a parent saved 3 h ago.
# shellcheck disable=SC2088,SC2015

conc_job() { # NAME ARGS...: one stowage process in its own runner, in the background
    local name=$1
    shift
    (
        HOME="$T/home-$name" STOWAGE_STATE_DIR="$T/home-$name/.stowage-state" \
            "$STOWAGE_BIN" "$@" >"$T/conc-$name.out" 2>&1
        echo $? >"$T/conc-$name.rc"
    ) &
    CONC_PIDS+=($!)
}

# A prune that repeats (at most 30 times) until $T/conc-stop exists: it keeps evicting while
# the saves upload. NAME.rc is the first non-zero exit, or 0.
conc_prune_loop() { # NAME ARGS...
    local name=$1
    shift
    (
        rc=0 i=0 r=0
        : >"$T/conc-$name.out"
        while [ ! -e "$T/conc-stop" ] && [ "$i" -lt 30 ]; do
            HOME="$T/home-$name" STOWAGE_STATE_DIR="$T/home-$name/.stowage-state" \
                "$STOWAGE_BIN" prune "$@" >>"$T/conc-$name.out" 2>&1
            r=$?
            [ "$r" = 0 ] || [ "$rc" != 0 ] || rc=$r
            i=$((i + 1))
        done
        echo "$rc" >"$T/conc-$name.rc"
    ) &
    PRUNE_PIDS+=($!)
}

# Records the tree of runner NAME as a candidate content of KEY.
conc_candidate() { # NAME KEY
    local n
    n=$(find "$T/conc-cand" -name "$2.*.json" 2>/dev/null | wc -l)
    snap "$T/home-$1/c" "$T/conc-cand/$2.$n.json"
}

concurrency_cases() {
    local rounds=${FAULT_CONC_ROUNDS:-1} r j
    # The base tree of the entry "shared" that the delta saves update.
    runner cbase
    make_tree_a "$HOME/c" 10
    for r in $(seq 1 "$rounds"); do
        for grace in 0 default aged; do
            att_begin concurrency "round $r: 4 saves, 2 restores, 2 prune loops --max-size 3M, grace $grace"
            # A fresh store per attempt: damage from one attempt must not fail the next.
            use_store file "conc-$r-$grace"
            rm -rf "$T/conc-cand" && mkdir -p "$T/conc-cand"
            runner cbase
            rm -rf "$STOWAGE_STATE_DIR"
            stow save --key shared --path '~/c' --layer-size 500k --strict
            expect_rc 0
            conc_candidate cbase shared
            # Two filler entries, so that the prunes have to evict something (about 4.5 MB in
            # all against a 3 MB budget; "shared" after a delta, about 2.4 MB, fits alone: with a
            # budget below it, a prune after its last save evicted every entry, and the check
            # below had nothing to check).
            for j in 1 2; do
                runner "cf$j"
                rm -rf "$HOME/c" "$STOWAGE_STATE_DIR"
                make_tree_a "$HOME/c" 5
                stow save --key "fill-$j" --path '~/c' --strict
                expect_rc 0
                conc_candidate "cf$j" "fill-$j"
            done
            # Delta savers restore "shared" first (their parent), then change their trees; they
            # compress at level 19 so that their upload is slow enough for the prunes to run.
            for j in 1 2; do
                runner "cd$j"
                rm -rf "$HOME/c" "$STOWAGE_STATE_DIR"
                stow restore --key shared --path '~/c' --strict
                expect_rc 0
                mutate_tree "$HOME/c"
                echo "cd$j round $r" >"$HOME/c/who"
                conc_candidate "cd$j" shared
            done
            if [ "$grace" = aged ]; then
                # The parent was saved and last used hours ago (a long build): its layers are
                # older than the grace period and it is the least recently used entry, so only
                # a lease (or a save that re-checks its layers) protects them from the prunes.
                find "$STORE_FS" -type f -exec touch -d '3 hours ago' {} +
                printf '{"time":%d}' $(($(date +%s) - 10800)) >"$STORE_FS/access/default/shared"
                touch -d '3 hours ago' "$STORE_FS/access/default/shared"
            fi
            for j in 1 2; do
                runner "cn$j"
                rm -rf "$HOME/c" "$STOWAGE_STATE_DIR"
                make_tree_a "$HOME/c" 6
                conc_candidate "cn$j" "new-$r-$grace-$j"
            done
            for j in 1 2; do
                runner "cr$j"
                rm -rf "$HOME/c" "$STOWAGE_STATE_DIR"
            done
            local gr=()
            [ "$grace" = 0 ] && gr=(--grace 0) # grace "aged" and "default": the default (1h)
            CONC_PIDS=() PRUNE_PIDS=()
            rm -f "$T/conc-stop"
            conc_prune_loop cp1 --max-size 3M "${gr[@]}"
            conc_job cd1 save --key shared --path '~/c' --layer-size 500k --compression-level 19 --strict
            conc_job cn1 save --key "new-$r-$grace-1" --path '~/c' --layer-size 500k --strict
            conc_job cr1 restore --key fill-1 --path '~/c'
            conc_prune_loop cp2 --max-size 3M "${gr[@]}"
            conc_job cd2 save --key shared --path '~/c' --layer-size 500k --compression-level 19 --strict
            conc_job cn2 save --key "new-$r-$grace-2" --path '~/c' --layer-size 500k --strict
            conc_job cr2 restore --key shared --path '~/c'
            wait "${CONC_PIDS[@]}"
            touch "$T/conc-stop"
            wait "${PRUNE_PIDS[@]}"
            for j in cd1 cd2 cn1 cn2 cp1 cp2 cr1 cr2; do
                [ "$(cat "$T/conc-$j.rc")" = 0 ] && continue
                # Issue 12.4: prune may refuse --grace 0 while a save holds a lease.
                if [ "$grace" = 0 ] && [[ $j == cp* ]] && grep -qi 'lease\|refus' "$T/conc-$j.out"; then
                    echo "    $j refused: $(grep -i 'lease\|refus' "$T/conc-$j.out" | head -1)"
                    continue
                fi
                fail "$j exited $(cat "$T/conc-$j.rc"): $(tail -c 600 "$T/conc-$j.out")"
            done
            # A concurrent restore is a miss or exactly a saved tree.
            for j in 1 2; do
                if grep -qx 'cache-hit=true' "$T/conc-cr$j.out"; then
                    local k okc=0 c
                    k=$(sed -n 's/^cache-matched-key=//p' "$T/conc-cr$j.out")
                    for c in "$T/conc-cand/$k".*.json; do
                        python3 "$TC" eq "$T/home-cr$j/c" "$c" >/dev/null && okc=1
                    done
                    [ "$okc" = 1 ] || fail "concurrent restore cr$j reported a hit on $k with a tree no save wrote"
                fi
            done
            conc_check
            att_end
        done
    done
}

# Every listed entry restores, --strict, exactly one tree saved under its key.
conc_check() {
    store_ok
    stow list --json
    if ! expect_rc 0; then return 0; fi
    cp "$T/out" "$T/conc-list.json"
    local keys key n=0 c okc
    keys=$(python3 -c 'import json,sys; [print(e["key"]) for e in json.load(open(sys.argv[1]))]' "$T/conc-list.json") ||
        { fail "list --json does not parse: $(head -c 300 "$T/conc-list.json")"; return 0; }
    for key in $keys; do
        n=$((n + 1))
        runner cchk
        rm -rf "$HOME/c" "$STOWAGE_STATE_DIR"
        stow restore --key "$key" --path '~/c' --strict
        if ! expect_rc 0; then continue; fi
        hit_true || { fail "listed entry $key is not a hit: $(tr '\n' ' ' <"$T/out")"; continue; }
        okc=0
        for c in "$T/conc-cand/$key".*.json; do
            if python3 "$TC" eq "$HOME/c" "$c" >/dev/null; then okc=1; break; fi
        done
        [ "$okc" = 1 ] || fail "entry $key restores a tree no save wrote: $(python3 "$TC" eq "$HOME/c" "$T/conc-cand/$key.0.json" | head -3)"
    done
    echo "    $n listed entries checked"
    [ "$n" -gt 0 ] || fail "prune left no entry to check: the case proved nothing"
}
