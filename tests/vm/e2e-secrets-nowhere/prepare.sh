# Host side: a fresh random key for this run (only the in-guest fake Key Vault gets it), an image made with
# it, and the forms to look for: hex (lower, upper), base64 and base64url (unpadded, so the padded forms are
# matched too). They are written reversed, so that no file in the guest holds them as they are: the app
# turns them back in a pipe, never in a file, an argument or the environment.
set -euo pipefail
mkdir -p "$OUT/content"
printf 'This is a file inside the filesystem.\n' > "$OUT/content/test.txt"
head -c 32 /dev/urandom > "$OUT/key.bin"
"$ENCFS_INIT" image create --pbkdf pbkdf2 --key-file "$OUT/key.bin" --from "$OUT/content" "$OUT/fs.img" >&2
hex=$(od -An -v -tx1 "$OUT/key.bin" | tr -d ' \n')
b64=$(base64 -w0 "$OUT/key.bin" | tr -d '=')
{
    printf '%s\n' "$hex"
    printf '%s\n' "$hex" | tr a-f A-F
    printf '%s\n' "$b64"
    printf '%s\n' "$b64" | tr '+/' '-_'
} | rev > "$OUT/patterns.rev"
[ "$(wc -l < "$OUT/patterns.rev")" -eq 4 ]
