#!/bin/sh
# The application of e2e-raw: read the published file, then look for the raw key (hex, base64, text) in
# every process's environment and command line. The patterns are assembled here so that they appear in no
# command line themselves.
/bin/encfs-init probe || exit 1
echo "e2e: $(cat /mnt/remote/data/test.txt)"
ls -la /mnt/remote
printf '%s%s\n%s%s\n%s%s\n' 656e6366732d696e69742d 6532652d7261772d6b6579 ZW5jZnMtaW5pdC1l MmUtcmF3 e2e-raw -key > /run/patterns
# NULs become line ends: busybox grep stops looking at a line at its first NUL.
if cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null | tr '\000' '\n' | grep -q -f /run/patterns; then
    echo "e2e: KEY LEAK in a process environment or command line"
    exit 1
fi
echo "e2e: key nowhere in environ or cmdline"
