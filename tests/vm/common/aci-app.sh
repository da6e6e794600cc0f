#!/bin/sh
# The application container of the aci-* scenarios (started by /vmtest/aci-agent.sh in a mount namespace of
# its own, the volume at /mnt/remote rslave). $1 says what it does:
#   read      read test.txt through the published symlink (/mnt/remote/data -> .filesystem-0)
#   sigterm   read, then after encfs-init's SIGTERM see the mount gone: ENOENT through the link, not EIO
#   busy      as sigterm, but hold test.txt open across the SIGTERM; close it only afterwards
#   unseen    the volume is private on encfs-init's side: the link is published, the filesystem is not here
mode=$1
say() { echo "aci: app: $*"; }
fail() { echo "aci: FAILED: app: $*"; }
ready=/mnt/remote/encfs-init.ready
i=0
while [ ! -e $ready ] && [ $i -lt 2400 ]; do sleep 0.05; i=$((i + 1)); done
[ -e $ready ] || { fail "no readiness file after 120 s"; exit 1; }
file=/mnt/remote/data/test.txt
# gone: the path must fail with ENOENT (the mount is gone from this namespace), never EIO.
gone() {
    out=$(cat $file 2>&1) && { fail "$file still readable after encfs-init ended: $out"; return 1; }
    case "$out" in
        *"No such file or directory"*) ;;
        *) fail "$file: $out (want No such file or directory)"; return 1 ;;
    esac
    if grep -q '/\.filesystem-0 ' /proc/self/mountinfo; then
        fail "the filesystem is still in this namespace's mountinfo"; return 1
    fi
    say "after encfs-init ended, the mount is gone from this namespace: $out"
}
case "$mode" in
    read | sigterm)
        say "$(cat $file 2>&1)"
        [ "$(cat $file 2>/dev/null)" = "This is a file inside the filesystem." ] ||
            { fail "cannot read $file through the published symlink"; touch /run/app.read; exit 1; }
        say "read through the published symlink $(readlink /mnt/remote/data) in its own mount namespace"
        touch /run/app.read
        [ "$mode" = read ] && exit 0
        while [ ! -e /run/encfs.exited ]; do sleep 0.05; done
        gone || exit 1
        ;;
    busy)
        exec 3< $file
        read -r line <&3
        say "holding $file open (fd 3): $line"
        touch /run/app.read
        while [ ! -e /run/encfs.exited ]; do sleep 0.05; done
        gone || exit 1
        exec 3<&-
        say "closed the file it held"
        ;;
    unseen)
        if [ "$(readlink /mnt/remote/data)" = .filesystem-0 ] && [ -d /mnt/remote/.filesystem-0 ] &&
            [ -z "$(ls -A /mnt/remote/.filesystem-0)" ] && ! cat $file >/dev/null 2>&1; then
            say "the link is published but .filesystem-0 is an empty directory here: a private volume does not propagate the mount"
        else
            fail "unexpected view of the volume: $(ls -la /mnt/remote /mnt/remote/.filesystem-0 2>&1)"
        fi
        touch /run/app.read
        ;;
esac
exit 0
