#!/bin/sh
# Looks at the running kernel the way encfs-init's probes do, and at its own config (/proc/config.gz).
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
status=0
fail() { echo "uvm-kernel: FAIL: $*"; status=1; }
rel=$(uname -r)
echo "uvm-kernel: release $rel"
case "$rel" in *-azure-uvm-rig) ;; *) fail "not the azure-uvm rig kernel: $rel" ;; esac
cfg=$(zcat /proc/config.gz) || fail "no /proc/config.gz"
for off in BLK_DEV_NBD BLK_DEV_UBLK CUSE CONFIGFS_FS CRYPTO_AES_NI_INTEL; do
    echo "$cfg" | grep -q "^CONFIG_$off=" && fail "CONFIG_$off is set"
done
for on in BLK_DEV_DM DM_CRYPT DM_VERITY DM_INTEGRITY BLK_DEV_LOOP FUSE_FS EXT4_FS KEYS; do
    echo "$cfg" | grep -q "^CONFIG_$on=y$" || fail "CONFIG_$on is not built in"
done
[ -e /dev/nbd0 ] && fail "/dev/nbd0 exists"
grep -qw nbd /proc/devices && fail "nbd in /proc/devices"
[ -e /dev/cuse ] && fail "/dev/cuse exists"
[ -d /sys/kernel/config ] && fail "/sys/kernel/config exists"
grep -q aesni /proc/crypto && fail "an AES-NI driver in /proc/crypto"
grep -q "aes-generic" /proc/crypto || fail "no aes-generic in /proc/crypto"
[ -s /proc/modules ] && fail "modules loaded: $(cat /proc/modules)"
for d in /dev/mapper/control /dev/loop-control /dev/fuse; do
    [ -e $d ] || fail "$d missing"
done
[ $status = 0 ] && echo "uvm-kernel: no NBD, no CUSE, no configfs, no AES-NI, no module loaded; dm, loop, FUSE, dm-crypt, dm-verity, dm-integrity present"
sync; echo "vmtest: script exit status $status"
poweroff -f -n
