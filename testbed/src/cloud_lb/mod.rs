//! The cloud's L4 load balancer, as a namespace on the underlay: it owns no address of the
//! LoadBalancer pool, it routes each ingress IP (198.51.100.0/24, and 2001:db8:5100::/120 in a
//! dual-stack testbed) to the nodes with kernel ECMP
//! hashed on the 5-tuple, like a pass-through cloud network LB (the node sees the client's own
//! address and answers it directly through the router), and it sends only to nodes whose health
//! check answers 200 (see [`balancer`]).
//!
//! Invariants: every device and route it makes lives in the testbed's `cloudlb` or router
//! namespace; the router reaches the pool only through it; its health checker runs inside its
//! namespace as a process of its own, found by `down` like every other testbed process.

pub mod balancer;
pub mod health;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::error::Result;
use crate::layout::{
    BRIDGE, CLOUD_LB_IP, CLOUD_LB_IP6, INTERNET_CIDR, LB_POOL, LB_POOL6, Layout, ROUTER_NODE_SIDE,
};
use crate::netns::{add, ip, spawn_until_ready, sysctl};
use crate::run_state::IpFamily;

/// The LB's device on the underlay bridge, and its peer there.
const LB_IF: &str = "tb-lb0";
const UNDERLAY_PORT: &str = "tb-lb";
const READY_WITHIN: Duration = Duration::from_secs(10);

/// Creates the LB namespace on the underlay and points the router's pool route at it.
pub fn build(layout: &Layout, family: IpFamily) -> Result<()> {
    let ns = layout.cloud_lb_ns();
    let underlay = layout.underlay_ns();
    add(&ns)?;
    ip(
        &ns,
        &[
            "link",
            "add",
            LB_IF,
            "type",
            "veth",
            "peer",
            "name",
            UNDERLAY_PORT,
            "netns",
            &underlay,
        ],
    )?;
    ip(
        &underlay,
        &["link", "set", UNDERLAY_PORT, "master", BRIDGE, "up"],
    )?;
    ip(
        &ns,
        &["addr", "add", &format!("{CLOUD_LB_IP}/24"), "dev", LB_IF],
    )?;
    ip(&ns, &["link", "set", LB_IF, "up"])?;
    crate::fabric::wire_sized(&ns, LB_IF)?;
    // Only for the LB's own ICMP errors: client traffic is never routed back through it.
    ip(
        &ns,
        &[
            "route",
            "add",
            INTERNET_CIDR,
            "via",
            &ROUTER_NODE_SIDE.to_string(),
        ],
    )?;
    for key in ["all", "default", LB_IF] {
        sysctl(&ns, &format!("net/ipv4/conf/{key}/rp_filter"), "0")?;
        sysctl(&ns, &format!("net/ipv4/conf/{key}/send_redirects"), "0")?;
    }
    sysctl(&ns, "net/ipv4/ip_forward", "1")?;
    // ECMP on source and destination address and port, as cloud L4 balancers hash.
    sysctl(&ns, "net/ipv4/fib_multipath_hash_policy", "1")?;
    ip(
        &layout.router_ns(),
        &["route", "add", LB_POOL, "via", &CLOUD_LB_IP.to_string()],
    )?;
    if family.has_ipv6() {
        crate::fabric6::enable_ipv6(&ns)?;
        sysctl(&ns, "net/ipv6/conf/all/forwarding", "1")?;
        sysctl(&ns, "net/ipv6/fib_multipath_hash_policy", "1")?;
        crate::fabric6::address6(&ns, LB_IF, &format!("{CLOUD_LB_IP6}/64"))?;
        ip(
            &layout.router_ns(),
            &[
                "-6",
                "route",
                "add",
                LB_POOL6,
                "via",
                &CLOUD_LB_IP6.to_string(),
            ],
        )?;
    }
    Ok(())
}

/// Starts the balancer (`testbed cloud-lb`) in the LB namespace for `nodes` and waits until it
/// has programmed its first routes.
pub fn launch(
    layout: &Layout,
    state_dir: &Path,
    nodes: &[Ipv4Addr],
    nodes6: &[Ipv6Addr],
) -> Result<u32> {
    let nodes: Vec<String> = nodes.iter().map(Ipv4Addr::to_string).collect();
    let nodes6: Vec<String> = nodes6.iter().map(Ipv6Addr::to_string).collect();
    let mut command = Command::new(std::env::current_exe()?);
    command
        .arg("cloud-lb")
        .arg("--state-dir")
        .arg(state_dir)
        .args(["--nodes", &nodes.join(",")]);
    if !nodes6.is_empty() {
        command.args(["--nodes6", &nodes6.join(",")]);
    }
    let log = layout.run_dir().join("cloud-lb.log");
    spawn_until_ready(&layout.cloud_lb_ns(), &command, &log, "ready", READY_WITHIN)
}
