#!/bin/sh
# encfs-init's side of the volume private, shared_volume = required: the boot fails closed at the step "shared volume".
propagation=private app_mode=none shared_volume=required
. /vmtest/aci-agent.sh
