# Host side: a small encrypted image made with the product's own image tool, and its raw key.
set -euo pipefail
mkdir -p "$OUT/content"
printf 'This is a file inside the filesystem.\n' > "$OUT/content/test.txt"
# A fixed key, so the scenario can check that it shows up nowhere (console, /proc/*/environ, cmdline).
printf %s "encfs-init-e2e-raw-key-0123456ab" > "$OUT/key.bin"
"$ENCFS_INIT" image create --key-file "$OUT/key.bin" --from "$OUT/content" "$OUT/fs.img" >&2
