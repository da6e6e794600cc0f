#!/bin/sh
# The ACI shape, then SIGTERM to encfs-init: the application sees the mount gone (ENOENT), not EIO.
propagation=shared app_mode=sigterm shared_volume=auto
. /vmtest/aci-agent.sh
