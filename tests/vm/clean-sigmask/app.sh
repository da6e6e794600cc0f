# busybox ash ignores SIGQUIT in itself (as bash does) but hands its children the dispositions and mask it
# inherited, so read a forked child's /proc/self/status: that is what encfs-init gave the application.
status=0
for key in SigBlk SigIgn; do
    line=$(grep "^$key:" /proc/self/status)
    val=$(echo ${line#*:})
    echo "$key: $val"
    [ "$val" = 0000000000000000 ] || status=1
done
exit $status
