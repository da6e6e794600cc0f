#!/bin/sh
# verity-seal: an image made by cryptsetup as upstream's generatefs.sh makes it (LUKS2, aes-xts-plain64,
# 4096-byte sectors, pbkdf2 with 1000 iterations, the raw 32-byte key file as the passphrase, ext4 inside),
# sealed by `encfs-init image seal`, checked by Debian's `veritysetup verify` (the oracle), then pinned and
# mounted by encfs-init. The host has no device-mapper, so the image is made here, in the guest.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /run/cryptsetup /verity /blobs /keys /mnt/img
release=$(uname -r)
while read -r m; do insmod "/lib/modules/$release/$m" || echo "verity-seal: FAILED insmod $m"; done \
    < /etc/vmtest/modules.load

fail() { echo "verity-seal: FAILED: $*"; sync; echo "vmtest: script exit status 1"; exec poweroff -f -n; }
run() { "$@" || fail "$*"; }
img=/blobs/fs.img
run dd if=/dev/urandom of=/keys/key.bin bs=32 count=1 2>/dev/null
run dd if=/dev/zero of=$img bs=1M count=64 2>/dev/null
# generatefs.sh's options (busybox sh runs its own applets first: the host tools by full path).
run /usr/sbin/cryptsetup luksFormat --type luks2 --key-file /keys/key.bin --batch-mode --sector-size 4096 \
    --cipher aes-xts-plain64 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 $img
run /usr/sbin/cryptsetup open --key-file /keys/key.bin $img seal
run /usr/sbin/mke2fs -q -t ext4 /dev/mapper/seal
run mount -t ext4 /dev/mapper/seal /mnt/img
printf 'This is a file inside the filesystem.\n' > /mnt/img/test.txt
# a.txt: 256 KiB of numbered lines (the app compares it with /verity/a.txt).
awk 'BEGIN { for (i = 0; i < 4096; i++) printf "verity line %08d: the quick brown fox jumps ov\n", i }' \
    > /verity/a.txt
run cp /verity/a.txt /mnt/img/a.txt
run umount /mnt/img
run /usr/sbin/cryptsetup close seal
echo "verity-seal: cryptsetup image made"

/bin/encfs-init image seal $img > /run/seal.out || fail "encfs-init image seal"
cat /run/seal.out
ROOT=$(sed -n 's/^verity_root_hash = "\([0-9a-f]*\)"$/\1/p' /run/seal.out)
OFFSET=$(sed -n 's/^verity_hash_offset = \([0-9]*\)$/\1/p' /run/seal.out)
[ ${#ROOT} -eq 64 ] && [ -n "$OFFSET" ] || fail "no manifest lines from image seal"
[ "$OFFSET" -eq $((64 << 20)) ] || fail "verity_hash_offset $OFFSET is not the image's size"
run /usr/sbin/veritysetup verify $img $img "$ROOT" --hash-offset="$OFFSET"
echo "verity-seal: veritysetup verify accepts the sealed image"
printf 'ROOT=%s\nOFFSET=%s\nCASE=ok\n' "$ROOT" "$OFFSET" > /verity/verity.env

# encfs-init must see the kernel's init context (nothing mounted) so that it mounts, and powers off at the end.
run umount /dev
run umount /sys
run umount /proc
. /vmtest/verity-init.sh
