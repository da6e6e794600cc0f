#!/bin/sh
# PID 1 returning makes the kernel panic ("Attempted to kill init"); panic=-1 + -no-reboot end QEMU.
echo "rig-panic: init exits now"
exit 1
