# Host side: two 64 MiB images made with the same key (the vault's oct-HSM key "demo"), each holding a 2 MiB
# random file; a large image and a tiny cache so that health reads reach the blob server.
set -euo pipefail
for n in a b; do
    mkdir -p "$OUT/$n"
    head -c 2097152 /dev/urandom > "$OUT/$n/data.bin"
done
head -c 32 /dev/urandom > "$OUT/key.bin"
for n in a b; do
    "$ENCFS_INIT" image create --pbkdf pbkdf2 --size 64MiB --key-file "$OUT/key.bin" --from "$OUT/$n" "$OUT/$n.img" >&2
done
