#!/bin/sh
# Sourced by the *-secret scenarios' init.sh once it has set
#   SECRET_MODE  "ok" (the application checks its secrets, then encfs-init gets SIGTERM) or "denied" (a
#                secret's key is not in the vault: the boot must fail closed by itself)
# The rig's PID 1 (this script) sets up what a container runtime would (proc, sys, dev, /run, the modules),
# starts the in-guest blob server and fake Azure (with the extra keys of ../common/secret-prepare.sh), hands
# over the security context, renders the manifest, and runs encfs-init as its child (a process, not PID 1),
# so that after encfs-init has ended it can check what is left: no tmpfs, no link, no filesystem, no dm
# device, no readiness file. It relays encfs-init's exit status as the verdict (verdict_by = "script").
say() { echo "secret-init: $*"; }
fail() { echo "secret-init: FAILED: $*"; }
. /etc/vmtest/lib.sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
ip link set lo up
release=$(uname -r)
if [ -s /etc/vmtest/modules.load ]; then
    while read -r m; do insmod "/lib/modules/$release/$m" || fail "insmod $m"; done < /etc/vmtest/modules.load
fi
/tests/guest_blob_server --serve /blobs/fs.img --port-file /run/blob.port &
/tests/guest_fake_azure --key-file /keys/key.bin --out /fake-azure \
    --extra-key oct-secret:oct-HSM:/keys/oct.bin --extra-key rsa-secret:RSA-HSM:/keys/rsa.der &
wait_for 30 test -s /run/blob.port || fail "the blob server did not start"
wait_for 30 test -s /fake-azure/env || fail "the fake Azure did not start"
rm -f /keys/key.bin
for k in /keys/oct.bin /keys/rsa.der; do [ -e "$k" ] && fail "$k is still there: the fake vault removes it"; done
. /fake-azure/env
mkdir -p /security-context-test /mnt/remote
cp /fake-azure/host-amd-cert-base64 /fake-azure/security-policy-base64 /security-context-test/
. /vmtest/render-manifest.sh
render_manifest -e "s|@PORT@|$(cat /run/blob.port)|" -e "s|@IMDS@|$IMDS_URL|" -e "s|@MAA@|$MAA_URL|" -e "s|@VAULT@|$VAULT_URL|"

/bin/encfs-init run &
epid=$!
ended() { [ ! -e /proc/"$epid" ] || [ "$(cut -d' ' -f3 /proc/"$epid"/stat 2>/dev/null)" = Z ]; }
app_done_or_ended() { [ -e /run/app.done ] || ended; }
if [ "$SECRET_MODE" = ok ]; then
    wait_for 240 app_done_or_ended || fail "the application did not finish its checks"
    if ended; then
        fail "encfs-init ended before SIGTERM"
    else
        # While running: the tmpfs is there, published.
        grep -q ' /mnt/remote/.secrets tmpfs ' /proc/mounts && say "the secrets' tmpfs is mounted while running"
        kill -TERM "$epid"
    fi
fi
wait "$epid"
status=$?
say "encfs-init exited with status $status"
if grep -q '/mnt/remote/\.secrets' /proc/mounts; then
    fail "the secrets' tmpfs is still mounted: $(grep '/mnt/remote/.secrets' /proc/mounts)"
elif [ -e /mnt/remote/.secrets ] || [ -L /mnt/remote/secrets ]; then
    fail "left behind: $(ls -la /mnt/remote)"
else
    say "the secrets' tmpfs is unmounted and its link removed"
fi
if grep -q '/mnt/remote/\.filesystem-' /proc/mounts || ls /sys/block | grep -q '^dm-'; then
    fail "a filesystem is still set up"
else
    say "no filesystem or dm device left"
fi
[ -e /mnt/remote/encfs-init.ready ] && fail "a readiness file is left" || say "no readiness file"
sync; echo "vmtest: script exit status $status"
poweroff -f -n
