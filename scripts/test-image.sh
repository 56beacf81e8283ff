#!/usr/bin/env bash
# Builds the image (scripts/build-image.sh) and tests it without a container runtime (this
# machine refuses the rlimits podman's runtime sets): saves it, unpacks its layers into a
# directory and runs the binary there with chroot, so it loads only what the image holds:
# `ferroplane --version` and a CNI VERSION call of `ferroplane-cni`.
#   scripts/test-image.sh [PROFILE]   (default: debug, the build the tests use)
set -euo pipefail
profile="${1:-debug}"
tag="localhost/ferroplane:test-$$"
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d /tmp/fp-image-test.XXXXXX)"
trap 'rm -rf "$work"; podman rmi -f "$tag" >/dev/null 2>&1 || true' EXIT
"$root/scripts/build-image.sh" "$tag" "$profile"
podman save --quiet --format docker-dir -o "$work/image" "$tag"
mkdir "$work/rootfs"
for layer in $(python3 -c 'import json,sys; print(" ".join(l["digest"].split(":")[1] for l in json.load(open(sys.argv[1]))["layers"]))' "$work/image/manifest.json"); do
    tar -xf "$work/image/$layer" -C "$work/rootfs"
done
echo "image files:"; (cd "$work/rootfs" && find . -type f -o -type l | sort)
version="$(chroot "$work/rootfs" /usr/local/bin/ferroplane --version)"
echo "ferroplane --version: $version"
[[ "$version" == ferroplane\ * ]] || { echo "FAIL: --version printed $version"; exit 1; }
answer="$(echo '{"cniVersion":"1.0.0"}' | CNI_COMMAND=VERSION chroot "$work/rootfs" /usr/local/bin/ferroplane-cni)"
echo "ferroplane-cni VERSION: $answer"
[[ "$answer" == *'"supportedVersions":["0.4.0","1.0.0","1.1.0"]'* ]] || { echo "FAIL: VERSION answered $answer"; exit 1; }
test -f "$work/rootfs/usr/share/ferroplane/10-ferroplane.conflist"
echo "image OK"
