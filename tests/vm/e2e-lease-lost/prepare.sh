# Host side: a small encrypted image with one file, and its key.
set -euo pipefail
mkdir -p "$OUT/content"
printf 'This is a file inside the filesystem.\n' > "$OUT/content/test.txt"
head -c 32 /dev/urandom > "$OUT/key.bin"
"$ENCFS_INIT" image create --pbkdf pbkdf2 --size 32MiB --key-file "$OUT/key.bin" --from "$OUT/content" "$OUT/fs.img" >&2
