#!/bin/sh
# After boot the fake Key Vault revokes the key; then filesystem 0's blob server stalls past io_deadline.
# Filesystem 0 dies, its re-open fails closed at the key release and it stays down (probe fails, saying
# so); filesystem 1 and this application keep running.
r=/mnt/remote/encfs-init.ready
fail() { echo "revoked: FAIL: $*"; cat $r; exit 1; }
. /etc/vmtest/lib.sh
/bin/encfs-init probe || fail "probe fails after boot"
b0=$(sha256sum < /mnt/remote/b/data.bin)
mkdir -p /fake-azure/revoke && touch /fake-azure/revoke/demo
echo "revoked: the vault revoked key demo"
kill -STOP "$(cat /blobs/a.pid)" || fail "cannot stop the blob server"
wait_for 120 grep -qs '"state": "restarting"' $r || fail "filesystem 0 never went restarting"
# The blob service is back: only the key can keep it down now.
kill -CONT "$(cat /blobs/a.pid)" || fail "cannot continue the blob server"
echo "revoked: filesystem 0 is restarting, its blob server runs again"
wait_for 120 grep -qs '"state": "down"' $r || fail "filesystem 0 never went down"
echo "revoked: readiness file says down"
why=$(/bin/encfs-init probe 2>&1) && fail "probe passes with filesystem 0 down"
echo "$why" | grep -q 'filesystem\[0\] (/mnt/remote/a): down: .*key' || fail "probe does not say why: $why"
echo "revoked: probe fails and names the key release"
[ -e /mnt/remote/a/data.bin ] && fail "filesystem 0 is still in the application's view"
echo "revoked: filesystem 0 is gone from the application's view"
for n in 1 2 3 4 5; do
    echo 3 > /proc/sys/vm/drop_caches
    b=$(sha256sum < /mnt/remote/b/data.bin) || fail "filesystem 1 failed a read"
    [ "$b" = "$b0" ] || fail "filesystem 1 gave another checksum"
    sleep 0.5
done
echo "revoked: filesystem 1 and the application keep running"
