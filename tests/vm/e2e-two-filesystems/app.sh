#!/bin/sh
# Both filesystems are there, read-only.
/bin/encfs-init probe || exit 1
echo "two: $(cat /mnt/remote/model/test.txt)"
echo "two: $(cat /mnt/remote/scratch/README)"
if touch /mnt/remote/model/new 2>/dev/null; then echo "two: a read-only filesystem took a write"; exit 1; fi
echo "two: read-only refuses writes"
