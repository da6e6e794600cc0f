#!/bin/sh
# The in-guest fake Azure starts with an empty vault; `encfs-init key import` (import.sh) puts the host-made
# key into it with the default release policy, then encfs-init boots and releases it: see
# ../common/release-init.sh.
FAKE_ARGS="--no-demo-key"
BEFORE_EXEC=/vmtest/import.sh
. /vmtest/release-init.sh
