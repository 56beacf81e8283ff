//! The pieces of the topology the kernel and OVS builds share: the underlay bridge, the node
//! namespaces with their uplinks, the pod namespaces with a veth to their node, and the
//! settings every build gets alike (receive steering onto the dataplane CPU, client sockets).
//!
//! Invariants: every command runs in a namespace of the comparison (`ip -n`, `ip netns exec`
//! or a thread that entered it), never in the caller's; a pod's `eth0` has the pod's MAC,
//! `IP/24` and a default route through its node's gateway; receive steering covers every
//! device of a node namespace, so kernel work for a packet entering a node runs on the
//! dataplane CPU.

use testbed::netns::{add, exec, ip, sysctl};

use super::Result;
use super::plan::{
    NODES, POD_MTU, PREFIX, PodSpec, cpu_mask, gateway, mac_of, node_ns, pod_ip, pod_ns, pod_port,
};

/// The underlay namespace's bridge.
pub const UNDERLAY_BRIDGE: &str = "fpcmp-ubr";
/// A node's uplink into the underlay.
pub const UPLINK: &str = "fpcmp-up";

pub fn underlay_ns() -> Result<String> {
    Ok(super::plan::layout()?.underlay_ns())
}

/// The underlay namespace with its bridge, and every node namespace with its uplink veth
/// plugged into the bridge (up, no address).
pub fn underlay_and_nodes() -> Result<()> {
    let underlay = underlay_ns()?;
    add(&underlay)?;
    ip(
        &underlay,
        &["link", "add", UNDERLAY_BRIDGE, "type", "bridge"],
    )?;
    ip(&underlay, &["link", "set", UNDERLAY_BRIDGE, "up"])?;
    for index in 0..NODES {
        let ns = node_ns(index)?;
        add(&ns)?;
        let port = format!("{PREFIX}-u{}", index + 1);
        ip(
            &ns,
            &[
                "link", "add", UPLINK, "type", "veth", "peer", "name", &port, "netns", &underlay,
            ],
        )?;
        ip(
            &underlay,
            &["link", "set", &port, "master", UNDERLAY_BRIDGE, "up"],
        )?;
        ip(&ns, &["link", "set", UPLINK, "up"])?;
    }
    Ok(())
}

/// The pod's namespace and a veth pair: `eth0` configured in the pod, the other end
/// (returned) in the node namespace, up, not yet attached to anything.
pub fn pod_with_veth(pod: &PodSpec) -> Result<String> {
    let ns = pod_ns(pod)?;
    let node = node_ns(pod.node)?;
    add(&ns)?;
    let port = pod_port(pod);
    let mtu = POD_MTU.to_string();
    ip(
        &node,
        &[
            "link", "add", &port, "mtu", &mtu, "type", "veth", "peer", "name", "eth0", "mtu", &mtu,
            "netns", &ns,
        ],
    )?;
    ip(&node, &["link", "set", &port, "up"])?;
    let own = pod_ip(pod)?;
    ip(&ns, &["link", "set", "eth0", "address", &mac_of(own)])?;
    ip(&ns, &["addr", "add", &format!("{own}/24"), "dev", "eth0"])?;
    ip(&ns, &["link", "set", "eth0", "up"])?;
    ip(
        &ns,
        &[
            "route",
            "add",
            "default",
            "via",
            &gateway(pod.node)?.to_string(),
        ],
    )?;
    Ok(port)
}

/// Kernel receive work for frames arriving on any device of node `ns` goes to `cpu` (RPS).
pub fn steer_node_rx(ns: &str, cpu: usize) -> Result<()> {
    let script = format!(
        "for f in /sys/class/net/*/queues/rx-*/rps_cpus; do echo {} > \"$f\" || exit 1; done",
        cpu_mask(cpu)
    );
    exec(ns, &["sh", "-c", &script]).map(|_| ())
}

/// Settings of the client pod for many short connections: the whole port range, and
/// TIME_WAIT ports reusable for new outgoing connections.
pub fn tune_client(ns: &str) -> Result<()> {
    sysctl(ns, "net/ipv4/ip_local_port_range", "1024 65535")?;
    sysctl(ns, "net/ipv4/tcp_tw_reuse", "1")
}
