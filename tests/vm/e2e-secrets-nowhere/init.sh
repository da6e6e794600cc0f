#!/bin/sh
# As e2e-release (../common/release-init.sh): the key only in the fake vault (its file removed once the fake
# read it). The helpers' console output is also kept in /var/log, and encfs-init logs to
# /var/log/encfs-init.log ([log] file), so that the app's search of every file covers every log of the run.
BLOB_ARGS="--path /c/fs.img"
LOG_DIR=/var/log
. /vmtest/release-init.sh
