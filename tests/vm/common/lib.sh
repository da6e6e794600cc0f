#!/bin/sh
# Shell helpers for the scenarios' scripts: `. /etc/vmtest/lib.sh` (the rig puts this file in every image).

# wait_for SECONDS COMMAND...: run COMMAND every 50 ms until it succeeds; fails after SECONDS.
wait_for() {
    n=$(($1 * 20)); shift; i=0
    while ! "$@"; do
        [ $i -ge $n ] && return 1
        sleep 0.05; i=$((i + 1))
    done
}

# probe_passes: `encfs-init probe` succeeds (its output dropped).
probe_passes() { /bin/encfs-init probe >/dev/null 2>&1; }
