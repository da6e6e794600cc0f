#!/bin/sh
# The application: checks the lease from the outside (readiness file, probe, a second writer, a reader),
# then has the blob server break the lease and checks that writes fail and that it is reported.
r=/mnt/remote/encfs-init.ready
url="http://127.0.0.1:$(cat /lease/port)/c/fs.img?sv=2020-10-02&sr=b&sp=rw&sig=dGVzdA%3D%3D"
fail() { echo "lease: FAILED: $*"; cat $r; exit 1; }
. /etc/vmtest/lib.sh

/bin/encfs-init probe || fail "probe fails with the lease held"
grep -q '"lease": "held"' $r || fail "the readiness file does not say the lease is held"
echo "lease: held, in $r"

# A second writer of the same blob is refused at open; a reader is not.
out=$(timeout 20 /bin/encfs-init nbd serve "$url" --listen 127.0.0.1:0 2>&1 </dev/null) && fail "a second writer was let in: $out"
case "$out" in
    *"is leased by another writer (HTTP 409 LeaseAlreadyPresent)"*"; fix: stop the other writer"*) ;;
    *) fail "second writer: $out" ;;
esac
case "$out" in *dGVzdA*) fail "the second writer's error shows the SAS" ;; esac
echo "lease: second writer refused: $out"
out=$(timeout 3 /bin/encfs-init nbd serve "$url" --read-only --listen 127.0.0.1:0 2>&1 </dev/null)
case "$out" in *"listening on"*) ;; *) fail "reader: $out" ;; esac
echo "lease: a reader is let in"

head -c 262144 /dev/urandom > /mnt/remote/data/before || fail "write before the break"
dd if=/mnt/remote/data/before of=/mnt/remote/data/before2 bs=64k conv=fsync 2>/dev/null || fail "fsync before the break"
echo "lease: writes go through"

touch /lease/break
wait_for 10 test ! -e /lease/break || fail "the blob server did not break the lease"
dd if=/dev/urandom of=/mnt/remote/data/after bs=64k count=4 conv=fsync 2>/dev/null && fail "a write after the break went through"
echo "lease: a write after the break fails"

sleep 3
grep -q '"lease": "lost"' $r || fail "the readiness file does not say lost"
/bin/encfs-init probe 2>/dev/null && fail "probe passes with the lease lost"
echo "lease: the readiness file says lost and probe fails"
