# Host side: a 96 MiB encrypted image (the size of the scenario's disk) with one small file, and its key.
set -euo pipefail
mkdir -p "$OUT/content"
printf 'This is a file inside the filesystem.\n' > "$OUT/content/test.txt"
head -c 32 /dev/urandom > "$OUT/key.bin"
"$ENCFS_INIT" image create --pbkdf pbkdf2 --size 96MiB --key-file "$OUT/key.bin" --from "$OUT/content" "$OUT/fs.img" >&2
