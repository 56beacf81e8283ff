//! The IPv6 tables of a snapshot: the node's IPv6 settings, its pods' IPv6 addresses, the
//! remote nodes' IPv6 pod CIDRs and the IPv6 Service frontends (`Service6`: ClusterIPs,
//! NodePorts on the node's IPv6 addresses, LoadBalancer IPs and externalIPs). Empty
//! (`V6Tables::default()`) on an IPv4-only node: every IPv6 frame is then dropped as
//! `ipv6_disabled`.
//!
//! Invariants:
//! - Built by the control thread, immutable inside a snapshot, like the IPv4 tables.
//! - A pod's IPv6 address maps to exactly one pod port; `pod_on(port)` and `pod(ip)` agree.
//! - Remote IPv6 pod CIDRs are matched longest prefix first (one hash probe per distinct
//!   prefix length); each names its node by the node's underlay address (IPv4, else IPv6),
//!   the key of the [`RouteTable`](super::routes::RouteTable) that holds its VTEP.
//! - A frontend is kept even without backends (its traffic is rejected, as kube-proxy does);
//!   its `local` backends are those on this node (a local pod or the node's own address),
//!   computed when the frontends are set; every ClusterIP frontend's address is a VIP; every
//!   frontend address is in the node's Service ranges or in `external_addrs`.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use crate::cidr6::{Cidr6, mask};
use crate::packet::PortId;
use crate::tables::routes::PeerAddr;
use crate::wire::MacAddr;

/// The link-local address pods use as their IPv6 default gateway (answered on every pod port).
pub const GATEWAY_LINK_LOCAL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

/// The node's IPv6 settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V6Node {
    /// This node's IPv6 pod CIDR (the Node's `spec.podCIDRs` IPv6 entry).
    pub pod_cidr: Cidr6,
    /// The cluster's IPv6 pod range.
    pub cluster_cidr: Cidr6,
    /// IPv6 Service ranges: traffic to them is DNATed to a frontend's backends, or dropped.
    pub service_cidrs: Vec<Cidr6>,
    /// The pods' global gateway address (the pod CIDR's first address), besides
    /// [`GATEWAY_LINK_LOCAL`].
    pub gateway_ip: Ipv6Addr,
    /// The node's own IPv6 addresses (its host stack's); may be empty.
    pub node_ips: Vec<Ipv6Addr>,
    /// Destinations pods reach unmasqueraded besides the cluster range (routable pod
    /// addresses); everything else from a pod is masqueraded to [`Self::masquerade_address`].
    pub masquerade_exempt: Vec<Cidr6>,
}

impl V6Node {
    /// Defaults around a pod CIDR (tests, examples): gateway = the CIDR's first address.
    pub fn example(pod_cidr: Cidr6, cluster_cidr: Cidr6) -> Self {
        Self {
            pod_cidr,
            cluster_cidr,
            service_cidrs: Vec::new(),
            gateway_ip: Ipv6Addr::from(u128::from(pod_cidr.network()) + 1),
            node_ips: Vec::new(),
            masquerade_exempt: Vec::new(),
        }
    }

    /// `ip` is this node's own (delivered to its host stack).
    #[inline]
    pub fn is_own_address(&self, ip: Ipv6Addr) -> bool {
        self.node_ips.contains(&ip)
    }

    /// `ip` is one of the gateway addresses pods route through.
    #[inline]
    pub fn is_gateway(&self, ip: Ipv6Addr) -> bool {
        ip == self.gateway_ip || ip == GATEWAY_LINK_LOCAL
    }

    #[inline]
    pub fn in_service_cidrs(&self, ip: Ipv6Addr) -> bool {
        self.service_cidrs.iter().any(|c| c.contains(ip))
    }

    /// The address pod traffic leaving the cluster is masqueraded to: the node's first IPv6
    /// address (its InternalIP before its ExternalIP). `None`: the node has no IPv6 address.
    #[inline]
    pub fn masquerade_address(&self) -> Option<Ipv6Addr> {
        self.node_ips.first().copied()
    }

    /// A pod's packet to `dst` leaves the cluster and is masqueraded.
    #[inline]
    pub fn needs_masquerade(&self, dst: Ipv6Addr) -> bool {
        !self.is_pod_network(dst)
            && !self.in_service_cidrs(dst)
            && !self.is_own_address(dst)
            && !self.is_gateway(dst)
            && !self.masquerade_exempt.iter().any(|c| c.contains(dst))
    }

