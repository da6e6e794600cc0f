#!/bin/sh
# Two boots with one disk (/dev/vda): the blob lives there, served by the in-guest blob server, which
# writes every Put Page through to the disk before acknowledging it (--persist). Boot 1 copies the image
# onto the disk and mounts it read-write (the app writes, then SIGTERMs PID 1 during a large write); boot 2
# mounts it read-only and checks what boot 1 wrote. The rig sets encfs_boot=N on the kernel command line,
# which the kernel hands to init as an environment variable.
ip link set lo up
mount -t devtmpfs devtmpfs /dev
. /vmtest/vda.sh
disk_ready "e2e: FAILED"
if [ "$encfs_boot" = 1 ]; then
    dd if=/blobs/fs.img of=/dev/vda bs=1M conv=fsync 2>/dev/null
    rw=true; app=/writer.sh
else
    rw=false; app=/verify.sh
fi
/tests/guest_blob_server --serve /dev/vda --persist --port-file /run/blob.port &
i=0
while [ ! -s /run/blob.port ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
. /vmtest/render-manifest.sh
render_manifest -e "s/@PORT@/$(cat /run/blob.port)/" -e "s/@RW@/$rw/" -e "s|@APP@|$app|"
exec /bin/encfs-init
