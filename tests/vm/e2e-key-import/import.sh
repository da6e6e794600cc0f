#!/bin/sh
# Sourced by release-init.sh before encfs-init starts: import the host-made oct key as "demo" the way a user
# does, with the default release policy on the security policy's digest (from the base64 policy file), the
# vault token from (the fake) IMDS, and the fake's CA. Then the key file goes: only the vault holds the key.
cat > /fake-azure/key-import.toml <<CONFIG
kid = "demo"
kty = "oct-HSM"
vault = "$VAULT_URL"
authority = "$MAA_URL"
cce_policy_file = "/fake-azure/security-policy-base64"
[network]
ca_bundle = "/fake-azure/ca.pem"
[endpoints]
imds = "$IMDS_URL"
CONFIG
/bin/encfs-init key import --config /fake-azure/key-import.toml --key-file /keys/import.bin --imds
echo "key import: exit status $?"
rm -f /keys/import.bin
