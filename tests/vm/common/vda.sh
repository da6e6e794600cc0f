#!/bin/sh
# Sourced by the scenarios with a disk. disk_ready FAILURE_PREFIX: load the packed virtio modules, then wait
# up to 5 s for /dev/vda; without it, print "FAILURE_PREFIX: no block device /dev/vda". Needs /dev mounted.
disk_ready() {
    release=$(cat /etc/vmtest/release)
    grep -E '/virtio[a-z_]*\.ko$' /etc/vmtest/modules.load | while read -r f; do
        insmod "/lib/modules/$release/$f" 2>/dev/null
    done
    i=0
    while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
    [ -b /dev/vda ] || echo "$1: no block device /dev/vda"
}
