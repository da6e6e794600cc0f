#!/bin/sh
# Two boots with one disk (/dev/vda, ext2, mounted with -o sync at /shared, where the manifest puts the
# readiness file). Boot 1 leaves a canary and execs encfs-init, whose filesystem fails (no blob server): it
# must exit 3 without a readiness file. Boot 2 finds the canary (the disk is boot 1's) and looks for the
# readiness file, then execs encfs-init again (which fails the same way). The rig sets encfs_boot=N.
mount -t devtmpfs devtmpfs /dev
. /vmtest/vda.sh
disk_ready "fail-closed: FAIL"
mkdir -p /shared
if [ "$encfs_boot" = 1 ]; then
    mke2fs -q /dev/vda || echo "fail-closed: FAIL: mke2fs"
    mount -t ext2 -o sync /dev/vda /shared || echo "fail-closed: FAIL: mount /dev/vda"
    echo "boot 1" > /shared/canary
else
    mount -t ext2 -o sync /dev/vda /shared || echo "fail-closed: FAIL: mount /dev/vda"
    if [ "$(cat /shared/canary 2>/dev/null)" != "boot 1" ]; then
        echo "fail-closed: FAIL: boot 1's disk is not here"
    elif [ -e /shared/ready ]; then
        echo "fail-closed: FAIL: a readiness file after boot 1 failed: $(cat /shared/ready)"
    else
        echo "fail-closed: boot 1 left no readiness file"
    fi
fi
exec /bin/encfs-init
