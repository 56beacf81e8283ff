//! The IPv6 side of the fabric in a dual-stack testbed: the router's addresses on the node
//! subnet (`fd00:192:168:50::1/64`) and towards the internet host (`2001:db8:203::1/64`), the
//! internet host's `2001:db8:203::10`, the same pod-source rules as in IPv4, and in routed
//! mode a route per node IPv6 podCIDR via the node's IPv6 address (on the node subnet; the
//! kernels here refuse IPv6 routes through IPv4 next hops, `RTA_VIA`).
//!
//! Invariants: only testbed namespaces change; the router drops anything from a pod IPv6
//! address that is not going to another pod (as the IPv4 side does: pods reach the internet
//! only masqueraded); addresses are added without duplicate address detection (`nodad`), so
//! they are usable at once; the kernels never take router advertisements.

use crate::cluster::NodeInfo;
use crate::error::Result;
use crate::layout::{
    CLUSTER_CIDR6, INTERNET_HOST6, Layout, ROUTER_INTERNET_SIDE6, ROUTER_NODE_SIDE6, UNDERLAY_CIDR6,
};
use crate::netns::{ip, sysctl};
use crate::run_state::Mode;

pub fn build(layout: &Layout, mode: Mode, nodes: &[NodeInfo]) -> Result<()> {
    let router = layout.router_ns();
    let internet = layout.internet_ns();
    for ns in [&router, &internet] {
        enable_ipv6(ns)?;
    }
    sysctl(&router, "net/ipv6/conf/all/forwarding", "1")?;
    let prefix_len = UNDERLAY_CIDR6.split_once('/').map_or("64", |(_, len)| len);
    address6(
        &router,
        "tb-nodes",
        &format!("{ROUTER_NODE_SIDE6}/{prefix_len}"),
    )?;
    address6(&router, "tb-inet", &format!("{ROUTER_INTERNET_SIDE6}/64"))?;
    address6(&internet, "tb-eth0", &format!("{INTERNET_HOST6}/64"))?;
    ip(
        &internet,
        &[
            "-6",
            "route",
            "add",
            "default",
            "via",
            &ROUTER_INTERNET_SIDE6.to_string(),
        ],
    )?;
    // Pod to pod may cross the router (routed mode); pod to anything else is dropped.
    ip(
        &router,
        &[
            "-6",
            "rule",
            "add",
            "pref",
            "100",
            "from",
            CLUSTER_CIDR6,
            "to",
            CLUSTER_CIDR6,
            "lookup",
            "main",
        ],
    )?;
    ip(
        &router,
        &[
            "-6",
            "rule",
            "add",
            "pref",
            "101",
            "from",
            CLUSTER_CIDR6,
            "blackhole",
        ],
    )?;
    if mode == Mode::Routed {
        for node in nodes {
            if let (Some(cidr), Some(via)) = (&node.pod_cidr6, node.ip6) {
                ip(
                    &router,
                    &["-6", "route", "add", cidr, "via", &via.to_string()],
                )?;
            }
        }
    }
    Ok(())
}

/// Turns IPv6 on in `ns` (every device in it and those created later; `netns::add` turns it
/// off), without router advertisements taken.
pub fn enable_ipv6(ns: &str) -> Result<()> {
    for key in ["default", "all"] {
        sysctl(ns, &format!("net/ipv6/conf/{key}/accept_ra"), "0")?;
        sysctl(ns, &format!("net/ipv6/conf/{key}/disable_ipv6"), "0")?;
    }
    Ok(())
}

/// Adds `cidr` (address/length) to `device` in `ns`, usable at once.
pub fn address6(ns: &str, device: &str, cidr: &str) -> Result<()> {
    ip(ns, &["-6", "addr", "add", cidr, "dev", device, "nodad"]).map(|_| ())
}
