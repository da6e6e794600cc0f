#!/bin/sh
# The in-guest blob server (it breaks the blob's lease when the app asks, by creating /lease/break), the
# manifest with its port; then become encfs-init (exec keeps PID 1). /lease, not /run: encfs-init mounts a
# tmpfs on /run, which the server, started before, would not see.
ip link set lo up
mkdir -p /lease
/tests/guest_blob_server --serve /blobs/fs.img --port-file /lease/port --break-lease-on /lease/break &
i=0
while [ ! -s /lease/port ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
. /vmtest/render-manifest.sh
render_manifest -e "s/@PORT@/$(cat /lease/port)/"
exec /bin/encfs-init
