#!/bin/sh
# As e2e-release (../common/release-init.sh): the keys only in the fake vault (their files removed once the
# fake read them). The helpers' console output is also kept in /var/log, and encfs-init logs to
# /var/log/encfs-init.log ([log] file), so that the app's search of every file covers every log of the run.
BLOB_ARGS="--path /c/fs.img"
# The released secret's key: one more vault key (the fake removes its file once read).
FAKE_ARGS="--extra-key nowhere-secret:oct-HSM:/keys/secret.bin"
LOG_DIR=/var/log
. /vmtest/release-init.sh
