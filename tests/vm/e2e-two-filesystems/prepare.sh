# Host side: two images made with the same key (the vault's oct-HSM key "demo"): a read-only model and a
# read-write scratch disk.
set -euo pipefail
mkdir -p "$OUT/model" "$OUT/scratch"
printf 'This is a file inside the filesystem.\n' > "$OUT/model/test.txt"
printf 'scratch\n' > "$OUT/scratch/README"
head -c 32 /dev/urandom > "$OUT/key.bin"
"$ENCFS_INIT" image create --pbkdf pbkdf2 --key-file "$OUT/key.bin" --from "$OUT/model" "$OUT/model.img" >&2
"$ENCFS_INIT" image create --pbkdf pbkdf2 --size 48MiB --key-file "$OUT/key.bin" --from "$OUT/scratch" "$OUT/scratch.img" >&2
