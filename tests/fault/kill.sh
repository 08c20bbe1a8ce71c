# shellcheck shell=bash
# Category "kill-*": kill -9 at seeded random moments during restore and save, on one store.
# Sourced by run.sh. FAULT_KILLS kills per store and direction (5), kill I of N at a random
# moment in the I-th of N equal slices of the clean operation's time (strat_ms): every slice,
# from the start to the commit, gets a kill in every run (N uniform draws leave about one
# slice in three without one). Saves alternate delta and full; which slices get which
# alternates with the seed's parity.
# shellcheck disable=SC2088,SC2015

# Runs stowage ARGS in the background and kills it with SIGKILL after R_MS ms (when still
# running). KILLED=1 when the signal hit a live process.
kill_after() { # MS ARGS...
    local ms=$1 pid
    shift
    "$STOWAGE_BIN" "$@" >"$T/kout" 2>"$T/kerr" &
    pid=$!
    sleep_ms "$ms"
    KILLED=0
    if kill -9 "$pid" 2>/dev/null; then KILLED=1; fi
    wait "$pid" 2>/dev/null || true
}

# strat_ms I N MAX: R_MS = a seeded random moment in the I-th (1-based) of N equal slices of
# [0, MAX).
strat_ms() {
    local w=$((($3 + $2 - 1) / $2))
    rand_ms "$w"
    R_MS=$((($1 - 1) * w + R_MS))
}

kill_sweep() { # STORE
    local st=$1 n=${FAULT_KILLS:-5} cat="kill-$1" i t0 dsave drest key kind
    use_store "$st" "kill-$st"
    # Fixtures: entry ka = tree A, entry kb = tree B (a delta on ka, several layers).
    runner "ks-$st"
    make_tree_a "$HOME/c"
    snap "$HOME/c" "$T/ks-$st-A.json"
    cp -a "$HOME/c" "$T/ks-$st-treeA"
    stow save --key ka --path '~/c' --layer-size 1M --strict
    if ! expect_rc 0; then cat_broken "$cat" "fixture save failed on $st"; return 0; fi
    mutate_tree "$HOME/c"
    snap "$HOME/c" "$T/ks-$st-B.json"
    cp -a "$HOME/c" "$T/ks-$st-treeB"
    python3 "$TC" overlay "$T/ks-$st-A.json" "$T/ks-$st-B.json" "$T/ks-$st-AB.json"
    t0=$(ms_now)
    stow save --key kb --path '~/c' --layer-size 1M --strict
    dsave=$(($(ms_now) - t0))
    if ! expect_rc 0; then cat_broken "$cat" "fixture save kb failed on $st"; return 0; fi
    runner "kr-$st"
    stow restore --key ka --path '~/c' --strict
    t0=$(ms_now)
    stow restore --key kb --path '~/c' --strict
    drest=$(($(ms_now) - t0))
    echo "kill sweep on $st: clean save ${dsave} ms, clean restore ${drest} ms"

    for i in $(seq 1 "$n"); do
        strat_ms "$i" "$n" $((drest * 9 / 10 + 5))
        att_begin "$cat" "restore killed at ${R_MS} ms (#$i)"
        runner "kr-$st"
        rm -rf "$HOME/c" "$STOWAGE_STATE_DIR"
        stow restore --key ka --path '~/c' --strict
        expect_rc 0 && tree_is "$HOME/c" "$T/ks-$st-A.json" "the set-up restore of ka"
        kill_after "$R_MS" restore --key kb --path '~/c' --strict
        echo "    killed=$KILLED"
        tree_mix "$HOME/c" "$T/ks-$st-A.json" "$T/ks-$st-AB.json"
        stow restore --key kb --path '~/c' --strict
        if expect_rc 0; then
            hit_true || fail "restore after the kill is not a hit: $(cat "$T/out")"
            tree_is "$HOME/c" "$T/ks-$st-AB.json" "the tree after the next restore" || true
            no_tmps "$HOME" || true
        fi
        att_end
    done

    # A restore writes no manifest or layer: one store check covers all the killed restores.
    att_begin "$cat" "the store after $n killed restores"
    store_ok
    att_end

    for i in $(seq 1 "$n"); do
        strat_ms "$i" "$n" $((dsave * 9 / 10 + 5))
        key="kb-$i"
        if [ $(((i + ${FAULT_SEED:-0}) % 2)) = 1 ]; then kind="delta"; else kind="full"; fi
        att_begin "$cat" "save of $key killed at ${R_MS} ms (#$i, $kind)"
        runner "ks-$st"
        rm -rf "$HOME/c" "$STOWAGE_STATE_DIR"
        if [ "$kind" = delta ]; then
            stow restore --key ka --path '~/c' --strict # leaves the state: the save is a delta on ka
            expect_rc 0
        fi
        rm -rf "$HOME/c" && cp -a "$T/ks-$st-treeB" "$HOME/c"
        kill_after "$R_MS" save --key "$key" --path '~/c' --layer-size 1M --strict
        echo "    killed=$KILLED"
        store_ok
        runner "kv-$st"
        rm -rf "$HOME/c" "$STOWAGE_STATE_DIR"
        stow restore --key ka --path '~/c' --strict
        expect_rc 0 && { hit_true || fail "ka is not a hit after the kill"; } && tree_is "$HOME/c" "$T/ks-$st-A.json" "the previous entry ka"
        if grep -qxF "manifests/default/$key.json" "$T/snapstore/keys.txt"; then # listed by store_ok
            rm -rf "$HOME/c" "$STOWAGE_STATE_DIR"
            stow restore --key "$key" --path '~/c' --strict
            expect_rc 0 && tree_is "$HOME/c" "$T/ks-$st-B.json" "the committed entry $key"
        fi
        att_end
    done

    if [ "$st" = file ]; then
        att_begin "$cat" "prune removes the temp objects of killed saves"
        # A save killed after writing its lease leaves it: --grace 0 is refused while it is
        # live (6 h) ...
        store_snapshot "$T/snapstore"
        stow prune --grace 0
        if grep -q '^leases/.*\.json$' "$T/snapstore/keys.txt"; then
            if [ "$RC" -eq 0 ] || ! grep -q lease "$T/err"; then
                fail "prune --grace 0 with a killed save's lease: expected a refusal naming it, got exit $RC: $(head -c 500 "$T/err")"
            fi
        else
            expect_rc 0
        fi
        # ... and the prune that runs later, with the default grace, removes the leftovers.
        STOWAGE_NOW=$(($(date +%s) + 7 * 3600)) stow prune
        expect_rc 0
        store_snapshot "$T/snapstore"
        local d
        d=$(python3 "$TC" storetmp "$T/snapstore") || fail "temp objects left in the store after a prune 7 h later: $d"
        att_end
    fi
}
