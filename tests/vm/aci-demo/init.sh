#!/bin/sh
# The ACI shape: the agent starts encfs-init and the application in mount namespaces of their own; the application reads through the published symlink.
propagation=shared app_mode=read shared_volume=auto
. /vmtest/aci-agent.sh
