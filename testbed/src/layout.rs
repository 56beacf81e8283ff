//! The address plan and the names of everything one testbed creates.
//!
//! Invariants: the prefix is 1 to 12 lowercase letters and digits, so one testbed's names
//! (`<prefix>-...`) never match another's; node addresses come from 192.168.50.0/24, the
//! internet from the documentation range 203.0.113.0/24, LoadBalancer IPs from
//! 198.51.100.0/24; device names fit IFNAMSIZ.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use crate::error::{Error, Result};

/// Where run directories live (tmpfs: gone after a reboot, like the namespaces).
pub const RUN_ROOT: &str = "/run/ferroplane-testbed";
/// The default prefix of namespaces and the run directory.
pub const DEFAULT_PREFIX: &str = "fptb";
/// The most nodes one testbed builds (node IPs 192.168.50.2 ..).
pub const MAX_NODES: usize = 100;

/// The router's address on the node subnet; nodes send what leaves the cluster there.
pub const ROUTER_NODE_SIDE: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 1);
/// The router's address towards the internet host.
pub const ROUTER_INTERNET_SIDE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// The "internet" host.
pub const INTERNET_HOST: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// The internet's range (the documentation range TEST-NET-3).
pub const INTERNET_CIDR: &str = "203.0.113.0/24";
/// The cloud load balancer's address on the node subnet; the router sends the pool there.
pub const CLOUD_LB_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 254);
/// The LoadBalancer ingress pool (TEST-NET-2), handed to `ferroplane init`'s default.
pub const LB_POOL: &str = "198.51.100.0/24";
/// The underlay network the nodes, the router and the cloud LB share.
pub const UNDERLAY_CIDR: &str = "192.168.50.0/24";
/// The router's MAC on the node subnet: every node's `nextHopMAC`.
pub const ROUTER_MAC: &str = "02:fd:00:00:00:01";
/// The pod address range handed to `ferroplane init`.
pub const CLUSTER_CIDR: &str = "10.244.0.0/16";
/// The ClusterIP range handed to `ferroplane init`.
pub const SERVICE_CIDR: &str = "10.96.0.0/12";

/// Device names inside the testbed's namespaces.
// IPv6 (`up --ip-family dual`): unique-local addresses for the cluster's own ranges and the
// node subnet, documentation addresses (2001:db8::/32) for the internet and the LB pool.
pub const CLUSTER_CIDR6: &str = "fd00:10:244::/56";
pub const SERVICE_CIDR6: &str = "fd00:10:96::/112";
pub const LB_POOL6: &str = "2001:db8:5100::/120";
pub const UNDERLAY_CIDR6: &str = "fd00:192:168:50::/64";
pub const ROUTER_NODE_SIDE6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x192, 0x168, 0x50, 0, 0, 0, 1);
pub const ROUTER_INTERNET_SIDE6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x203, 0, 0, 0, 0, 1);
pub const INTERNET_HOST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x203, 0, 0, 0, 0, 0x10);
pub const CLOUD_LB_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x192, 0x168, 0x50, 0, 0, 0, 0xfe);

/// Whether a dual-stack testbed's nodes use their IPv6 address as `nodeIP` (the VXLAN outer
/// header, routed next hops): the one switch for the underlay's family. Off until the nodes
/// carry VXLAN over an IPv6 underlay; IPv4-only testbeds have no IPv6 address to use anyway.
pub const UNDERLAY_IPV6: bool = false;

/// The address a node's ferroplane takes as `nodeIP` ([`UNDERLAY_IPV6`]).
pub fn underlay_address(ip: Ipv4Addr, ip6: Option<Ipv6Addr>) -> std::net::IpAddr {
    match ip6 {
        Some(ip6) if UNDERLAY_IPV6 => ip6.into(),
        _ => ip.into(),
    }
}

pub const BRIDGE: &str = "tb-br0";
pub const UPLINK: &str = "tb-up0";
pub const HOST_TAP: &str = "tb-host";
pub const POD_IF: &str = "eth0";

/// The names of one testbed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub prefix: String,
}

impl Layout {
    pub fn new(prefix: &str) -> Result<Layout> {
        let valid = (1..=12).contains(&prefix.len())
            && prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !valid {
            return Err(Error(format!(
                "prefix {prefix:?}: use 1 to 12 lowercase letters and digits"
            )));
        }
        Ok(Layout {
            prefix: prefix.to_owned(),
        })
    }

