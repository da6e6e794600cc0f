#!/bin/sh
echo "rig-hang: sleeping forever"
while :; do sleep 1000; done
