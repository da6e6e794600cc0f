#!/bin/sh
# The shared /init body of the key-release scenarios, sourced by their init.sh (`. /vmtest/release-init.sh`)
# after they set these:
#   BLOB_ARGS  more arguments for guest_blob_server (e.g. --path /c/fs.img)
#   FAKE_ARGS  more arguments for guest_fake_azure (e.g. --policy-hostdata HEX, --sev-guest)
#   LOG_DIR    when set, each server's output is also kept in LOG_DIR/<name>.log
#   BEFORE_EXEC  when set, a script sourced last, with the fake's IMDS_URL, MAA_URL and VAULT_URL set and the
#              manifest rendered, just before encfs-init starts (e2e-key-import imports its key there)
# It starts the in-guest blob server and the fake Azure (AMD chain, MAA, Key Vault, IMDS) on 127.0.0.1, hands
# the fake's host certificate and security policy over the production way (a security-context directory),
# fills the manifest template with their addresses, then becomes encfs-init (exec keeps PID 1). The fake's
# files live in /fake-azure, not /run: encfs-init mounts a fresh tmpfs on /run as PID 1 of a VM.
ip link set lo up
start() {
    name=$1
    shift
    if [ -n "$LOG_DIR" ]; then
        mkdir -p "$LOG_DIR"
        "$@" 2>&1 | tee "$LOG_DIR/$name.log" &
    else
        "$@" &
    fi
}
# shellcheck disable=SC2086 # the *_ARGS are word lists
start blob-server /tests/guest_blob_server --serve /blobs/fs.img $BLOB_ARGS --port-file /run/blob.port
# shellcheck disable=SC2086
start fake-azure /tests/guest_fake_azure --key-file /keys/key.bin --out /fake-azure $FAKE_ARGS
i=0
while { [ ! -s /run/blob.port ] || [ ! -s /fake-azure/env ]; } && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done
# The key stays with the fake vault: nothing else in the guest needs it.
rm -f /keys/key.bin
. /fake-azure/env
mkdir -p /security-context-test
cp /fake-azure/host-amd-cert-base64 /fake-azure/security-policy-base64 /security-context-test/
. /vmtest/render-manifest.sh
render_manifest -e "s|@PORT@|$(cat /run/blob.port)|" -e "s|@IMDS@|$IMDS_URL|" -e "s|@MAA@|$MAA_URL|" -e "s|@VAULT@|$VAULT_URL|"
# shellcheck disable=SC1090 # the scenario's own script
[ -z "$BEFORE_EXEC" ] || . "$BEFORE_EXEC"
exec /bin/encfs-init
