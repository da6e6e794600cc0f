#!/bin/sh
# Sourced by the aci-* scenarios' init.sh once it has set
#   propagation   encfs-init's side of the volume: "shared" (Bidirectional) or "private" (None)
#   app_mode      what the application container does (see /vmtest/aci-app.sh), or "none"
#   shared_volume the manifest's shared_volume
# The rig's PID 1 plays the UVM's container agent (the kata agent, the GCS on ACI): it makes the pod's
# shared volume (an emptyDir: a tmpfs at $vol, a shared mount as the kubelet's volume directories are), then
# starts two containers, each in a mount namespace of its own with the volume bind-mounted (rbind) at
# /mnt/remote: encfs-init, also in a PID namespace of its own with its own /proc (so it is that container's
# PID 1 and sees a container, not a VM), with the volume made r$propagation; and the application, with the
# volume rslave (Kubernetes HostToContainer). Each hides the agent's path of the volume (made private in its
# namespace), as a runtime does. util-linux unshare: busybox's cannot leave propagation unchanged, and a
# bind of the volume must stay in its peer group. The agent relays encfs-init's real exit status as the rig's
# verdict line (vmtest: script exit status N; the scenarios say verdict_by = "script") and powers off.
vol=/var/lib/kubelet/pods/aci/volumes/emptydir
say() { echo "aci: $*"; }
fail() { echo "aci: FAILED: $*"; }
. /etc/vmtest/lib.sh

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
ip link set lo up
release=$(uname -r)
# The UVM loads the modules, not the container (encfs-init skips kernel_modules in a container).
if [ -s /etc/vmtest/modules.load ]; then
    while read -r m; do insmod "/lib/modules/$release/$m" || fail "insmod $m"; done < /etc/vmtest/modules.load
fi
/tests/guest_blob_server --serve /blobs/fs.img --port-file /run/blob.port &
wait_for 10 test -s /run/blob.port || fail "the blob server did not start"
. /vmtest/render-manifest.sh
render_manifest -e "s/@PORT@/$(cat /run/blob.port)/" -e "s/@SHARED_VOLUME@/$shared_volume/"

mkdir -p "$vol" /mnt/remote
mount -t tmpfs -o mode=0755 emptydir "$vol"
mount --make-shared "$vol"

# The application container first, as a pod's containers start together: it waits for the readiness file.
app_pid=
if [ "$app_mode" != none ]; then
    /usr/bin/unshare --mount --propagation unchanged /bin/sh -c "
        mount -o rbind $vol /mnt/remote && mount --make-rslave /mnt/remote && mount --make-private $vol &&
        exec /bin/sh /vmtest/aci-app.sh $app_mode" &
    app_pid=$!
fi
/usr/bin/unshare --mount --pid --fork --mount-proc --propagation unchanged /bin/sh -c "
    mount -o rbind $vol /mnt/remote && mount --make-r$propagation /mnt/remote && mount --make-private $vol &&
    exec /bin/encfs-init" &
encfs_container=$!
encfs_pid() { pidof encfs-init; }
# Started: encfs-init is running, or its container has already ended (gone, as the shell reaps children as
# they end, or a zombie): a boot that fails closed can be over before the first poll. How it ended is
# judged below.
container_ended() {
    [ ! -e /proc/"$encfs_container" ] || [ "$(cut -d' ' -f3 /proc/"$encfs_container"/stat 2>/dev/null)" = Z ]
}
encfs_started() { encfs_pid >/dev/null || container_ended; }
wait_for 10 encfs_started || fail "encfs-init did not start"
epid=$(encfs_pid)

# Which devices are still set up: dm devices, connected NBD devices, bound loop devices.
mapped() {
    for d in /sys/block/dm-* /sys/block/nbd*/pid /sys/block/loop*/loop/backing_file; do
        [ -e "$d" ] && echo "$d"
    done
}
stop_encfs_init() {
    kill -TERM "$epid"
    wait "$encfs_container"
    status=$?
    say "encfs-init exited with status $status after SIGTERM"
    touch /run/encfs.exited
}

status=
if [ "$app_mode" = none ]; then
    # Only encfs-init: it must end by itself (a failed boot).
    wait "$encfs_container"
    status=$?
    say "encfs-init exited by itself with status $status"
    [ -e "$vol/encfs-init.ready" ] && fail "a readiness file is left: $vol/encfs-init.ready"
else
    if wait_for 120 test -e /run/app.read; then
        a=$(readlink /proc/1/ns/mnt); e=$(readlink /proc/"$epid"/ns/mnt); p=$(readlink /proc/"$app_pid"/ns/mnt)
        if [ "$a" != "$e" ] && [ "$a" != "$p" ] && [ "$e" != "$p" ]; then
            say "three mount namespaces: agent $a, encfs-init $e, application $p"
        else
            fail "mount namespaces not distinct: agent $a, encfs-init $e, application $p"
        fi
        [ "$(readlink /proc/"$epid"/ns/pid)" != "$(readlink /proc/1/ns/pid)" ] &&
            say "encfs-init runs in a PID namespace of its own"
    else
        fail "the application did not get to read within 120 s"
    fi
    stop_encfs_init
    wait "$app_pid"
    app_status=$?
    [ "$app_status" = 0 ] && say "the application container exited 0" ||
        fail "the application container exited $app_status"
fi
# After the application let go (a busy filesystem ends at its last close): nothing left mounted or mapped.
nothing_mapped() { [ -z "$(mapped)" ]; }
if wait_for 10 nothing_mapped; then
    say "nothing left mapped (no dm, NBD or loop device in use)"
else
    fail "still set up: $(mapped | tr '\n' ' ')"
fi
if grep -q '/\.filesystem-' /proc/self/mountinfo; then
    fail "a filesystem is still mounted in the agent's namespace: $(grep '/\.filesystem-' /proc/self/mountinfo)"
fi
sync; echo "vmtest: script exit status $status"
poweroff -f -n
