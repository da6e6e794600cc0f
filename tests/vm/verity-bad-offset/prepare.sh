# Host side: see ../common/verity-prepare.sh.
VERITY_CASE=bad-offset
. "$SCENARIO/../common/verity-prepare.sh"
