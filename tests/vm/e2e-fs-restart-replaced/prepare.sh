# Host side: the sealed image of the verity-* scenarios (see ../common/verity-prepare.sh, case ok), and
# another image sealed likewise (other content, same key): its root is not the pinned one.
VERITY_CASE=ok
. "$SCENARIO/../common/verity-prepare.sh"
mkdir -p "$OUT/other"
printf 'Another image.\n' > "$OUT/other/test.txt"
make_image "$OUT/other" "$OUT/other.img" >&2
seal "$OUT/other.img" > /dev/null
