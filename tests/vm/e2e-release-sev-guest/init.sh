#!/bin/sh
# As e2e-release, but the SNP report comes from an emulated /dev/sev-guest: the fake Azure is also the fake
# AMD secure processor, a CUSE server (fuse + cuse loaded here, devtmpfs mounted here so that the node
# appears; encfs-init mounts devtmpfs again, the same instance). encfs-init finds /dev/sev-guest and runs its
# real provider: the sev crate's SNP_GET_REPORT ioctl with VMPL 0 (the vault's policy wants vmpl 0).
mount -t devtmpfs devtmpfs /dev
release=$(cat /etc/vmtest/release)
grep -E '/(fuse|cuse)\.ko$' /etc/vmtest/modules.load | while read -r f; do
    insmod "/lib/modules/$release/$f" || echo "init.sh: insmod $f failed"
done
FAKE_ARGS="--sev-guest"
. /vmtest/release-init.sh
