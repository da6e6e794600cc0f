#!/bin/sh
# Two in-guest blob servers serving the same sealed image, each replaceable by the application
# (--replace-on), the manifest pinning its root for both; then become encfs-init (exec keeps PID 1).
ip link set lo up
/tests/guest_blob_server --serve /blobs/fs.img --port-file /run/a.port --replace-on /blobs/replace-a &
/tests/guest_blob_server --serve /blobs/fs.img --port-file /run/b.port --replace-on /blobs/replace-b &
i=0
while { [ ! -s /run/a.port ] || [ ! -s /run/b.port ]; } && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done
. /verity/verity.env
. /vmtest/render-manifest.sh
render_manifest -e "s/@A@/$(cat /run/a.port)/" -e "s/@B@/$(cat /run/b.port)/" -e "s/@ROOT@/$ROOT/" \
    -e "s/@OFFSET@/$OFFSET/"
exec /bin/encfs-init
