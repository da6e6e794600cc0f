#!/bin/sh
# The application: the readiness file says transport fuse over a loop device; the small file reads through
# dm-crypt -> loop -> FUSE -> cache -> HTTP; then big.bin is read over and over (page cache dropped before
# each pass) while encfs-init (test mode) is asked ten times to crash a FUSE serving thread holding a
# request. Every pass must succeed with the expected checksum.
/bin/encfs-init probe || exit 1
ready=/mnt/remote/encfs-init.ready
grep -q '"transport": "fuse"' $ready || { echo "e2e: readiness file without transport fuse:"; cat $ready; exit 1; }
grep -q '"block_device": "/dev/loop' $ready || { echo "e2e: readiness file without a loop device:"; cat $ready; exit 1; }
[ -e /dev/nbd0 ] && { echo "e2e: /dev/nbd0 exists: nbd was not withheld"; exit 1; }
echo "e2e: $(cat /mnt/remote/data/test.txt)"
want=$(cat /expect/big.sha256)
f=/mnt/remote/data/big.bin
rm -f /tmp/stop /tmp/bad /tmp/passes
(
    while [ ! -e /tmp/stop ]; do
        echo 3 > /proc/sys/vm/drop_caches
        if ! got=$(sha256sum "$f"); then echo "e2e: read FAILED"; touch /tmp/bad; break; fi
        got=${got%% *}
        if [ "$got" != "$want" ]; then echo "e2e: checksum FAILED: $got"; touch /tmp/bad; break; fi
        echo pass >> /tmp/passes
    done
) &
reader=$!
for i in 1 2 3 4 5 6 7 8 9 10; do
    sleep 1
    touch /run/encfs-init/test-sever-nbd
    n=0
    while [ -e /run/encfs-init/test-sever-nbd ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n+1)); done
    [ -e /run/encfs-init/test-sever-nbd ] && { echo "e2e: encfs-init did not take sever request $i"; exit 1; }
done
sleep 2
touch /tmp/stop
wait $reader
[ -e /tmp/bad ] && exit 1
passes=$(wc -l < /tmp/passes)
[ "$passes" -ge 1 ] || { echo "e2e: no complete pass"; exit 1; }
echo "e2e: $passes full reads of big.bin across 10 crashed FUSE serving threads, checksums equal, every read succeeded"
