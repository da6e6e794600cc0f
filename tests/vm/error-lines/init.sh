#!/bin/sh
# The failures of issue 14's error-line test that need a kernel. encfs-init runs as a child of this script
# (a process context), and the script checks each failure's last line: the innermost cause (the OS error)
# appears in it exactly once.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
release=$(cat /etc/vmtest/release)
while read -r m; do insmod "/lib/modules/$release/$m" || echo "error-lines: FAIL: insmod $m"; done < /etc/vmtest/modules.load
ip link set lo up
status=0
fail() { echo "error-lines: FAIL: $*"; status=1; }

# once NAME NEEDLE FILE: the last line of FILE holds NEEDLE exactly once.
once() {
    line=$(grep -v '^$' "$3" | tail -n 1)
    n=$(printf '%s\n' "$line" | grep -o "$2" | wc -l)
    if [ "$n" -eq 1 ]; then
        echo "error-lines: $1: once in: $line"
    else
        fail "$1: \"$2\" $n times in: $line"
        cat "$3"
    fi
}

# 1. A device only root may open, and `report` run as nobody.
mknod -m 600 /dev/sev-guest c 1 3
/usr/bin/setpriv --reuid=65534 --regid=65534 --clear-groups /bin/encfs-init report >/tmp/report.out 2>&1
rc=$?
[ "$rc" -ne 0 ] || fail "report as nobody exited 0"
once "permission denied" "Permission denied (os error 13)" /tmp/report.out
rm -f /dev/sev-guest

# 2. A stale mapping with the name encfs-init gives filesystem 0.
/usr/sbin/dmsetup create remote-crypt-0 --table "0 8 error" || fail "dmsetup create"
/tests/guest_blob_server --serve /blobs/fs.img --port-file /run/blob.port &
i=0
while [ ! -s /run/blob.port ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
mkdir -p /run/error-lines /mnt/remote
sed "s/@PORT@/$(cat /run/blob.port)/" /etc/encfs-init/manifest.tmpl > /tmp/manifest.toml
{ RUST_LOG=info /bin/encfs-init run --manifest /tmp/manifest.toml 2>&1; echo $? > /tmp/run.rc; } | tee /tmp/run.out
rc=$(cat /tmp/run.rc)
[ "$rc" -eq 3 ] || fail "run exited $rc, not 3"
grep 'boot failed' /tmp/run.out > /tmp/boot-failed.out
[ "$(wc -l < /tmp/boot-failed.out)" -eq 1 ] || fail "not one 'boot failed' line"
grep -q ': dm-crypt' /tmp/boot-failed.out || fail "the line does not name the dm-crypt step"
# (musl's text for EBUSY is "Resource busy", glibc's "Device or resource busy": match the number.)
once "EBUSY" "(os error 16)" /tmp/boot-failed.out
grep -q 'DM_DEV_CREATE: [A-Za-z ]*busy (os error 16); fix: .*dmsetup remove remote-crypt-0' /tmp/boot-failed.out \
    || fail "the dm line does not name the ioctl and the fix"
! grep -q 'DeviceInfo' /tmp/boot-failed.out || fail "the dm line dumps the ioctl headers"
# Fail closed: only the stale mapping is left, no NBD device is connected, no readiness file.
left=$(/usr/sbin/dmsetup ls | grep -v '^remote-crypt-0' | grep -v 'No devices found')
attached=$(cat /sys/block/nbd*/pid 2>/dev/null)
if [ -z "$left" ] && [ -z "$attached" ] && [ ! -e /run/error-lines/ready ]; then
    echo "error-lines: nothing left attached"
else
    fail "left behind: dm [$left] nbd pids [$attached] ready [$(ls /run/error-lines)]"
fi
sync; echo "vmtest: script exit status $status"
exec poweroff -f -n
