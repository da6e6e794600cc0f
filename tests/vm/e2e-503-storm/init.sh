#!/bin/sh
# The in-guest blob server with a 503 storm armed by the application: once /storm/arm exists and 2 MiB more
# have been read, every GET answers 503 ServerBusy for 20 s (start and end written to /storm). Then write the
# manifest with the port and become encfs-init (exec keeps PID 1). /storm is on the rootfs, not /run
# (encfs-init mounts a fresh tmpfs there).
ip link set lo up
mkdir -p /storm
/tests/guest_blob_server --serve /blobs/fs.img --path /c/fs.img --port-file /run/blob.port \
    --storm-arm /storm/arm --storm-after-bytes 2097152 --storm-secs 20 --storm-dir /storm &
i=0
while [ ! -s /run/blob.port ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
. /vmtest/render-manifest.sh
render_manifest -e "s/@PORT@/$(cat /run/blob.port)/"
exec /bin/encfs-init
