#!/bin/sh
# Both blobs are replaced under their read-only, verity-pinned mounts (new ETags): blob 0 by the same sealed
# image re-uploaded (same root) → restarted on the new version; blob 1 by another image (another root) →
# its re-open fails at dm-verity and it stays down.
r=/mnt/remote/encfs-init.ready
. /etc/vmtest/lib.sh
fail() { echo "replaced: FAIL: $*"; cat $r; exit 1; }
/bin/encfs-init probe || fail "probe fails after boot"
t0=$(cat /mnt/remote/a/test.txt)
grep -q '0x1' $r || fail "the blobs' first ETag is not in $r"
echo /blobs/fs.img > /blobs/replace-a
echo /blobs/other.img > /blobs/replace-b
echo "replaced: blob 0 re-uploaded as it was, blob 1 replaced by another image"
settled() {
    /bin/encfs-init probe 2>&1 | grep -q 'filesystem\[1\] (/mnt/remote/b): down: ' && grep -q '0x2' $r \
        && ! /bin/encfs-init probe 2>&1 | grep -q 'filesystem\[0\]'
}
wait_for 180 settled || fail "never: filesystem 0 back on the new version and filesystem 1 down"
/bin/encfs-init probe 2>&1 | grep -q 'filesystem\[1\] (/mnt/remote/b): down: .*dm-verity' \
    || fail "probe does not name dm-verity: $(/bin/encfs-init probe 2>&1)"
echo "replaced: filesystem 0 is ready on the new version, filesystem 1 is down (dm-verity), probe says so"
echo 3 > /proc/sys/vm/drop_caches
[ "$(cat /mnt/remote/a/test.txt)" = "$t0" ] || fail "filesystem 0 reads other content"
cmp -s /mnt/remote/a/a.txt /verity/a.txt || fail "filesystem 0: a.txt differs"
echo "replaced: filesystem 0 reads the same content"
[ -e /mnt/remote/b/test.txt ] && fail "filesystem 1 is still in the application's view"
echo "replaced: filesystem 1 is gone from the application's view"
