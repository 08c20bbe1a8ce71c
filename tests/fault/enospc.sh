# shellcheck shell=bash
# Category "enospc": the destination is a small tmpfs the test mounts itself, so the restore
# runs out of space: the previous tree stays exactly as it was, no temp file is left,
# cache-hit=false, exit 0 (1 with --strict). The mount is undone at exit.
# shellcheck disable=SC2088,SC2015

enospc_cases() {
    local mnt="$T/full" i
    use_store file enospc
    # The entry: 4 MB of incompressible files, on a normal disk.
    runner ens
    make_tree_a "$HOME/c" 8
    mkdir -p "$HOME/c/more"
    for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16; do head -c 200000 /dev/urandom >"$HOME/c/more/m$i.bin"; done
    mutate_tree "$HOME/c"
    stow save --key big --path '~/c' --layer-size 1M --strict
    if ! expect_rc 0; then cat_broken enospc "fixture save failed"; return 0; fi

    mkdir -p "$mnt"
    if ! mount -t tmpfs -o size=3m,mode=0755 stowage-fault "$mnt" 2>"$T/mount.err"; then
        cat_broken enospc "cannot mount a tmpfs (root needed): $(cat "$T/mount.err")"
        return 0
    fi
    at_exit "umount -l '$mnt'"
    local strict
    for strict in "" --strict; do
        att_begin enospc "restore of 4 MB into a 3 MB tmpfs holding the previous tree ${strict:-(default)}"
        rm -rf "${mnt:?}/c"
        # The previous tree: 1.2 MB, some of its paths are in the entry too.
        export HOME="$mnt" STOWAGE_STATE_DIR="$T/enospc-state"
        rm -rf "$STOWAGE_STATE_DIR"
        make_tree_a "$HOME/c" 12
        snap "$HOME/c" "$T/enospc-before.json"
        # shellcheck disable=SC2086
        stow restore --key big --path '~/c' $strict
        if [ -n "$strict" ]; then expect_rc 1; else expect_rc 0; fi
        grep -qx 'cache-hit=false' "$T/out" || fail "a restore that ran out of space reports: $(tr '\n' ' ' <"$T/out")"
        grep -qi 'space\|ENOSPC' "$T/err" || fail "the message does not say the disk is full: $(tail -c 400 "$T/err")"
        tree_is "$HOME/c" "$T/enospc-before.json" "the previous tree"
        no_tmps "$HOME"
        echo "    rc=$RC; $(tr '\n' ' ' <"$T/out"); df: $(df -k --output=used "$mnt" | tail -1) kB used"
        att_end
    done
    export HOME="$T/home-ens"
}
