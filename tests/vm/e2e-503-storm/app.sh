#!/bin/sh
# The application: with the page cache dropped, arm the blob server's storm and read a 16 MiB file through
# the mount. The storm starts after 2 MiB, so it hits the middle of the read; the read must come back with
# the right checksum, after the storm is over, and the blob server must have answered 503s meanwhile.
/bin/encfs-init probe || exit 1
sync
echo 3 > /proc/sys/vm/drop_caches
want=$(cat /expect/big.sha256)
start=$(date +%s)
touch /storm/arm
got=$(sha256sum /mnt/remote/data/big.bin) || { echo "e2e: FAIL: reading big.bin failed during the storm"; exit 1; }
got=${got%% *}
took=$(( $(date +%s) - start ))
[ -s /storm/started ] || { echo "e2e: FAIL: the storm never started (read took $took s)"; exit 1; }
[ -s /storm/over ] || { echo "e2e: FAIL: the read ended before the storm did (read took $took s)"; exit 1; }
n503=$(cat /storm/over)
[ "$n503" -gt 0 ] || { echo "e2e: FAIL: no request was answered 503 during the storm"; exit 1; }
[ "$took" -ge 20 ] || { echo "e2e: FAIL: the read took $took s, shorter than the 20 s storm"; exit 1; }
if [ "$got" != "$want" ]; then
    echo "e2e: FAIL: checksum $got, want $want"
    exit 1
fi
echo "e2e: big.bin read through a 20 s 503 storm: checksum equal ($n503 requests answered 503, read took $took s)"
