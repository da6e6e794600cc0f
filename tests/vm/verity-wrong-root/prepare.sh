# Host side: see ../common/verity-prepare.sh.
VERITY_CASE=wrong-root
. "$SCENARIO/../common/verity-prepare.sh"
