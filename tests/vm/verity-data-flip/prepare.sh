# Host side: see ../common/verity-prepare.sh.
VERITY_CASE=data-flip
. "$SCENARIO/../common/verity-prepare.sh"
