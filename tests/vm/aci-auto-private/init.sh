#!/bin/sh
# encfs-init's side of the volume private, shared_volume = auto: a warning, the mount goes on, the application cannot see it.
propagation=private app_mode=unseen shared_volume=auto
. /vmtest/aci-agent.sh
