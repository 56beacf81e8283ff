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
//!
//! An IPv6 underlay ([`Underlay6`], `ipv6_underlay`): a node with an IPv6 underlay address
//! gets `nodeIP6` in its node.yaml and publishes the address on its Node as
//! `flannel.alpha.coreos.com/public-ipv6` (peers then send it IPv6-outer VXLAN: each pod family
//! over its own underlay family where both ends have one, else the other; pods get the
//! underlay MTU less 70). IPv6-outer VXLAN always travels through the raw AF_PACKET socket
//! (the tunnel socket is IPv4), so with `udp-socket` the node's kernel must leave all IPv6
//! from the uplink to the dataplane: `ip -6 rule` `iif <uplink> blackhole` (pref 11) and the
//! IPv6 `local` table moved from pref 0 to 100 behind it.

use std::net::{Ipv4Addr, Ipv6Addr};

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

/// A node's IPv6 underlay address and what the testbed does with it (module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Underlay6 {
    pub node_ip6: Ipv6Addr,
}

impl Underlay6 {
    /// The node.yaml line that gives the node its IPv6 underlay address.
    pub fn node_yaml(&self) -> String {
        format!("nodeIP6: {}\n", self.node_ip6)
    }

    /// The annotation (key, value) the node's Node manifest carries so that peers find it.
    pub fn node_annotation(&self) -> (&'static str, String) {
        (control::model::node::PUBLIC_IPV6, self.node_ip6.to_string())
    }

    /// Prepares namespace `ns` for IPv6-outer VXLAN with the given `ports.uplink.vxlan`
    /// (`uplink_vxlan()`): with `udp-socket` the kernel leaves the uplink's IPv6 to the
    /// dataplane (module doc); `raw` needs nothing (the kernel does not own the uplink MAC).
    pub fn prepare_kernel(&self, ns: &str, uplink_vxlan: &str) -> Result<()> {
        if uplink_vxlan != "udp-socket" {
            return Ok(());
        }
        if !ip(ns, &["-6", "rule", "show", "pref", "11"])?
            .trim()
            .is_empty()
        {
            return Ok(());
        }
        let rules: [&[&str]; 2] = [
            &[
                "-6",
                "rule",
                "add",
                "pref",
                "11",
                "iif",
                UPLINK,
                "blackhole",
            ],
            &["-6", "rule", "add", "pref", "100", "lookup", "local"],
        ];
        for rule in rules {
            ip(ns, rule)?;
        }
        ip(ns, &["-6", "rule", "del", "pref", "0"]).map(|_| ())
    }
}

/// The IPv6 underlay of a node at `node_ip6`, if it has one: the one function `up` calls per
/// node (`--ip-family ipv6|dual` give nodes IPv6 addresses). Checks the address as the node
/// would (`nodeIP6`).
pub fn ipv6_underlay(node_ip6: Option<Ipv6Addr>) -> Result<Option<Underlay6>> {
    let checked = control::node::config::underlay6::check(node_ip6)
        .map_err(|e| Error(format!("node IPv6 underlay address: {e}")))?;
    Ok(checked.map(|node_ip6| Underlay6 { node_ip6 }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_underlay_gives_the_node_yaml_line_and_the_annotation() {
        assert_eq!(ipv6_underlay(None).ok(), Some(None));
        let u = ipv6_underlay(Some("fd00:50::2".parse().expect("literal")))
            .expect("a unicast address")
            .expect("an underlay");
        assert_eq!(u.node_yaml(), "nodeIP6: fd00:50::2\n");
        assert_eq!(
            u.node_annotation(),
            (
                "flannel.alpha.coreos.com/public-ipv6",
                "fd00:50::2".to_owned()
            )
        );
        let err = ipv6_underlay(Some("fe80::2".parse().expect("literal")));
        assert!(err.is_err_and(|e| e.0.contains("link-local")));
    }
}
