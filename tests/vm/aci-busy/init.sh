#!/bin/sh
# The ACI shape with the application holding the file open across SIGTERM to encfs-init: lazy detach, deferred dm removal, exit 3.
propagation=shared app_mode=busy shared_volume=auto
. /vmtest/aci-agent.sh
