#!/bin/sh
# The in-guest blob server serves the image only at /c/fs.img (any other path: 404 BlobNotFound, as Azure);
# the manifest names /c/missing.img. Write the manifest with the port, then become encfs-init (exec keeps
# PID 1; nothing is mounted yet, so encfs-init sees a VM context).
ip link set lo up
/tests/guest_blob_server --serve /blobs/fs.img --path /c/fs.img --port-file /run/blob.port &
i=0
while [ ! -s /run/blob.port ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
. /vmtest/render-manifest.sh
render_manifest -e "s/@PORT@/$(cat /run/blob.port)/"
exec /bin/encfs-init
