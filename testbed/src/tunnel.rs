//! The node kernel's side of the UDP tunnel uplink (`ports.uplink.vxlan: udp-socket`), set
//! before the node's ferroplane starts, as a host with a real NIC would be set up:
//!
//! - the uplink veth gets the dataplane's uplink MAC (`02:fe:<node ip>`): the peers' kernels
//!   ARP for the node IP, the dataplane answers with that MAC, and the node's kernel must
//!   accept the VXLAN datagrams sent to it;
//! - policy rules make the kernel's own stack take only UDP to the VXLAN port from the uplink
//!   (to the tunnel socket) and blackhole the rest, which the dataplane's raw socket takes:
//!   `iif <uplink> ipproto udp dport <port> lookup local` (pref 10), `iif <uplink> blackhole`
//!   (11), and the `local` table moved from pref 0 to 100 behind them.
//!
//! Invariants: only the node's own namespace is changed; running it twice changes nothing
//! more (a restarted node finds its rules in place); which uplink the nodes use comes from
//! `FERROPLANE_TESTBED_UPLINK_VXLAN` (`udp-socket`, the default, or `raw`).

use std::net::Ipv4Addr;

use crate::error::{Error, Result};
use crate::layout::{UPLINK, uplink_mac};
use crate::netns::ip;

/// The cluster's VXLAN port (`ferroplane init`'s default, which the testbed keeps).
pub const VXLAN_PORT: u16 = dataplane::wire::vxlan::DEFAULT_PORT;
/// The environment variable that picks the nodes' VXLAN uplink.
pub const UPLINK_VXLAN_ENV: &str = "FERROPLANE_TESTBED_UPLINK_VXLAN";

/// How the nodes' uplinks carry VXLAN: the `ports.uplink.vxlan` value.
pub fn uplink_vxlan() -> Result<&'static str> {
    match std::env::var(UPLINK_VXLAN_ENV).as_deref() {
        Err(_) | Ok("") | Ok("udp-socket") => Ok("udp-socket"),
        Ok("raw") => Ok("raw"),
        Ok(other) => Err(Error(format!(
            "{UPLINK_VXLAN_ENV}={other:?}: use udp-socket or raw"
        ))),
    }
}

/// Prepares namespace `ns` of the node at `node_ip` for the tunnel socket (module doc).
pub fn prepare_kernel(ns: &str, node_ip: Ipv4Addr) -> Result<()> {
    ip(
        ns,
        &["link", "set", UPLINK, "address", &uplink_mac(node_ip)],
    )?;
    if !ip(ns, &["rule", "show", "pref", "10"])?.trim().is_empty() {
        return Ok(());
    }
    let port = VXLAN_PORT.to_string();
    let rules: [&[&str]; 3] = [
        &[
            "rule", "add", "pref", "10", "iif", UPLINK, "ipproto", "udp", "dport", &port, "lookup",
            "local",
        ],
        &["rule", "add", "pref", "11", "iif", UPLINK, "blackhole"],
        &["rule", "add", "pref", "100", "lookup", "local"],
    ];
    for rule in rules {
        ip(ns, rule)?;
    }
    ip(ns, &["rule", "del", "pref", "0"]).map(|_| ())
}
