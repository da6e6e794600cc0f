# Host side of the *-secret scenarios: an encrypted image (as e2e-release) and its raw key for the fake
# vault's disk key "demo"; two more keys for the fake vault (--extra-key): an oct key (32 random bytes) and
# an RSA-2048 key (PKCS#8 DER), made fresh with openssl; and /expect/sha256: what each secret file must
# hold, as SHA-256 (the values themselves are not packed anywhere but the fake vault's key files, which it
# removes once read). The PEM oracle is openssl's own PKCS#8 PEM of the key.
set -euo pipefail
mkdir -p "$OUT/content"
printf 'This is a file inside the filesystem.\n' > "$OUT/content/test.txt"
head -c 32 /dev/urandom > "$OUT/key.bin"
"$ENCFS_INIT" image create --pbkdf pbkdf2 --key-file "$OUT/key.bin" --from "$OUT/content" "$OUT/fs.img" >&2
head -c 32 /dev/urandom > "$OUT/oct.bin"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 2>/dev/null |
    openssl pkcs8 -topk8 -nocrypt -outform DER > "$OUT/rsa.der"
sha() { sha256sum | cut -d' ' -f1; }
{
    echo "raw $(sha < "$OUT/oct.bin")"
    echo "base64 $(base64 -w0 "$OUT/oct.bin" | sha)"
    echo "jwk-k $(base64 -w0 "$OUT/oct.bin" | tr '+/' '-_' | tr -d '=' | sha)"
    echo "pem $(openssl pkcs8 -topk8 -nocrypt -inform DER -in "$OUT/rsa.der" | sha)"
    echo "rsa-raw $(sha < "$OUT/rsa.der")"
} > "$OUT/sha256"
