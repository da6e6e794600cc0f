#!/bin/sh
# The application, after readiness: the SKR API is up (started before the readiness file). It calls it as
# upstream's SKR clients do (host names without a scheme, as upstream's API takes them): /status,
# /attest/maa, /key/release of "skr", and checks the key against the SHA-256 the host wrote.
/bin/encfs-init probe || { echo "skr-client: FAIL: not ready"; exit 1; }
echo "e2e: $(cat /mnt/remote/data/test.txt)"
. /fake-azure/env
exec /tests/guest_skr_client --api 127.0.0.1:8080 --maa "${MAA_URL#https://}" --vault "${VAULT_URL#https://}" \
    --kid skr --expect-sha256 /expect/skr.sha256
