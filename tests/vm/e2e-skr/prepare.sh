# Host side: as e2e-release (an image and its disk key "demo"), plus the key "skr" the app gets through the
# SKR API: fixed bytes, so that scenario.toml can forbid its forms on the console, and their SHA-256, which
# the app compares with what the API released.
set -euo pipefail
mkdir -p "$OUT/content"
printf 'This is a file inside the filesystem.\n' > "$OUT/content/test.txt"
head -c 32 /dev/urandom > "$OUT/key.bin"
"$ENCFS_INIT" image create --pbkdf pbkdf2 --key-file "$OUT/key.bin" --from "$OUT/content" "$OUT/fs.img" >&2
printf 'skr-api-test-key-0123456789abcde' > "$OUT/skr.key"
[ "$(wc -c < "$OUT/skr.key")" -eq 32 ]
sha256sum "$OUT/skr.key" | cut -d' ' -f1 > "$OUT/skr.sha256"