    /// An address of a pod network: the cluster range or this node's pod CIDR.
    #[inline]
    pub fn is_pod_network(&self, ip: Ipv6Addr) -> bool {
        self.cluster_cidr.contains(ip) || self.pod_cidr.contains(ip)
    }
}

/// A local pod's IPv6 side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod6 {
    /// "namespace/name".
    pub name: Arc<str>,
    pub ip: Ipv6Addr,
    pub mac: MacAddr,
    pub port: PortId,
    /// The pod's IPv4 address in a dual-stack cluster (its NetworkPolicy identity).
    pub ip4: Option<Ipv4Addr>,
}

/// A remote node's IPv6 pod CIDR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remote6 {
    pub name: String,
    pub pod_cidr: Cidr6,
    /// The node's IPv4 underlay address (its VTEP, and its key in the IPv4 route table);
    /// `0.0.0.0` when its underlay is IPv6 only.
    pub node_ip: Ipv4Addr,
    /// The node's IPv6 underlay address, if any (its key there when `node_ip` is `0.0.0.0`).
    pub node_ip6: Option<Ipv6Addr>,
    /// The node's own IPv6 addresses.
    pub node_ips: Vec<Ipv6Addr>,
}

/// How a frontend is reached (kube-proxy's Service rules differ by it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kind6 {
    /// A ClusterIP from `spec.clusterIPs`.
    #[default]
    ClusterIp,
    /// `spec.ports[].nodePort` on one of the node's own IPv6 addresses.
    NodePort,
    /// A LoadBalancer ingress IP or an externalIP.
    External,
}

/// An IPv6 Service frontend (an address, a port and its protocol) and its ready backends
/// (addresses of EndpointSlices with `addressType: IPv6`, target ports).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service6 {
    pub ip: Ipv6Addr,
    pub port: u16,
    pub proto: u8,
    pub backends: Vec<(Ipv6Addr, u16)>,
    pub kind: Kind6,
    /// `externalTrafficPolicy: Local` (NodePort and external frontends only): sources outside
    /// the cluster reach only this node's backends and keep their address.
    pub external_local: bool,
    /// `loadBalancerSourceRanges` in IPv6 (LoadBalancer IPs only); `None` admits everyone, an
    /// empty list (the ranges were all IPv4) no one.
    pub source_ranges: Option<Vec<Cidr6>>,
}

impl Service6 {
    /// A ClusterIP frontend (tests, examples).
    pub fn cluster_ip(ip: Ipv6Addr, port: u16, proto: u8, backends: Vec<(Ipv6Addr, u16)>) -> Self {
        Self {
            ip,
            port,
            proto,
            backends,
            kind: Kind6::ClusterIp,
            external_local: false,
            source_ranges: None,
        }
    }
}

/// A frontend as the dataplane reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frontend6 {
    pub kind: Kind6,
    pub external_local: bool,
    /// Every ready backend; may be empty (the frontend then rejects).
    pub backends: Arc<[(Ipv6Addr, u16)]>,
    /// The backends on this node (`backends` filtered), for externalTrafficPolicy Local.
    pub local: Arc<[(Ipv6Addr, u16)]>,
    pub source_ranges: Option<Arc<[Cidr6]>>,
}

impl Frontend6 {
    /// Whether `loadBalancerSourceRanges` admit `src`.
    #[inline]
    pub fn admits(&self, src: Ipv6Addr) -> bool {
        self.source_ranges
            .as_ref()
            .is_none_or(|ranges| ranges.iter().any(|c| c.contains(src)))
    }
}

/// A frontend's key: address, port, protocol.
type FrontendKey = (Ipv6Addr, u16, u8);

#[derive(Clone, Debug, Default)]
pub struct V6Tables {
    node: Option<V6Node>,
    /// (address, port, protocol) -> frontend.
    services: foldhash::HashMap<FrontendKey, Frontend6>,
    /// The ClusterIPs (a ClusterIP owns its whole address: its unserved ports are rejected).
    vips: foldhash::HashSet<Ipv6Addr>,
    /// The frontend addresses outside the node's Service ranges (NodePorts, LoadBalancer IPs,
    /// externalIPs, a ClusterIP of a range the node does not list): with the Service ranges,
    /// what may be a frontend at all (pod-to-pod traffic skips the lookup).
    external_addrs: foldhash::HashSet<Ipv6Addr>,
    pods_by_ip: foldhash::HashMap<Ipv6Addr, Pod6>,
    pod_by_port: Vec<Option<Ipv6Addr>>,
    remotes: Vec<Remote6>,
    /// (prefix length, masked network -> index in `remotes`), longest first.
    by_len: Vec<(u8, foldhash::HashMap<u128, usize>)>,
    by_node_ip: foldhash::HashMap<Ipv4Addr, usize>,
    by_node_ip6: foldhash::HashMap<Ipv6Addr, usize>,
    by_underlay6: foldhash::HashMap<Ipv6Addr, usize>,
}

