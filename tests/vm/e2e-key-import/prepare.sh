# Host side: a small encrypted image made with the product's own image tool, and its raw key. In the guest,
# `encfs-init key import` puts the key into the fake Key Vault (as the oct-HSM key "demo") and the file is
# removed; the boot gets the key by key release.
set -euo pipefail
mkdir -p "$OUT/content"
printf 'This is a file inside the filesystem.\n' > "$OUT/content/test.txt"
head -c 32 /dev/urandom > "$OUT/key.bin"
"$ENCFS_INIT" image create --pbkdf pbkdf2 --key-file "$OUT/key.bin" --from "$OUT/content" "$OUT/fs.img" >&2
