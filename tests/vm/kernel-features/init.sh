#!/bin/sh
# Load every packed module in the order the rig computed from modules.dep (/etc/vmtest/modules.load), then
# check that devtmpfs shows the nodes the product needs. Prints the verdict line the rig reads, powers off.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
release=$(cat /etc/vmtest/release)
status=0
while read -r m; do
    if insmod "/lib/modules/$release/$m"; then echo "loaded $m"; else echo "FAILED insmod $m"; status=1; fi
done < /etc/vmtest/modules.load
for m in dm_mod dm_crypt nbd; do
    grep -q "^$m " /proc/modules || { echo "NOT LOADED $m"; status=1; }
done
for dev in /dev/mapper/control /dev/nbd0; do
    if [ -e "$dev" ]; then echo "present $dev"; else echo "MISSING $dev"; status=1; fi
done
sync; echo "vmtest: script exit status $status"
exec poweroff -f -n