impl V6Tables {
    pub fn new(node: V6Node, pods: Vec<Pod6>, remotes: Vec<Remote6>) -> Self {
        let ports = pods
            .iter()
            .map(|p| usize::from(p.port.0) + 1)
            .max()
            .unwrap_or(0);
        let mut pod_by_port = vec![None; ports];
        for p in &pods {
            pod_by_port[usize::from(p.port.0)] = Some(p.ip);
        }
        let mut by_len: Vec<(u8, foldhash::HashMap<u128, usize>)> = Vec::new();
        let mut by_node_ip = foldhash::HashMap::default();
        let mut by_node_ip6 = foldhash::HashMap::default();
        let mut by_underlay6 = foldhash::HashMap::default();
        for (i, r) in remotes.iter().enumerate() {
            let len = r.pod_cidr.prefix();
            let slot = match by_len.iter().position(|(l, _)| *l == len) {
                Some(s) => s,
                None => {
                    by_len.push((len, foldhash::HashMap::default()));
                    by_len.len() - 1
                }
            };
            by_len[slot].1.insert(u128::from(r.pod_cidr.network()), i);
            if !r.node_ip.is_unspecified() {
                by_node_ip.insert(r.node_ip, i);
            }
            if let Some(ip) = r.node_ip6 {
                by_underlay6.insert(ip, i);
            }
            for ip in &r.node_ips {
                by_node_ip6.insert(*ip, i);
            }
        }
        by_len.sort_by_key(|(len, _)| std::cmp::Reverse(*len));
        Self {
            node: Some(node),
            services: foldhash::HashMap::default(),
            vips: foldhash::HashSet::default(),
            external_addrs: foldhash::HashSet::default(),
            pods_by_ip: pods.into_iter().map(|p| (p.ip, p)).collect(),
            pod_by_port,
            remotes,
            by_len,
            by_node_ip,
            by_node_ip6,
            by_underlay6,
        }
    }

    /// The same tables with these Service frontends (the first of two with one key wins).
    pub fn with_services(mut self, services: Vec<Service6>) -> Self {
        for s in services {
            if s.kind == Kind6::ClusterIp {
                self.vips.insert(s.ip);
            }
            if !self.node.as_ref().is_some_and(|n| n.in_service_cidrs(s.ip)) {
                self.external_addrs.insert(s.ip);
            }
            let local: Vec<_> = s
                .backends
                .iter()
                .copied()
                .filter(|(ip, _)| {
                    self.pods_by_ip.contains_key(ip)
                        || self.node.as_ref().is_some_and(|n| n.is_own_address(*ip))
                })
                .collect();
            let frontend = Frontend6 {
                kind: s.kind,
                external_local: s.external_local,
                backends: s.backends.into(),
                local: local.into(),
                source_ranges: s.source_ranges.map(Into::into),
            };
            self.services
                .entry((s.ip, s.port, s.proto))
                .or_insert(frontend);
        }
        self
    }

    /// The frontend of (address, port, protocol).
    #[inline]
    pub fn frontend(&self, ip: Ipv6Addr, port: u16, proto: u8) -> Option<&Frontend6> {
        self.services.get(&(ip, port, proto))
    }

    /// The backends of a frontend (empty when it has none).
    #[inline]
    pub fn service(&self, ip: Ipv6Addr, port: u16, proto: u8) -> Option<&[(Ipv6Addr, u16)]> {
        self.frontend(ip, port, proto).map(|f| &f.backends[..])
    }

    /// `ip` holds a frontend outside the node's Service ranges (a NodePort, a LoadBalancer IP,
    /// an externalIP).
    #[inline]
    pub fn is_external_address(&self, ip: Ipv6Addr) -> bool {
        self.external_addrs.contains(&ip)
    }

    /// `ip` is a ClusterIP.
    #[inline]
    pub fn is_vip(&self, ip: Ipv6Addr) -> bool {
        self.vips.contains(&ip)
    }

