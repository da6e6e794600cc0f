#!/bin/sh
# Boot 1's app: writes 1 MiB files, recording each one's checksum in `list` once the file is complete,
# then starts a 64 MiB write and, while it runs, sends SIGTERM to PID 1 (encfs-init), which forwards it
# to this process group: the large write is cut short. encfs-init must then flush everything to the blob
# service before it ends processes, unmounts and powers off.
d=/mnt/remote/data
trap 'echo "e2e: writer got SIGTERM during the large write"; exit 0' TERM
i=0
while [ $i -lt 12 ]; do
    i=$((i+1))
    head -c 1048576 /dev/urandom > $d/f$i
    (cd $d && sha256sum f$i) >> $d/list
done
dd if=/dev/urandom of=$d/big bs=1M count=64 2>/dev/null &
sleep 1
echo "e2e: $(wc -l < $d/list) files written; SIGTERM to PID 1 during the large write"
kill -TERM 1
wait
# Not reached when the trap runs.
echo "e2e: FAILED: the large write finished before SIGTERM arrived"
exit 1
