# Host side: a good image whose data segment is then rewritten to cipher_null (the CVE-2025-59054 class of
# attack by whoever controls the blob), with both header checksums recomputed so only the allowlist stands
# between the header and the kernel.
set -euo pipefail
mkdir -p "$OUT/content"
printf 'This is a file inside the filesystem.\n' > "$OUT/content/test.txt"
head -c 32 /dev/urandom > "$OUT/key.bin"
"$ENCFS_INIT" image create --pbkdf pbkdf2 --key-file "$OUT/key.bin" --from "$OUT/content" "$OUT/fs.img" >&2
python3 - "$OUT/fs.img" <<'PY'
import hashlib, json, struct, sys
path = sys.argv[1]
with open(path, "r+b") as f:
    first = f.read(4096)
    hdr_size = struct.unpack(">Q", first[8:16])[0]
    for off in (0, hdr_size):
        f.seek(off)
        area = bytearray(f.read(hdr_size))
        text = bytes(area[4096:]).rstrip(b"\0")
        doc = json.loads(text)
        doc["segments"]["0"]["encryption"] = "cipher_null-ecb"
        new = json.dumps(doc, separators=(",", ":")).encode()
        assert len(new) <= hdr_size - 4096
        area[4096:] = new + b"\0" * (hdr_size - 4096 - len(new))
        area[448:448 + 64] = b"\0" * 64
        area[448:448 + 32] = hashlib.sha256(bytes(area)).digest()
        f.seek(off)
        f.write(area)
PY
