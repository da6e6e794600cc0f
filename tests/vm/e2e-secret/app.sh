#!/bin/sh
# The application: checks its released secrets as an application container would, each line
# "e2e-secret: ok ..." or "e2e-secret: FAIL ..."; then says done and waits for the SIGTERM encfs-init forwards (and exits 0).
# It runs as root under encfs-init and reads as the secrets' owner through setpriv (util-linux).
m=/mnt/remote/secrets
ok() { echo "e2e-secret: ok $*"; }
bad() { echo "e2e-secret: FAIL $*"; }
as() { u=$1; g=$2; shift 2; /usr/bin/setpriv --reuid "$u" --regid "$g" --clear-groups /bin/sh -c "$*"; }
want() { grep "^$1 " /expect/sha256 | cut -d' ' -f2; }
# check NAME FILE UID GID: the file's SHA-256, read as UID:GID, is the host's.
check() {
    got=$(as "$3" "$4" "sha256sum < $2" | cut -d' ' -f1)
    [ -n "$got" ] && [ "$got" = "$(want "$1")" ] && ok "$1: $2 holds what the host made (read as $3:$4)" ||
        bad "$1: $2: sha256 $got, want $(want "$1")"
}
/bin/encfs-init probe && ok "probe: ready" || bad "probe: not ready"
[ "$(cat /mnt/remote/data/test.txt)" = "This is a file inside the filesystem." ] && ok "filesystem read" || bad "filesystem"
check raw $m/oct.raw 1000 1000
check base64 $m/oct.b64 1000 1001
# Group 1001 reads the 0440 file though another uid.
check base64 $m/oct.b64 2000 1001
check pem $m/tls/key.pem 1000 1000
check rsa-raw $m/tls/key.der 1000 1000
k=$(as 1000 1000 "cat $m/oct.jwk" | sed -n 's/.*"k":"\([^"]*\)".*/\1/p')
[ -n "$k" ] && [ "$(printf %s "$k" | sha256sum | cut -d' ' -f1)" = "$(want jwk-k)" ] &&
    ok "jwk: k is the key's base64url, kty $(sed -n 's/.*"kty":"\([^"]*\)".*/\1/p' $m/oct.jwk)" || bad "jwk: $(wc -c < $m/oct.jwk) bytes"
for f in "oct.raw 400 1000:1000" "oct.b64 440 1000:1001" "oct.jwk 400 1000:1000" "tls/key.pem 400 1000:1000"; do
    set -- $f
    got=$(stat -c '%a %u:%g' "$m/$1")
    [ "$got" = "$2 $3" ] && ok "stat $1: mode $2 owner $3" || bad "stat $1: $got, want $2 $3"
done
line=$(grep ' /mnt/remote/.secrets ' /proc/mounts)
for w in " tmpfs " nosuid nodev noexec size=1024k; do
    case "$line" in *"$w"*) ;; *) bad "mount: no $w in: $line" ;; esac
done
ok "mount: $line"
[ "$(readlink $m)" = .secrets ] && ok "published: $m -> .secrets" || bad "link: $(readlink $m)"
# The owner cannot change anything there, nor can anyone else read its 0400 file.
as 1000 1000 "echo x >> $m/oct.raw" 2>/dev/null && bad "the owner appended to its key" || ok "write: the owner cannot append"
as 1000 1000 "echo x > $m/new" 2>/dev/null && bad "created a file in the tmpfs" || ok "write: no new file"
as 1000 1000 "rm -f $m/oct.raw" 2>/dev/null; [ -e $m/oct.raw ] && ok "write: the owner cannot remove" || bad "removed"
as 2000 2000 "cat $m/oct.raw" >/dev/null 2>&1 && bad "uid 2000 read a 0400 file" || ok "read: another uid cannot"
# The readiness file lists every secret, with no value.
r=/mnt/remote/encfs-init.ready
for p in oct.raw oct.b64 oct.jwk tls/key.pem tls/key.der; do
    grep -q "\"path\": \"$m/$p\"" $r && ok "listed: $p" || bad "not listed: $p"
done
grep -q '"kid": "rsa-secret"' $r && grep -q '"owner": "1000:1001"' $r && grep -q '"mode": "0440"' $r &&
    grep -q '"format": "pem"' $r && ok "listing: kid, owner, mode, format" || bad "listing: $(cat $r)"
b=$(base64 -w0 < $m/oct.raw | tr -d '=')
grep -qF "$b" $r && bad "the readiness file holds a value" || ok "listing: no value"
echo "e2e-secret: readiness file: $(tr -d ' \n' < $r)"
touch /run/app.done
# encfs-init forwards the SIGTERM it gets: end with 0 then.
trap 'echo "e2e-secret: app: SIGTERM, exiting 0"; exit 0' TERM
sleep 600 &
wait
