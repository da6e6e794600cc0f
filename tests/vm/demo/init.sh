#!/bin/sh
# Start the in-guest blob server and the fake Azure (AMD chain, MAA, Key Vault, IMDS) on 127.0.0.1, hand the
# fake's host certificate and security policy over the production way (a security-context directory), write
# the manifest with their addresses, then become encfs-init (exec keeps PID 1). The fake's files live in
# /fake-azure, not /run: encfs-init mounts a fresh tmpfs on /run as PID 1 of a VM.
ip link set lo up
/tests/guest_blob_server --serve /blobs/fs.img --port-file /run/blob.port &
/tests/guest_fake_azure --key-file /keys/key.bin --out /fake-azure &
i=0
while { [ ! -s /run/blob.port ] || [ ! -s /fake-azure/env ]; } && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done
# The key stays with the fake vault: nothing else in the guest needs it.
rm -f /keys/key.bin
. /fake-azure/env
mkdir -p /security-context-test
cp /fake-azure/host-amd-cert-base64 /fake-azure/security-policy-base64 /security-context-test/
sed -e "s|@PORT@|$(cat /run/blob.port)|" -e "s|@IMDS@|$IMDS_URL|" -e "s|@MAA@|$MAA_URL|" -e "s|@VAULT@|$VAULT_URL|" \
    /etc/encfs-init/manifest.tmpl > /etc/encfs-init/manifest.toml
exec /bin/encfs-init
