#!/bin/sh
# Boot 2's app: everything boot 1 wrote completely is there with its checksum.
d=/mnt/remote/data
[ -s $d/list ] || { echo "e2e: FAILED: no list of files"; exit 1; }
n=$(wc -l < $d/list)
if ! (cd $d && sha256sum -c list >/tmp/check.out 2>&1); then
    echo "e2e: FAILED: checksums differ"; cat /tmp/check.out; exit 1
fi
[ "$n" -eq 12 ] || { echo "e2e: FAILED: $n files listed, want 12"; exit 1; }
grep -q "This is a file inside the filesystem." $d/test.txt || { echo "e2e: FAILED: test.txt"; exit 1; }
echo "e2e: boot 2: all $n files intact after SIGTERM during a write and a new boot (big: $(wc -c < $d/big) bytes)"
