# Host side: an image holding a 16 MiB random file, its SHA-256 computed here, and the raw key.
set -euo pipefail
mkdir -p "$OUT/content"
head -c 16777216 /dev/urandom > "$OUT/content/big.bin"
sha256sum "$OUT/content/big.bin" | cut -d' ' -f1 > "$OUT/big.sha256"
head -c 32 /dev/urandom > "$OUT/key.bin"
"$ENCFS_INIT" image create --pbkdf pbkdf2 --key-file "$OUT/key.bin" --from "$OUT/content" "$OUT/fs.img" >&2
