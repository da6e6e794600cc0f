#!/bin/sh
# The application of the verity-* scenarios that boot: $1 is the case (ok, data-flip).
echo "verity-app: started ($1)"
ready=/mnt/remote/encfs-init.ready
/bin/encfs-init probe && echo "verity-app: probe ok at start"
echo "verity-app: test.txt: $(cat /mnt/remote/data/test.txt)"
case "$1" in
ok)
    if cmp /mnt/remote/data/a.txt /verity/a.txt; then echo "verity-app: a.txt equal"; fi
    sleep 2
    /bin/encfs-init probe && echo "verity-app: probe ok after health reads"
    ;;
data-flip)
    if cat /mnt/remote/data/a.txt > /dev/null 2> /run/err; then
        echo "verity-app: FAIL: a.txt read without an error"
    else
        case "$(cat /run/err)" in
        *"I/O error"* | *"Input/output error"*) echo "verity-app: a.txt: EIO" ;;
        *) echo "verity-app: a.txt: another error: $(cat /run/err)" ;;
        esac
    fi
    # The rest still reads: test.txt again, bypassing the page cache's copy.
    echo 3 > /proc/sys/vm/drop_caches
    echo "verity-app: test.txt again: $(cat /mnt/remote/data/test.txt)"
    # The health thread looks at dm-verity's status every second.
    sleep 3
    if /bin/encfs-init probe; then
        echo "verity-app: FAIL: probe passes on a corrupted filesystem"
    else
        echo "verity-app: probe fails after the corruption"
    fi
    ;;
esac
cat "$ready"
