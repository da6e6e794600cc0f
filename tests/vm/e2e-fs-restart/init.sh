#!/bin/sh
# Two in-guest blob servers (one per image; server a's pid for the application) and the fake Azure on
# 127.0.0.1, the security-context directory, the manifest; then become encfs-init (exec keeps PID 1).
ip link set lo up
# A scenario may give blob server a and the fake more arguments in /vmtest/blob-a-args and
# /vmtest/fake-azure-args.
/tests/guest_blob_server --serve /blobs/a.img --port-file /run/a.port $(cat /vmtest/blob-a-args 2>/dev/null) &
echo $! > /blobs/a.pid
/tests/guest_blob_server --serve /blobs/b.img --port-file /run/b.port &
/tests/guest_fake_azure --key-file /keys/key.bin --out /fake-azure $(cat /vmtest/fake-azure-args 2>/dev/null) &
i=0
while { [ ! -s /run/a.port ] || [ ! -s /run/b.port ] || [ ! -s /fake-azure/env ]; } && [ $i -lt 600 ]; do
    sleep 0.05; i=$((i+1))
done
rm -f /keys/key.bin
cp /run/a.port /blobs/a.port  # for the application, which has a /run of its own
. /fake-azure/env
mkdir -p /security-context-test
cp /fake-azure/host-amd-cert-base64 /fake-azure/security-policy-base64 /security-context-test/
. /vmtest/render-manifest.sh
render_manifest -e "s|@A@|$(cat /run/a.port)|" -e "s|@B@|$(cat /run/b.port)|" -e "s|@IMDS@|$IMDS_URL|" \
    -e "s|@MAA@|$MAA_URL|" -e "s|@VAULT@|$VAULT_URL|"
exec /bin/encfs-init
