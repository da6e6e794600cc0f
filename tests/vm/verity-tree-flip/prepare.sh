# Host side: see ../common/verity-prepare.sh.
VERITY_CASE=tree-flip
. "$SCENARIO/../common/verity-prepare.sh"
