#!/bin/sh
# Filesystem 0 is private (IMDS's token for the storage account, 40 s). IMDS goes down after boot: once its
# token can no longer be refreshed, filesystem 0 is dead and goes restarting (probe fails); its re-opens fail
# while IMDS is down; once IMDS is back it comes back with the same checksum. Filesystem 1 (anonymous) is
# read throughout and never fails. Blob server a admits only IMDS's live storage tokens.
r=/mnt/remote/encfs-init.ready
fail() { echo "token: FAIL: $*"; cat $r; exit 1; }
. /etc/vmtest/lib.sh
/bin/encfs-init probe || fail "probe fails after boot"
# Blob server a checks bearer tokens as Azure Storage does (--tokens): it serves no request without one.
# (Azure answers a tokenless read of a private container 404 ResourceNotFound.)
wget -O /dev/null "http://127.0.0.1:$(cat /blobs/a.port)/c/a.img" 2>&1 | grep -q ' 404 ' ||
    fail "blob server a did not refuse a request without a token (404)"
echo "token: blob a refuses a request without a token"
a0=$(sha256sum < /mnt/remote/a/data.bin)
b0=$(sha256sum < /mnt/remote/b/data.bin)
touch /fake-azure/imds-down
echo "token: IMDS is down"
( while [ ! -e /run/stop-b ]; do
      echo 3 > /proc/sys/vm/drop_caches
      b=$(sha256sum < /mnt/remote/b/data.bin) || touch /run/b-failed
      [ "$b" = "$b0" ] || touch /run/b-failed
      sleep 0.5
  done ) &
wait_for 90 grep -qs '"state": "restarting"' $r || fail "filesystem 0 never went restarting"
/bin/encfs-init probe 2>/dev/null && fail "probe passes while filesystem 0 is restarting"
echo "token: filesystem 0 is restarting, probe fails"
sleep 5
grep -q '"state": "restarting"' $r || fail "filesystem 0 left restarting while IMDS was down"
rm /fake-azure/imds-down
echo "token: IMDS is back"
wait_for 120 probe_passes || fail "filesystem 0 never came back"
echo "token: probe passes again"
echo 3 > /proc/sys/vm/drop_caches
a1=$(sha256sum < /mnt/remote/a/data.bin) || fail "filesystem 0 unreadable after the restart"
[ "$a1" = "$a0" ] || fail "filesystem 0 gives another checksum after the restart"
echo "token: filesystem 0 gives the same checksum again"
touch /run/stop-b; wait
[ -e /run/b-failed ] && fail "filesystem 1 failed a read meanwhile"
echo "token: filesystem 1 never blinked"
