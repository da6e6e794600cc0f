#!/bin/sh
# The twin of e2e-release whose vault key has a release policy on another host_data: the release is refused.
# The servers and the hand-over to encfs-init: see ../common/release-init.sh.
FAKE_ARGS="--policy-hostdata 0000000000000000000000000000000000000000000000000000000000000000"
. /vmtest/release-init.sh
