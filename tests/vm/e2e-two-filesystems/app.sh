#!/bin/sh
# Both filesystems are there: the model read-only, the scratch read-write.
/bin/encfs-init probe || exit 1
echo "two: $(cat /mnt/remote/model/test.txt)"
echo "two: $(cat /mnt/remote/scratch/README)"
if touch /mnt/remote/model/new 2>/dev/null; then echo "two: a read-only filesystem took a write"; exit 1; fi
echo "two: read-only refuses writes"
head -c 262144 /dev/urandom > /mnt/remote/scratch/written
a=$(sha256sum /mnt/remote/scratch/written)
sync
echo 3 > /proc/sys/vm/drop_caches
b=$(sha256sum /mnt/remote/scratch/written)
[ "$a" = "$b" ] || { echo "two: the read-write filesystem gave back other bytes"; exit 1; }
echo "two: read-write takes writes"
# Health reads (every second here) reach the readiness file, on the shared volume next to the mount points.
sleep 4
r=/mnt/remote/encfs-init.ready
[ -s $r ] || { echo "two: no readiness file at $r"; exit 1; }
n=$(grep -c '"ok": true' $r)
[ "$n" -eq 2 ] || { echo "two: want 2 healthy filesystems in $r, got $n"; cat $r; exit 1; }
/bin/encfs-init probe || { echo "two: probe fails while healthy"; exit 1; }
echo "two: health reads ok for both filesystems in $r"
