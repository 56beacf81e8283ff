//! The network around the nodes: an underlay namespace with a Linux bridge (the nodes' L2
//! segment), a router namespace on that bridge and towards the internet host, the internet host
//! itself, and one namespace per node with its uplink veth into the bridge.
//!
//! Invariants: the router knows only the node subnet and the internet link (plus, in routed
//! mode, one route per node podCIDR, like the seed's cloud routes) and drops anything from a
//! pod address that is not going to another pod (as the seed's 1:1 NAT does); node uplinks
//! carry no kernel address and the node kernel never answers ARP on them (ferroplane owns
//! them); the bridge forwards frames unread (no br_netfilter), as a switch does, and the
//! kernels that send into it (router, cloud LB) send wire-sized frames (no TSO/GSO); every
//! device is created inside a testbed namespace.
//!
//! In a dual-stack testbed (`--ip-family dual`) the same holds in IPv6 (`fabric6`): the router,
//! the internet host and the nodes' host stacks get IPv6 addresses too; the underlay the
//! nodes' VXLAN runs on stays IPv4 ([`crate::layout::UNDERLAY_IPV6`]).

use std::net::Ipv4Addr;
use std::path::Path;

use crate::cluster::NodeInfo;
use crate::error::Result;
use crate::layout::{
    BRIDGE, CLUSTER_CIDR, INTERNET_HOST, Layout, ROUTER_INTERNET_SIDE, ROUTER_MAC,
    ROUTER_NODE_SIDE, UPLINK, underlay_port,
};
use crate::netns::{add, ip, sysctl, within};
use crate::run_state::{IpFamily, Mode};

/// Builds the underlay bridge, the router and the internet host (in a dual-stack testbed with
/// their IPv6 side, `fabric6`).
pub fn build(layout: &Layout, mode: Mode, family: IpFamily, nodes: &[NodeInfo]) -> Result<()> {
    let underlay = layout.underlay_ns();
    let router = layout.router_ns();
    let internet = layout.internet_ns();
    for ns in [&underlay, &router, &internet] {
        add(ns)?;
    }
    ip(&underlay, &["link", "add", BRIDGE, "type", "bridge"])?;
    ip(&underlay, &["link", "set", BRIDGE, "up"])?;
    // A switch forwards frames without reading them; with br_netfilter loaded the bridge
    // would drop malformed IPv4 (short header, lying length) before any node saw it.
    let bridge_nf = "net/bridge/bridge-nf-call-iptables";
    if within(&underlay, || {
        Ok(Path::new("/proc/sys").join(bridge_nf).exists())
    })? {
        sysctl(&underlay, bridge_nf, "0")?;
    }

    // Router <-> underlay bridge.
    veth(&router, "tb-nodes", &underlay, "tb-router")?;
    ip(
        &underlay,
        &["link", "set", "tb-router", "master", BRIDGE, "up"],
    )?;
    ip(&router, &["link", "set", "tb-nodes", "address", ROUTER_MAC])?;
    address(&router, "tb-nodes", ROUTER_NODE_SIDE, 24)?;
    wire_sized(&router, "tb-nodes")?;

    // Router <-> internet host.
    veth(&router, "tb-inet", &internet, "tb-eth0")?;
    address(&router, "tb-inet", ROUTER_INTERNET_SIDE, 24)?;
    address(&internet, "tb-eth0", INTERNET_HOST, 24)?;
    ip(
        &internet,
        &[
            "route",
            "add",
            "default",
            "via",
            &ROUTER_INTERNET_SIDE.to_string(),
        ],
    )?;

    for key in ["all", "default"] {
        sysctl(&router, &format!("net/ipv4/conf/{key}/rp_filter"), "0")?;
        sysctl(&router, &format!("net/ipv4/conf/{key}/send_redirects"), "0")?;
    }
    sysctl(&router, "net/ipv4/ip_forward", "1")?;
    // Pod to pod may cross the router (routed mode); pod to anything else is dropped.
    ip(
        &router,
        &[
            "rule",
            "add",
            "pref",
            "100",
            "from",
            CLUSTER_CIDR,
            "to",
            CLUSTER_CIDR,
            "lookup",
            "main",
        ],
    )?;
    ip(
        &router,
        &[
            "rule",
            "add",
            "pref",
            "101",
            "from",
            CLUSTER_CIDR,
            "blackhole",
        ],
    )?;
    if mode == Mode::Routed {
        for node in nodes {
            ip(
                &router,
                &["route", "add", &node.pod_cidr, "via", &node.ip.to_string()],
            )?;
        }
    }
    if family.has_ipv6() {
        crate::fabric6::build(layout, mode, nodes)?;
    }
    Ok(())
}

/// Creates node `index`'s namespace and its uplink into the underlay bridge.
pub fn attach_node(layout: &Layout, index: usize, node: &NodeInfo) -> Result<String> {
    let ns = layout.node_ns(&node.name);
    add(&ns)?;
    let underlay = layout.underlay_ns();
    let port = underlay_port(index);
    veth(&ns, UPLINK, &underlay, &port)?;
    ip(&underlay, &["link", "set", &port, "master", BRIDGE, "up"])?;
    ip(&ns, &["link", "set", UPLINK, "up"])?;
    // The node IP lives on the host TAP; the kernel must not answer ARP for it on the uplink
    // with the veth's own MAC (that would steer traffic past ferroplane into the kernel).
    sysctl(&ns, &format!("net/ipv4/conf/{UPLINK}/arp_ignore"), "8")?;
    Ok(ns)
}

/// Makes the kernel of `ns` send wire-sized frames on `device` (TSO and GSO off): a TCP
/// super-packet it forwards (from the internet host's TSO) is segmented there, as it would
/// be on a real wire, instead of reaching a node's uplink as one 64 KB frame.
pub fn wire_sized(ns: &str, device: &str) -> Result<()> {
    crate::netns::exec(ns, &["ethtool", "-K", device, "tso", "off", "gso", "off"]).map(|_| ())
}

/// A veth pair with `a_name` in `a` and `b_name` in `b`, both up.
fn veth(a: &str, a_name: &str, b: &str, b_name: &str) -> Result<()> {
    ip(
        a,
        &[
            "link", "add", a_name, "type", "veth", "peer", "name", b_name, "netns", b,
        ],
    )?;
    ip(a, &["link", "set", a_name, "up"])?;
    ip(b, &["link", "set", b_name, "up"]).map(|_| ())
}

fn address(ns: &str, device: &str, addr: Ipv4Addr, prefix_len: u8) -> Result<()> {
    ip(
        ns,
        &[
            "addr",
            "add",
            &format!("{addr}/{prefix_len}"),
            "dev",
            device,
        ],
    )
    .map(|_| ())
}
