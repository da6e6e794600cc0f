#!/bin/sh
# As e2e-release (../common/release-init.sh), with one more key in the fake vault: "skr", released to the
# application through the SKR API (its file removed once the fake read it).
FAKE_ARGS="--extra-key skr:oct-HSM:/keys/skr.key"
. /vmtest/release-init.sh
