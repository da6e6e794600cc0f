#!/bin/sh
# As e2e-release, but the SNP report comes from an emulated /dev/sev-guest: the fake Azure is also the fake
# AMD secure processor, a CUSE server (fuse + cuse loaded here, devtmpfs mounted here so that the node
# appears; encfs-init mounts devtmpfs again, the same instance). encfs-init finds /dev/sev-guest and runs its
# real provider: the sev crate's SNP_GET_REPORT ioctl with VMPL 0 (the vault's policy wants vmpl 0).
ip link set lo up
mount -t devtmpfs devtmpfs /dev
release=$(cat /etc/vmtest/release)
grep -E '/(fuse|cuse)\.ko$' /etc/vmtest/modules.load | while read -r f; do
    insmod "/lib/modules/$release/$f" || echo "init.sh: insmod $f failed"
done
/tests/guest_blob_server --serve /blobs/fs.img --port-file /run/blob.port &
/tests/guest_fake_azure --key-file /keys/key.bin --out /fake-azure --sev-guest &
i=0
while { [ ! -s /run/blob.port ] || [ ! -s /fake-azure/env ]; } && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done
rm -f /keys/key.bin
. /fake-azure/env
mkdir -p /security-context-test
cp /fake-azure/host-amd-cert-base64 /fake-azure/security-policy-base64 /security-context-test/
sed -e "s|@PORT@|$(cat /run/blob.port)|" -e "s|@IMDS@|$IMDS_URL|" -e "s|@MAA@|$MAA_URL|" -e "s|@VAULT@|$VAULT_URL|" \
    /etc/encfs-init/manifest.tmpl > /etc/encfs-init/manifest.toml
exec /bin/encfs-init