    /// The node's IPv6 settings; `None` on an IPv4-only node.
    #[inline]
    pub fn node(&self) -> Option<&V6Node> {
        self.node.as_ref()
    }

    #[inline]
    pub fn pod(&self, ip: Ipv6Addr) -> Option<&Pod6> {
        self.pods_by_ip.get(&ip)
    }

    /// The pod on a pod port, by its IPv6 side.
    #[inline]
    pub fn pod_on(&self, port: PortId) -> Option<&Pod6> {
        self.pod_by_port
            .get(usize::from(port.0))
            .copied()
            .flatten()
            .and_then(|ip| self.pods_by_ip.get(&ip))
    }

    /// The remote node whose IPv6 pod CIDR contains `ip`.
    #[inline]
    pub fn lookup(&self, ip: Ipv6Addr) -> Option<&Remote6> {
        let a = u128::from(ip);
        self.by_len
            .iter()
            .find_map(|(len, map)| map.get(&(a & mask(*len))))
            .and_then(|i| self.remotes.get(*i))
    }

    /// The remote node with this IPv4 underlay address (a VXLAN peer).
    #[inline]
    pub fn peer(&self, node_ip: Ipv4Addr) -> Option<&Remote6> {
        self.by_node_ip
            .get(&node_ip)
            .and_then(|i| self.remotes.get(*i))
    }

    /// The remote node a VXLAN packet came from, by its outer source.
    #[inline]
    pub fn peer_at(&self, from: PeerAddr) -> Option<&Remote6> {
        let index = match from {
            PeerAddr::V4(ip) => self.by_node_ip.get(&ip),
            PeerAddr::V6(ip) => self.by_underlay6.get(&ip),
        };
        index.and_then(|i| self.remotes.get(*i))
    }

    /// The remote node that owns this IPv6 node address.
    #[inline]
    pub fn peer_by_ip6(&self, ip: Ipv6Addr) -> Option<&Remote6> {
        self.by_node_ip6.get(&ip).and_then(|i| self.remotes.get(*i))
    }

    pub fn pods(&self) -> impl Iterator<Item = &Pod6> {
        self.pods_by_ip.values()
    }

    pub fn remotes(&self) -> &[Remote6] {
        &self.remotes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(name: &str, v4: [u8; 4], cidr: &str) -> Remote6 {
        Remote6 {
            name: name.into(),
            pod_cidr: cidr.parse().unwrap(),
            node_ip: Ipv4Addr::from(v4),
            node_ip6: None,
            node_ips: vec![format!("2001:db8::{}", v4[3]).parse().unwrap()],
        }
    }

    #[test]
    fn lookups_by_cidr_peer_port_and_address() {
        let node = V6Node::example(
            "fd00:10:244::/64".parse().unwrap(),
            "fd00:10:244::/56".parse().unwrap(),
        );
        assert_eq!(
            node.gateway_ip,
            "fd00:10:244::1".parse::<Ipv6Addr>().unwrap()
        );
        let pod = Pod6 {
            name: "default/a".into(),
            ip: "fd00:10:244::5".parse().unwrap(),
            mac: MacAddr([2, 0, 0, 0, 0, 5]),
            port: PortId(3),
            ip4: None,
        };
        let t = V6Tables::new(
            node,
            vec![pod.clone()],
            vec![
                remote("wide", [192, 168, 0, 2], "fd00:10::/32"),
                remote("n1", [192, 168, 0, 3], "fd00:10:244:1::/64"),
            ],
        );
        assert_eq!(t.pod_on(PortId(3)), Some(&pod));
        assert_eq!(t.pod_on(PortId(2)), None);
        assert_eq!(t.pod_on(PortId(9)), None);
        let name = |ip: &str| t.lookup(ip.parse().unwrap()).map(|r| r.name.as_str());
        assert_eq!(name("fd00:10:244:1::7"), Some("n1"));
        assert_eq!(name("fd00:10:9::7"), Some("wide"));
        assert_eq!(name("fd01::7"), None);
        assert_eq!(
            t.peer(Ipv4Addr::new(192, 168, 0, 3))
                .map(|r| r.name.as_str()),
            Some("n1")
        );
        assert_eq!(
            t.peer_by_ip6("2001:db8::2".parse().unwrap())
                .map(|r| r.name.as_str()),
            Some("wide")
        );
        assert!(V6Tables::default().node().is_none());
    }
}
