#!/bin/sh
# Filesystem 0's blob server is stopped for longer than its io_deadline: it goes `restarting` (probe fails),
# comes back once the server runs again, and gives the same checksum; filesystem 1 is read in a loop
# throughout and never fails.
r=/mnt/remote/encfs-init.ready
fail() { echo "restart: FAIL: $*"; cat $r; exit 1; }
. /etc/vmtest/lib.sh
/bin/encfs-init probe || fail "probe fails after boot"
a0=$(sha256sum < /mnt/remote/a/data.bin)
b0=$(sha256sum < /mnt/remote/b/data.bin)
echo "restart: checksums read"
( n=0
  while [ ! -e /run/stop-b ]; do
      echo 3 > /proc/sys/vm/drop_caches
      b=$(sha256sum < /mnt/remote/b/data.bin) || touch /run/b-failed
      [ "$b" = "$b0" ] || { echo "restart: filesystem 1 blinked: $b"; touch /run/b-failed; }
      n=$((n+1)); echo $n > /run/b-reads
      sleep 0.2
  done ) &
kill -STOP "$(cat /blobs/a.pid)" || fail "cannot stop the blob server"
echo "restart: blob server of filesystem 0 stopped"
wait_for 120 grep -qs '"state": "restarting"' $r || fail "filesystem 0 never went restarting"
echo "restart: readiness file says restarting"
/bin/encfs-init probe && fail "probe passes while filesystem 0 is restarting"
echo "restart: probe fails while restarting"
sleep 3
kill -CONT "$(cat /blobs/a.pid)" || fail "cannot continue the blob server"
echo "restart: blob server of filesystem 0 runs again"
wait_for 120 probe_passes || fail "filesystem 0 never came back"
grep -q '"state": "restarting"' $r && fail "probe passes with a filesystem restarting"
echo "restart: probe passes again"
echo 3 > /proc/sys/vm/drop_caches
a1=$(sha256sum < /mnt/remote/a/data.bin) || fail "filesystem 0 unreadable after the restart"
[ "$a1" = "$a0" ] || fail "filesystem 0 gives another checksum after the restart"
echo "restart: filesystem 0 gives the same checksum again"
touch /run/stop-b; wait
[ -e /run/b-failed ] && fail "filesystem 1 failed a read meanwhile"
echo "restart: filesystem 1 never blinked ($(cat /run/b-reads) reads)"
