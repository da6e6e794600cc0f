#!/bin/sh
# A secret whose key is not in the vault: encfs-init fails closed by itself; see ../common/secret-init.sh.
SECRET_MODE=denied
. /vmtest/secret-init.sh
