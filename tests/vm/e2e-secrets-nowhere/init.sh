#!/bin/sh
# As e2e-release: the in-guest blob server and fake Azure on 127.0.0.1, the key only in the fake vault (its
# file removed once the fake read it), then become encfs-init. The helpers' console output is also kept in
# /var/log, and encfs-init logs to /var/log/encfs-init.log ([log] file), so that the app's search of every
# file covers every log of the run.
ip link set lo up
mkdir -p /var/log
/tests/guest_blob_server --serve /blobs/fs.img --path /c/fs.img --port-file /run/blob.port 2>&1 | tee /var/log/blob-server.log &
/tests/guest_fake_azure --key-file /keys/key.bin --out /fake-azure 2>&1 | tee /var/log/fake-azure.log &
i=0
while { [ ! -s /run/blob.port ] || [ ! -s /fake-azure/env ]; } && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done
rm -f /keys/key.bin
. /fake-azure/env
mkdir -p /security-context-test
cp /fake-azure/host-amd-cert-base64 /fake-azure/security-policy-base64 /security-context-test/
sed -e "s|@PORT@|$(cat /run/blob.port)|" -e "s|@IMDS@|$IMDS_URL|" -e "s|@MAA@|$MAA_URL|" -e "s|@VAULT@|$VAULT_URL|" \
    /etc/encfs-init/manifest.tmpl > /etc/encfs-init/manifest.toml
exec /bin/encfs-init
