#!/usr/bin/env bash
# Runs every check and test of ferroplane: formatting, clippy, unit and integration tests
# (the device tests need root: they create their own network namespaces), and builds the
# benchmarks. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "error: run as root: the device tests create network namespaces, veth pairs and TAPs" >&2
    exit 1
fi
./scripts/install-deps.sh
export CARGO_TERM_COLOR=never

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test (testbed scenarios with TAP pods)"
cargo test --workspace --locked
for io in af-packet af-xdp; do
    echo "== testbed scenarios with $io pods"
    # --workspace: the same feature unification as above, so nothing is rebuilt. The hostile
    # scenarios attack the uplink, conntrack and the control plane, which every pod backend
    # shares: they run once, with TAP pods, above; so do the soak (minutes of change) and the
    # demo's printed commands (operator verbs, not packets). Of the dual-stack scenarios (run
    # above with TAP pods) the VXLAN one runs per backend too: IPv6 frames through each pod
    # port kind; the routed and internet/policy ones exercise the uplink and the v6 tables,
    # which every backend shares.
    FERROPLANE_TESTBED_IO=$io cargo test --locked --workspace --test scenarios -- \
        --skip hostile --skip soak --skip demo_hints \
        --skip dual_stack_pods_and_service_over_the_routed_underlay \
        --skip dual_stack_internet_policy_node_port_and_change_in_ipv6
done
echo "== image (podman build, unpacked, the binary run from it)"
./scripts/test-image.sh debug
echo "== benchmarks compile"
cargo bench -p bench --locked --no-run
