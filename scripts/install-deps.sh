#!/usr/bin/env bash
# Installs what building and testing ferroplane needs on a Debian machine (run as root):
# the Debian packages below and, if cargo is missing, the pinned Rust toolchain.
set -euo pipefail

packages=(iproute2 iputils-ping tcpdump iperf3 procps python3 ca-certificates gcc libc6-dev
          ethtool bind9-dnsutils containernetworking-plugins podman)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "installing the Rust toolchain (rustup, then the version pinned in Cargo.toml)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends rustup
    rustup toolchain install 1.95 --profile minimal --component clippy,rustfmt
    rustup default 1.95
fi
