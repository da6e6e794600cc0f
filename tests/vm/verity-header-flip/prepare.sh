# Host side: see ../common/verity-prepare.sh.
VERITY_CASE=header-flip
. "$SCENARIO/../common/verity-prepare.sh"
