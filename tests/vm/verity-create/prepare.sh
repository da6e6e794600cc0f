# Host side: see ../common/verity-prepare.sh (made and sealed by our own `image create --verity`).
VERITY_CASE=ok
VERITY_SEALER=encfs-init
. "$SCENARIO/../common/verity-prepare.sh"
