# Host side of the demo: `encfs-init image create` turns a directory holding test.txt into a LUKS2 image
# (upstream's format: aes-xts-plain64, 4096-byte sectors, pbkdf2), keyed with a fresh raw 32-byte key. The
# key goes only to the in-guest fake Key Vault (the oct-HSM key "demo"); encfs-init gets it by secure key
# release after attestation, as in Azure.
set -euo pipefail
mkdir -p "$OUT/content"
printf 'This is a file inside the filesystem.\n' > "$OUT/content/test.txt"
head -c 32 /dev/urandom > "$OUT/key.bin"
"$ENCFS_INIT" image create --pbkdf pbkdf2 --key-file "$OUT/key.bin" --from "$OUT/content" "$OUT/fs.img" >&2
