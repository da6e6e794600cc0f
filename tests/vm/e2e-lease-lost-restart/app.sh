#!/bin/sh
# The lease of a read-write filesystem is broken under the mount (on_failure = "restart", the default): the
# next write fails, the filesystem goes restarting (probe fails), is re-opened under a new lease, and what
# was written and fsync'd before the break reads back the same; writes go through again.
r=/mnt/remote/encfs-init.ready
fail() { echo "lease-restart: FAIL: $*"; cat $r; exit 1; }
. /etc/vmtest/lib.sh

/bin/encfs-init probe || fail "probe fails with the lease held"
grep -q '"lease": "held"' $r || fail "the readiness file does not say the lease is held"
head -c 262144 /dev/urandom > /tmp/before
dd if=/tmp/before of=/mnt/remote/data/before bs=64k conv=fsync 2>/dev/null || fail "write before the break"
sync
s0=$(sha256sum < /tmp/before)
echo "lease-restart: written and fsync'd before the break"

touch /lease/break
wait_for 10 test ! -e /lease/break || fail "the blob server did not break the lease"
dd if=/dev/urandom of=/mnt/remote/data/after bs=64k count=4 conv=fsync 2>/dev/null && fail "a write after the break went through"
echo "lease-restart: a write after the break fails"

wait_for 30 grep -qs '"state": "restarting"' $r || fail "the filesystem never went restarting"
/bin/encfs-init probe 2>/dev/null && fail "probe passes while the filesystem is restarting"
echo "lease-restart: restarting, probe fails"

wait_for 120 probe_passes || fail "the filesystem never came back"
grep -q '"lease": "held"' $r || fail "ready again without holding the lease"
echo "lease-restart: probe passes again, the readiness file says the lease is held"

echo 3 > /proc/sys/vm/drop_caches
s1=$(sha256sum < /mnt/remote/data/before) || fail "the file written before the break is unreadable"
[ "$s1" = "$s0" ] || fail "the file written before the break reads back otherwise"
echo "lease-restart: what was fsync'd before the break reads back the same"
dd if=/dev/urandom of=/mnt/remote/data/again bs=64k count=4 conv=fsync 2>/dev/null || fail "a write after the restart fails"
echo "lease-restart: writes go through again"
