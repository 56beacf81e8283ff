#!/usr/bin/env bash
# Builds the ferroplane image with podman from deploy/Containerfile:
#   scripts/build-image.sh [TAG] [PROFILE]     (defaults: ferroplane:dev, release)
# Stages the build context in a temporary directory: the `ferroplane` binary of PROFILE
# (built if missing), stripped, at /usr/local/bin/ferroplane, a `ferroplane-cni` link to it,
# and every shared library `ldd` names at the same path as on this machine (so the image
# holds exactly what the binary loads, and nothing else).
set -euo pipefail
tag="${1:-ferroplane:dev}"
profile="${2:-release}"
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/target/$profile/ferroplane"
if [ ! -x "$bin" ]; then
    flag=(); [ "$profile" = release ] && flag=(--release)
    (cd "$root" && cargo build -p control --bin ferroplane "${flag[@]}")
fi
context="$(mktemp -d /tmp/fp-image.XXXXXX)"
trap 'rm -rf "$context"' EXIT
mkdir -p "$context/rootfs/usr/local/bin"
strip -o "$context/rootfs/usr/local/bin/ferroplane" "$bin"
ln -s ferroplane "$context/rootfs/usr/local/bin/ferroplane-cni"
ldd "$bin" | grep -o '/[^ ]*' | sort -u | while read -r lib; do
    mkdir -p "$context/rootfs$(dirname "$lib")"
    cp -L "$lib" "$context/rootfs$lib"
done
cp "$root/deploy/Containerfile" "$root/deploy/10-ferroplane.conflist" "$context/"
podman build --quiet -t "$tag" -f "$context/Containerfile" "$context"
