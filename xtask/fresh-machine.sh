#!/usr/bin/env bash
# The README's two commands on a fresh Debian 12 machine, repeatably (issue 11).
#
# Makes a clean bookworm root file system with only what the README assumes a user has (gcc, Python, git; the
# host's Rust toolchain through an overlay, so nothing is written back and the musl target starts uninstalled),
# clones this repository's committed HEAD into it with no ../shared beside the clone, and runs, as root in a
# chroot, `cargo xtask demo` and/or `cargo xtask test`, timing each. Everything the commands need they must
# install themselves: nothing else is put into the chroot.
#
# Usage: xtask/fresh-machine.sh [demo|test|all]      (default all; needs root and network to the Debian mirror,
#        crates.io, the Rust dist server and npm). State lives in .cache/fresh-machine/: the pristine root file
#        system is made once and kept as a tarball; every run unpacks it anew into run/ and logs to run/*.log.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
what=${1:-all}
case $what in demo | test | all) ;; *) echo "usage: $0 [demo|test|all]" >&2; exit 2 ;; esac
base=$top/.cache/fresh-machine
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
cargo_bin=${CARGO_HOME:-$HOME/.cargo}/bin
mkdir -p "$base"

if [ ! -f "$base/pristine.tar" ]; then
    command -v debootstrap >/dev/null || {
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    }
    if [ ! -x "$base/pristine/usr/bin/gcc" ]; then
        rm -rf "$base/pristine"
        echo "fresh-machine: debootstrap bookworm (gcc, python3, git) from $mirror"
        debootstrap --variant=minbase --include=gcc,libc6-dev,python3,git,ca-certificates \
            bookworm "$base/pristine" "$mirror" >"$base/debootstrap.log"
    fi
    tar -C "$base/pristine" -cf "$base/pristine.tar.part" .
    mv "$base/pristine.tar.part" "$base/pristine.tar"
    rm -rf "$base/pristine"
fi

run=$base/run
r=$run/root
teardown() {
    for m in root/.rustup tmp dev sys proc; do
        mountpoint -q "$r/$m" 2>/dev/null && umount -R -l "$r/$m"
    done
    mountpoint -q "$r" 2>/dev/null && umount -R -l "$r"
    return 0
}
teardown
rm -rf "$run"
mkdir -p "$r" "$run/rustup-upper" "$run/rustup-work"
trap teardown EXIT
tar -C "$r" -xf "$base/pristine.tar"
# A machine's / is a mount point (the tests' `unshare --mount` changes its propagation; on a plain directory
# that fails with EINVAL).
mount --bind "$r" "$r" && mount --make-private "$r"

# None of the packages the commands install may be here already.
for p in libdevmapper-dev libclang-dev pkg-config cryptsetup-bin qemu-system-x86 busybox-static buildah nodejs npm; do
    if chroot "$r" dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        echo "fresh-machine: $p is installed in the pristine root file system" >&2
        exit 1
    fi
done

# The machine's network, not the project: its resolver and any local CAs it trusts (a TLS-inspecting egress
# proxy's, say), and the environment variables that point tools at that trust store.
cp /etc/resolv.conf "$r/etc/resolv.conf"
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$r/usr/local/share/ca-certificates/"
    chroot "$r" update-ca-certificates >/dev/null
fi
trust_env=()
for v in SSL_CERT_FILE SSL_CERT_DIR CURL_CA_BUNDLE GIT_SSL_CAINFO NODE_EXTRA_CA_CERTS; do
    [ -n "${!v:-}" ] && trust_env+=("$v=${!v}")
done
mount -t proc proc "$r/proc"
mount --rbind /sys "$r/sys" && mount --make-rslave "$r/sys"
mount --rbind /dev "$r/dev" && mount --make-rslave "$r/dev"
mount -t tmpfs -o size=8g,mode=1777 tmpfs "$r/tmp"
mkdir -p "$r/root/.rustup" "$r/root/.cargo/bin"
mount -t overlay overlay \
    -o "lowerdir=$rustup_home,upperdir=$run/rustup-upper,workdir=$run/rustup-work" "$r/root/.rustup"
for b in cargo rustc rustup rustdoc rustfmt cargo-fmt cargo-clippy clippy-driver; do
    [ -e "$cargo_bin/$b" ] && cp -a "$cargo_bin/$b" "$r/root/.cargo/bin/"
done

mkdir -p "$r/root/src"
git clone -q "$top" "$r/root/src/encfs-init"
[ ! -e "$r/root/src/shared" ] || { echo "fresh-machine: ../shared exists beside the clone" >&2; exit 1; }
echo "fresh-machine: clone of $(git -C "$top" rev-parse --short HEAD) at /root/src/encfs-init, no ../shared"

inside() {
    chroot "$r" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 "${trust_env[@]}" \
        PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        bash -c "cd /root/src/encfs-init && $1"
}
# A fresh machine has the toolchain the repository pins, without the musl target: remove it if the host has it.
inside "rustup target remove x86_64-unknown-linux-musl >/dev/null 2>&1 || true"

status=0
for cmd in demo test; do
    [ "$what" = all ] || [ "$what" = "$cmd" ] || continue
    log=$run/$cmd.log
    echo "fresh-machine: cargo xtask $cmd (log: $log)"
    t0=$(date +%s)
    rc=0
    inside "cargo xtask $cmd" >"$log" 2>&1 || rc=$?
    took=$(($(date +%s) - t0))
    echo "fresh-machine: cargo xtask $cmd exited $rc after $((took / 60)) min $((took % 60)) s"
    tail -n 25 "$log" | sed 's/^/    /'
    [ $rc -eq 0 ] || status=1
done
exit $status
