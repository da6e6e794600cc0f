#!/bin/sh
# The application, after readiness: look for this run's disk key, the image's LUKS2 volume key (which
# dm-crypt holds) and the released secret's key (each in hex lower and upper, base64, base64url)
# in every regular file of the guest's filesystems (the rootfs with /var/log and the fake Azure's files,
# /run, the mounted image, the secrets' tmpfs; not /proc, /sys, /dev, nor the secret's own file there), in the kernel log, and in every process's command line
# and environment. Prints each hit's path and fails the run on any; otherwise prints one PASS line.
# The patterns are stored reversed (/expect/patterns.rev) and turned back through a pipe into grep's pattern
# file descriptor: they are never in a file, an argument or an environment themselves.
/bin/encfs-init probe || { echo "e2e-secrets: FAIL: not ready"; exit 1; }
echo "e2e: $(cat /mnt/remote/data/test.txt)"

# holds REVERSED_PATTERNS FILE: whether FILE contains one of the patterns. NULs become line ends first:
# busybox grep ends a line's match at a NUL, so it would miss anything after the first NUL of a binary
# file or of /proc/*/environ.
holds() {
    rev "$1" | { tr '\0' '\n' < "$2" 2>/dev/null | grep -qF -f /proc/self/fd/3; } 3<&0
}

# The canary: the search must find a pattern placed after a NUL, and must not find it in this script, which
# holds it only reversed.
echo hcraes-yek-eht-rof-yranac > /run/canary.rev
printf 'binary\000%s\n' "$(rev /run/canary.rev)" > /run/canary.bin
holds /run/canary.rev /run/canary.bin || { echo "e2e-secrets: FAIL: the canary search missed the canary"; exit 1; }
! holds /run/canary.rev /app.sh || { echo "e2e-secrets: FAIL: the canary search found its reversed form"; exit 1; }
rm -f /run/canary.rev /run/canary.bin

n=$(rev /expect/patterns.rev | grep -c '^[0-9A-Za-z_+/-]\{43,128\}$')
[ "$n" -eq 12 ] || { echo "e2e-secrets: FAIL: $n key patterns, want 12"; exit 1; }

# The released secret is in its own file in the tmpfs (the search finds it there: the one place it must be),
# which is the only file left out below.
own=/mnt/remote/.secrets/nowhere.b64
holds /expect/patterns.rev "$own" || { echo "e2e-secrets: FAIL: the search does not find the secret in its own file $own"; exit 1; }
echo "e2e-secrets: the released secret is in its own file $own"

dmesg > /var/log/dmesg.txt
files=$(find / \( -path /proc -o -path /sys -o -path /dev -o -path "$own" \) -prune -o -type f -print)
procs=$(ls -d /proc/[0-9]*/cmdline /proc/[0-9]*/environ)
nfiles=0 nprocs=0 hits=0
for f in $files; do
    nfiles=$((nfiles + 1))
    if holds /expect/patterns.rev "$f"; then echo "e2e-secrets: KEY FOUND in $f"; hits=$((hits + 1)); fi
done
for f in $procs; do
    [ -e "$f" ] || continue # the process is gone
    nprocs=$((nprocs + 1))
    if holds /expect/patterns.rev "$f"; then echo "e2e-secrets: KEY FOUND in $f"; hits=$((hits + 1)); fi
done
echo "e2e-secrets: searched" $files
[ "$hits" -eq 0 ] || { echo "e2e-secrets: FAIL: a key is in $hits place(s)"; exit 1; }
echo "e2e-secrets: PASS: disk key, volume key and released secret (hex, HEX, base64, base64url) in none of $nfiles files (logs and dmesg included; the secret only in its own file) and $nprocs /proc cmdline/environ entries"
