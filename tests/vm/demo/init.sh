#!/bin/sh
# The in-guest blob server and fake Azure on 127.0.0.1, then encfs-init: see ../common/release-init.sh.
. /vmtest/release-init.sh
