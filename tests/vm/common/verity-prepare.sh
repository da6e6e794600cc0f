# Host side of the verity-* scenarios (sourced by each scenario's prepare.sh, which sets VERITY_CASE): an
# encrypted image made by `encfs-init image create`, sealed with Debian's `veritysetup format` over the whole
# image (LUKS2 header included) with the hash tree after it in the same file (the oracle's layout), then
# changed as the case says. With VERITY_SEALER=encfs-init (default: veritysetup) our own `image create
# --verity` makes and seals it in one go and the manifest pins what it printed; `veritysetup verify` checks
# the sealed image either way. Writes fs.img, key.bin, a.txt (the expected content) and verity.env (the root
# hash and the hash offset to pin, and the case) into OUT.
#   ok           the sealed image as it is
#   data-flip    one byte flipped in the first block of a.txt's data
#   header-flip  one byte flipped in the LUKS2 header's JSON area
#   tree-flip    one byte flipped in the hash tree's last block (level 0: the hashes of the last data blocks)
#   wrong-root   the blob is an older image (other content, sealed too); the manifest pins the current one
#   bad-offset   the image as it is, but the manifest's verity_hash_offset is one block short (no superblock)
set -euo pipefail
: "${VERITY_CASE:?}"
MIB=$((1 << 20))
SIZE=$((48 * MIB))
seal() { # IMAGE -> prints the root hash
    local size
    size=$(stat -c %s "$1")
    veritysetup format --data-blocks=$((size / 4096)) --hash-offset="$size" "$1" "$1" \
        | awk '/^Root hash:/ {print $3}'
}
make_image() { # CONTENT-DIR IMAGE [ARG...]: `image create` (its report on stdout)
    local from=$1 image=$2
    shift 2
    "$ENCFS_INIT" image create --pbkdf pbkdf2 --size "$SIZE" --key-file "$OUT/key.bin" --from "$from" "$@" "$image"
}
mkdir -p "$OUT/content"
printf 'This is a file inside the filesystem.\n' > "$OUT/content/test.txt"
# a.txt: 256 KiB of numbered lines, 64 blocks of the filesystem.
awk 'BEGIN { for (i = 0; i < 4096; i++) printf "verity line %08d: the quick brown fox jumps ov\n", i }' \
    > "$OUT/content/a.txt"
cp "$OUT/content/a.txt" "$OUT/a.txt"
head -c 32 /dev/urandom > "$OUT/key.bin"
case "${VERITY_SEALER:-veritysetup}" in
veritysetup)
    make_image "$OUT/content" "$OUT/fs.img" >&2
    OFFSET=$(stat -c %s "$OUT/fs.img")
    ROOT=$(seal "$OUT/fs.img")
    ;;
encfs-init)
    make_image "$OUT/content" "$OUT/fs.img" --verity > "$OUT/create.out"
    cat "$OUT/create.out" >&2
    ROOT=$(sed -n 's/^verity_root_hash = "\([0-9a-f]*\)"$/\1/p' "$OUT/create.out")
    OFFSET=$(sed -n 's/^verity_hash_offset = \([0-9]*\)$/\1/p' "$OUT/create.out")
    # The pin: the root hash, and the superblock right after the 48 MiB LUKS2 image.
    if [ "${#ROOT}" -ne 64 ] || [ "$OFFSET" != "$SIZE" ]; then
        echo "verity-prepare: image create --verity printed root '$ROOT', offset '$OFFSET'" >&2
        exit 1
    fi
    ;;
*) echo "unknown VERITY_SEALER $VERITY_SEALER" >&2; exit 1 ;;
esac
veritysetup verify --data-blocks=$((OFFSET / 4096)) --hash-offset="$OFFSET" "$OUT/fs.img" "$OUT/fs.img" "$ROOT" >&2

flip() { # OFFSET: xor that byte of fs.img with 0x01
    python3 - "$OUT/fs.img" "$1" <<'PY'
import sys
path, at = sys.argv[1], int(sys.argv[2])
with open(path, "r+b") as f:
    f.seek(at)
    b = f.read(1)
    f.seek(at)
    f.write(bytes([b[0] ^ 1]))
PY
}
case "$VERITY_CASE" in
ok) ;;
data-flip)
    # Where a.txt's first block is: the same mkfs.ext4 call as `image create` makes for a 48 MiB image (the
    # ext4 is the image less its 16 MiB header; inodes: a 16 KiB ratio) lays the same content out the same
    # way; debugfs reads the block map of that plain copy. If the layout ever differed, the app would read
    # a.txt fine and the scenario would fail, not pass.
    FS_SIZE=$((SIZE - 16 * MIB))
    truncate -s "$FS_SIZE" "$OUT/plain.ext4"
    mkfs.ext4 -q -F -t ext4 -b 4096 -m 0 -N $((FS_SIZE / 16384)) -d "$OUT/content" "$OUT/plain.ext4" >&2
    BLOCK=$(debugfs -R "bmap /a.txt 0" "$OUT/plain.ext4" 2>/dev/null | tail -n 1)
    rm -f "$OUT/plain.ext4"
    echo "verity-prepare: a.txt's first block is ext4 block $BLOCK, image block $((4096 + BLOCK))" >&2
    flip $((16 * MIB + BLOCK * 4096 + 100))
    ;;
header-flip) flip $((4096 + 100)) ;;
tree-flip) flip $(($(stat -c %s "$OUT/fs.img") - 4096 + 100)) ;;
wrong-root)
    # The older image: other content, same key, sealed; served in place of the current one.
    mkdir -p "$OUT/old"
    printf 'An older version of the file.\n' > "$OUT/old/test.txt"
    make_image "$OUT/old" "$OUT/old.img" >&2
    seal "$OUT/old.img" > /dev/null
    mv "$OUT/old.img" "$OUT/fs.img"
    ;;
bad-offset) PIN_OFFSET=$((OFFSET - 4096)) ;;
*) echo "unknown VERITY_CASE $VERITY_CASE" >&2; exit 1 ;;
esac
printf 'ROOT=%s\nOFFSET=%s\nCASE=%s\n' "$ROOT" "${PIN_OFFSET:-$OFFSET}" "$VERITY_CASE" > "$OUT/verity.env"