    pub fn run_dir(&self) -> PathBuf {
        PathBuf::from(RUN_ROOT).join(&self.prefix)
    }

    pub fn underlay_ns(&self) -> String {
        format!("{}-underlay", self.prefix)
    }

    pub fn router_ns(&self) -> String {
        format!("{}-router", self.prefix)
    }

    pub fn internet_ns(&self) -> String {
        format!("{}-internet", self.prefix)
    }

    /// The hostile-traffic scenarios' attacker on the underlay (see `attack`).
    pub fn attacker_ns(&self) -> String {
        format!("{}-attacker", self.prefix)
    }

    pub fn cloud_lb_ns(&self) -> String {
        format!("{}-cloudlb", self.prefix)
    }

    pub fn node_ns(&self, node: &str) -> String {
        format!("{}-{node}", self.prefix)
    }

    pub fn pod_ns(&self, namespace: &str, pod: &str) -> String {
        format!("{}-pod-{namespace}-{pod}", self.prefix)
    }

    /// Whether namespace `name` belongs to this testbed.
    pub fn owns(&self, name: &str) -> bool {
        name.strip_prefix(&self.prefix)
            .is_some_and(|rest| rest.starts_with('-'))
    }
}

/// The name of the `index`th node (0-based): `node-1`, `node-2`, ...
pub fn node_name(index: usize) -> String {
    format!("node-{}", index + 1)
}

/// The IP of the `index`th node: 192.168.50.2, .3, ...
pub fn node_ip(index: usize) -> Option<Ipv4Addr> {
    let last = u8::try_from(index + 2).ok().filter(|_| index < MAX_NODES)?;
    Some(Ipv4Addr::new(192, 168, 50, last))
}

/// The dataplane's MAC on a node's uplink: `02:fe:` and the node IP's bytes.
/// The IPv6 address of node `index` in a dual-stack testbed (`fd00:192:168:50::<index+2>`,
/// mirroring its IPv4 address).
pub fn node_ip6(index: usize) -> Option<Ipv6Addr> {
    let last = u16::try_from(index + 2)
        .ok()
        .filter(|_| index < MAX_NODES)?;
    Some(Ipv6Addr::new(0xfd00, 0x192, 0x168, 0x50, 0, 0, 0, last))
}

pub fn uplink_mac(node_ip: Ipv4Addr) -> String {
    let [a, b, c, d] = node_ip.octets();
    format!("02:fe:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// The name of the underlay's port towards the `index`th node.
pub fn underlay_port(index: usize) -> String {
    format!("tb-n{}", index + 1)
}

/// A pod's MAC, as ferroplane expects it: `0a:58:` and the pod IP's bytes.
pub fn pod_mac(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("0a:58:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_short_lowercase_alphanumerics() {
        assert!(Layout::new("fptb").is_ok());
        assert!(Layout::new("t42").is_ok());
        for bad in ["", "Fptb", "fp-tb", "fp tb", "abcdefghijklm"] {
            assert!(Layout::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_layout_owns_only_its_own_namespaces() {
        let layout = Layout::new("fptb").unwrap();
        assert!(layout.owns("fptb-underlay"));
        assert!(layout.owns(&layout.pod_ns("default", "web")));
        assert!(!layout.owns("fptb2-underlay"));
        assert!(!layout.owns("fptb"));
        assert!(!layout.owns("other-fptb-x"));
    }

    #[test]
    fn node_addresses_and_macs_follow_the_plan() {
        assert_eq!(node_ip(0), Some(Ipv4Addr::new(192, 168, 50, 2)));
        assert_eq!(node_ip(99), Some(Ipv4Addr::new(192, 168, 50, 101)));
        assert_eq!(node_ip(MAX_NODES), None);
        assert_eq!(
            node_ip6(1),
            Some("fd00:192:168:50::3".parse::<Ipv6Addr>().unwrap())
        );
        assert_eq!(node_ip6(MAX_NODES), None);
        assert_eq!(
            uplink_mac(Ipv4Addr::new(192, 168, 50, 3)),
            "02:fe:c0:a8:32:03"
        );
        assert_eq!(pod_mac(Ipv4Addr::new(10, 244, 1, 2)), "0a:58:0a:f4:01:02");
        assert!(underlay_port(MAX_NODES - 1).len() <= 15);
    }
}
