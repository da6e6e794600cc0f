# Host side: an encrypted image holding a small text file and a 12 MiB file of random data, its SHA-256,
# and a random raw key.
set -euo pipefail
mkdir -p "$OUT/content"
printf 'This is a file inside the filesystem.\n' > "$OUT/content/test.txt"
head -c $((12 * 1024 * 1024)) /dev/urandom > "$OUT/content/big.bin"
sha256sum "$OUT/content/big.bin" | cut -d' ' -f1 > "$OUT/big.sha256"
head -c 32 /dev/urandom > "$OUT/key.bin"
"$ENCFS_INIT" image create --pbkdf pbkdf2 --key-file "$OUT/key.bin" --from "$OUT/content" "$OUT/fs.img" >&2
