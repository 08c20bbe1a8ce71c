# shellcheck shell=bash
# Category "proxy": a faulty store (flaky_proxy.py --all in front of nginx). Every restore
# must either succeed (retried) with the exact tree, or fail cleanly: a warning, exit 0
# (exit 1 with --strict), cache-hit=false, no file that is neither old nor new, no temp file.
# shellcheck disable=SC2088,SC2015

# px_restore MODE MATCH EXPECT [ARGS...]: restores kb over tree A through the proxy.
# EXPECT: ok (must succeed), fail (must fail cleanly), any (either, checked as above).
px_restore() {
    local mode=$1 match=$2 expect=$3 t0 secs
    shift 3
    att_begin proxy "restore through $mode${match:+ on $match} (expect $expect${*:+; $*})"
    if ! fproxy_start "127.0.0.1:$NGINX_PORT" "$mode" "$match"; then att_end; return 0; fi
    runner px
    rm -rf "$HOME/c" "$STOWAGE_STATE_DIR" && cp -a "$T/px-treeA" "$HOME/c"
    t0=$(ms_now)
    stow restore --key kb --path '~/c' --url "$FPROXY_URL/anon/px" "$@"
    secs=$((($(ms_now) - t0) / 1000))
    fproxy_stop
    local strict=0
    [[ " $* " == *" --strict "* ]] && strict=1
    if hit_true; then
        [ "$expect" != fail ] || fail "reported a hit through a store that cannot serve the entry"
        [ "$RC" = 0 ] || fail "exit $RC, yet cache-hit=true: $(grep 'error' "$T/err" | tail -1)"
        tree_is "$HOME/c" "$T/px-AB.json" "a tree reported as a hit"
    else
        [ "$expect" != ok ] || fail "not restored: rc $RC $(tail -c 600 "$T/err")"
        if [ "$strict" = 1 ]; then expect_rc 1; else expect_rc 0; fi
        grep -qi 'warning\|error' "$T/err" || fail "a failed restore without a warning: $(cat "$T/err")"
        tree_is "$HOME/c" "$T/px-A.json" "the tree after a failed restore (all-or-nothing)"
    fi
    grep -q 'cache-hit=' "$T/out" || fail "no cache-hit output: $(cat "$T/out")"
    no_tmps "$HOME"
    [ "$secs" -lt 60 ] || fail "took $secs s"
    echo "    rc=$RC in ${secs} s; $(grep -c . "$FPROXY_LOG") requests; $(grep -o 'cache-result=.*' "$T/out")"
    att_end
}

# px_save MODE MATCH: saves tree B as a new key through the proxy; a save reported as done
# must restore exactly, a failed one must leave no manifest.
px_save() {
    local mode=$1 match=$2 key="ps-$RANDOM"
    att_begin proxy "save through $mode${match:+ on $match}"
    if ! fproxy_start "127.0.0.1:$NGINX_PORT" "$mode" "$match"; then att_end; return 0; fi
    runner pxs
    rm -rf "$HOME/c" "$STOWAGE_STATE_DIR" && cp -a "$T/px-treeB" "$HOME/c"
    stow save --key "$key" --path '~/c' --layer-size 1M --url "$FPROXY_URL/anon/px"
    local saved=0
    grep -q "save $key:" "$T/err" && saved=1 # the summary line of a finished save
    fproxy_stop
    expect_rc 0
    store_ok
    if store_has "manifests/default/$key.json"; then
        runner pxv
        rm -rf "$HOME/c" "$STOWAGE_STATE_DIR"
        stow restore --key "$key" --path '~/c' --strict
        expect_rc 0 && tree_is "$HOME/c" "$T/px-B.json" "the entry saved through $mode"
    elif [ "$saved" = 1 ]; then
        fail "save reported success but left no manifest: $(cat "$T/err")"
    fi
    echo "    rc=$RC saved=$saved; $(grep -c . "$FPROXY_LOG") requests"
    att_end
}

proxy_cases() {
    use_store nginx px
    runner pxs
    make_tree_a "$HOME/c"
    snap "$HOME/c" "$T/px-A.json"
    cp -a "$HOME/c" "$T/px-treeA"
    stow save --key ka --path '~/c' --layer-size 1M --strict
    if ! expect_rc 0; then cat_broken proxy "fixture save failed"; return 0; fi
    mutate_tree "$HOME/c"
    snap "$HOME/c" "$T/px-B.json"
    cp -a "$HOME/c" "$T/px-treeB"
    python3 "$TC" overlay "$T/px-A.json" "$T/px-B.json" "$T/px-AB.json"
    stow save --key kb --path '~/c' --layer-size 1M --strict
    if ! expect_rc 0; then cat_broken proxy "fixture save failed"; return 0; fi

    px_restore pass "" ok --strict
    px_restore burst503/3 "" ok
    px_restore burst503/3 layers/ ok --strict
    px_restore always503 layers/ fail --retries 2
    px_restore always503 layers/ fail --strict --retries 2
    px_restore always503 manifests/ fail --strict --retries 2
    px_restore reset layers/ ok
    px_restore cut/150000 layers/ ok --parallel 1
    px_restore stall/150000 layers/ any --low-speed-timeout 2 --retries 2
    px_restore lenplus/5000 layers/ any
    px_restore lenminus/5000 layers/ any
    px_restore lenminus/5000 manifests/ any
    px_restore flip1/200000 layers/ any
    px_restore flip/200000 layers/ fail --retries 2
    px_restore flip/200000 layers/ fail --strict --retries 2
    px_restore flip/100 manifests/ any
    px_save burst503/2 layers/
    px_save rcut/300000 layers/
    px_save always503 manifests/
}
