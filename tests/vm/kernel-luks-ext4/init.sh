#!/bin/sh
# Format a LUKS2 volume on a loop file, put ext4 on it, write, close, reopen read-only and read back.
# Proves: the module list (with soft deps) is enough, host tools run in the guest with their libraries,
# device-mapper and loop nodes appear without udev.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /run/cryptsetup
release=$(cat /etc/vmtest/release)
while read -r m; do insmod "/lib/modules/$release/$m" || echo "FAILED insmod $m"; done < /etc/vmtest/modules.load

run() { "$@" || { echo "luks-ext4: FAILED: $*"; sync; echo "vmtest: script exit status 1"; exec poweroff -f -n; }; }
run dd if=/dev/zero of=/tmp/disk.img bs=1M count=32 2>/dev/null
run dd if=/dev/urandom of=/tmp/key bs=64 count=1 2>/dev/null
run cryptsetup luksFormat -q --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
    --cipher aes-xts-plain64 --key-size 512 --sector-size 4096 --key-file /tmp/key /tmp/disk.img
run cryptsetup open --key-file /tmp/key /tmp/disk.img vol
# busybox sh runs its own applets before PATH (standalone shell): call the real mke2fs by path.
run /usr/sbin/mke2fs -q -t ext4 /dev/mapper/vol
run mount -t ext4 /dev/mapper/vol /mnt
echo "written-in-the-guest" > /mnt/file
run umount /mnt
run cryptsetup close vol
run cryptsetup open --readonly --key-file /tmp/key /tmp/disk.img vol
run mount -t ext4 -o ro /dev/mapper/vol /mnt
if [ "$(cat /mnt/file)" = written-in-the-guest ]; then
    echo "luks-ext4: read back ok"
    status=0
else
    echo "luks-ext4: FAILED: content differs"
    status=1
fi
umount /mnt
cryptsetup close vol
sync; echo "vmtest: script exit status $status"
exec poweroff -f -n
