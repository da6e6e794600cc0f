#!/bin/sh
# The verity-* scenarios' init: start the in-guest blob server, write the manifest with its port and the
# root hash and hash offset prepare.sh pinned, then become encfs-init (exec keeps PID 1).
ip link set lo up
/tests/guest_blob_server --serve /blobs/fs.img --port-file /run/blob.port &
i=0
while [ ! -s /run/blob.port ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
. /verity/verity.env
. /vmtest/render-manifest.sh
render_manifest -e "s/@PORT@/$(cat /run/blob.port)/" -e "s/@ROOT@/$ROOT/" -e "s/@OFFSET@/$OFFSET/" \
    -e "s/@CASE@/$CASE/"
exec /bin/encfs-init
