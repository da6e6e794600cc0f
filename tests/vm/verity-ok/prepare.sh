# Host side: see ../common/verity-prepare.sh.
VERITY_CASE=ok
. "$SCENARIO/../common/verity-prepare.sh"
