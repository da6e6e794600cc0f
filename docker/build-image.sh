#!/usr/bin/env bash
# Build the scratch image with buildah and check that it holds one static binary and nothing else.
# Usage: docker/build-image.sh [TAG]   (default encfs-init:dev). Needs root (vfs storage driver).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
tag=${1:-encfs-init:dev}
bin="$top/target/x86_64-unknown-linux-musl/release/encfs-init"

command -v buildah >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah >/dev/null; }
(cd "$top" && cargo build --release --target x86_64-unknown-linux-musl -p encfs-init)

ctx=$(mktemp -d)
out=$(mktemp -d)
trap 'rm -rf "$ctx" "$out"' EXIT
cp "$bin" "$ctx/encfs-init"
mkdir -p "$ctx/rootfs"
# rootfs/ content, without the placeholder that keeps the directory in git.
(cd "$top/rootfs" && find . -mindepth 1 ! -name .gitkeep -print0 | cpio -0 -pdm --quiet "$ctx/rootfs")

b="buildah --storage-driver vfs"
$b bud --quiet -f "$top/docker/Dockerfile" -t "$tag" "$ctx" >/dev/null
$b push --quiet "$tag" "oci:$out/oci:img" >/dev/null

# Inspect the image as a registry would see it: the config's entrypoint and every file in every layer.
python3 - "$out/oci" <<'PY'
import json, os, sys, tarfile, subprocess
root = sys.argv[1]
def blob(d):
    alg, h = d["digest"].split(":")
    return os.path.join(root, "blobs", alg, h)
index = json.load(open(os.path.join(root, "index.json")))
manifest = json.load(open(blob(index["manifests"][0])))
config = json.load(open(blob(manifest["config"])))
entry = config["config"].get("Entrypoint")
assert entry == ["/encfs-init"], f"entrypoint is {entry}"
files = []
for layer in manifest["layers"]:
    with tarfile.open(blob(layer)) as t:
        for m in t.getmembers():
            name = m.name.lstrip("./")
            if m.isdir() or not name:
                continue
            files.append(name)
            if name == "encfs-init":
                data = t.extractfile(m).read()
                open(os.path.join(root, "bin"), "wb").write(data)
assert files == ["encfs-init"], f"the image holds more than the binary: {files}"
desc = subprocess.run(["file", "-b", os.path.join(root, "bin")], capture_output=True, text=True).stdout
assert "static-pie linked" in desc or "statically linked" in desc, f"not static: {desc}"
size = os.path.getsize(os.path.join(root, "bin"))
print(f"image ok: entrypoint /encfs-init, one file, {desc.split(',')[0]}, static, {size} bytes")
PY
echo "built $tag"
