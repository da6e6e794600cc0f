#!/bin/sh
# The application reads its released secrets, then encfs-init gets SIGTERM: see ../common/secret-init.sh.
SECRET_MODE=ok
. /vmtest/secret-init.sh
