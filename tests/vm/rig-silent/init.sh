#!/bin/sh
echo "rig-silent: powering off without a verdict"
exec poweroff -f
