# Host side: a fresh random key for this run (only the in-guest fake Key Vault gets it), an image made with
# it, a fresh random key for the released secret (the fake vault's too), and the forms to look for, of those
# keys and of the image's volume key: hex (lower, upper), base64 and base64url (unpadded, so the padded forms are
# matched too). They are written reversed, so that no file in the guest holds them as they are: the app
# turns them back in a pipe, never in a file, an argument or the environment.
set -euo pipefail
mkdir -p "$OUT/content"
printf 'This is a file inside the filesystem.\n' > "$OUT/content/test.txt"
head -c 32 /dev/urandom > "$OUT/key.bin"
# The released secret's key (the fake vault's "nowhere-secret").
head -c 32 /dev/urandom > "$OUT/secret.bin"
"$ENCFS_INIT" image create --pbkdf pbkdf2 --key-file "$OUT/key.bin" --from "$OUT/content" "$OUT/fs.img" >&2
# The LUKS2 volume key, which is what dm-crypt holds, read out by cryptsetup (the oracle) into a file of this
# host-side scratch directory only; it is not packed.
cryptsetup luksDump --batch-mode --dump-volume-key --volume-key-file "$OUT/volume.key" \
    --key-file "$OUT/key.bin" "$OUT/fs.img" > /dev/null
[ "$(wc -c < "$OUT/volume.key")" -ge 32 ]
forms() {
    hex=$(od -An -v -tx1 "$1" | tr -d ' \n')
    b64=$(base64 -w0 "$1" | tr -d '=')
    printf '%s\n' "$hex"
    printf '%s\n' "$hex" | tr a-f A-F
    printf '%s\n' "$b64"
    printf '%s\n' "$b64" | tr '+/' '-_'
}
{ forms "$OUT/key.bin"; forms "$OUT/volume.key"; forms "$OUT/secret.bin"; } | rev > "$OUT/patterns.rev"
rm -f "$OUT/volume.key"
[ "$(wc -l < "$OUT/patterns.rev")" -eq 12 ]
