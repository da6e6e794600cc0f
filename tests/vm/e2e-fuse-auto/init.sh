#!/bin/sh
# Start the in-guest blob server on 127.0.0.1, write the manifest with its port, then become encfs-init
# (exec keeps PID 1; nothing is mounted yet, so encfs-init sees a VM context and mounts what it needs).
ip link set lo up
/tests/guest_blob_server --serve /blobs/fs.img --port-file /run/blob.port &
i=0
while [ ! -s /run/blob.port ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
. /vmtest/render-manifest.sh
render_manifest -e "s/@PORT@/$(cat /run/blob.port)/"
exec /bin/encfs-init
