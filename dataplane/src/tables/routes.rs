//! Remote nodes and the longest-prefix match from a pod address to the node that hosts it.
//!
//! Invariants: prefixes are grouped by length and matched longest first, so a lookup costs
//! one probe per distinct prefix length (one in a cluster of equal per-node CIDRs). A length
//! whose networks lie close together (the per-node /24s of one cluster CIDR) is an array
//! indexed by the network number, without hashing; others are a hash map. Both answer alike.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::cidr::Cidr;
use crate::wire::MacAddr;

/// A VXLAN peer by the underlay address its packets come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerAddr {
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

/// Another node of the cluster, as the overlay needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteNode {
    pub name: String,
    /// The node's IPv4 underlay address (VXLAN over IPv4, its key for `peer`); `0.0.0.0` when
    /// its underlay is IPv6 only.
    pub node_ip: Ipv4Addr,
    /// The node's IPv6 underlay address, if any (VXLAN over IPv6, its key for `peer6`).
    pub node_ip6: Option<Ipv6Addr>,
    pub pod_cidr: Cidr,
    /// The node's VTEP MAC (inner destination MAC), from the Node's flannel backend-data.
    pub vtep_mac: MacAddr,
    /// The outer destination MAC toward `node_ip` on the underlay.
    pub underlay_mac: MacAddr,
}

#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    nodes: Vec<RemoteNode>,
    /// (prefix length, the networks of that length), longest first.
    by_len: Vec<(u8, Networks)>,
    by_node_ip: foldhash::HashMap<Ipv4Addr, usize>,
    by_node_ip6: foldhash::HashMap<Ipv6Addr, usize>,
}

/// The most array slots a dense prefix index may take.
const DENSE_MAX_SLOTS: u32 = 1 << 16;

/// The networks of one prefix length, each with its index in `nodes`.
#[derive(Clone, Debug)]
enum Networks {
    /// `slots[network number - first]` holds the index + 1 (0: no such network); the network
    /// number is the address shifted right by `shift` (32 - prefix length).
    Dense {
        shift: u32,
        first: u32,
        slots: Vec<u32>,
    },
    /// Masked network -> index.
    Sparse(foldhash::HashMap<u32, usize>),
}

impl Networks {
    /// Indexes `map` (masked network -> index, prefix length `len`) densely when its networks
    /// span at most `DENSE_MAX_SLOTS` network numbers.
    fn new(len: u8, map: foldhash::HashMap<u32, usize>) -> Self {
        if len == 0 || len > 32 {
            return Self::Sparse(map);
        }
        let shift = 32 - u32::from(len);
        let numbers = || map.keys().map(|net| net >> shift);
        let (Some(first), Some(last)) = (numbers().min(), numbers().max()) else {
            return Self::Sparse(map);
        };
        if last - first >= DENSE_MAX_SLOTS {
            return Self::Sparse(map);
        }
        let mut slots = vec![0u32; (last - first + 1) as usize];
        for (net, index) in &map {
            slots[((net >> shift) - first) as usize] = *index as u32 + 1;
        }
        Self::Dense {
            shift,
            first,
            slots,
        }
    }

    /// The index of the network of this length that contains `addr`.
    #[inline]
    fn get(&self, len: u8, addr: u32) -> Option<usize> {
        match self {
            Self::Dense {
                shift,
                first,
                slots,
            } => {
                let slot = slots.get((addr >> shift).wrapping_sub(*first) as usize)?;
                slot.checked_sub(1).map(|i| i as usize)
            }
            Self::Sparse(map) => {
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                map.get(&(addr & mask)).copied()
            }
        }
    }
}

impl RouteTable {
    pub fn new(nodes: Vec<RemoteNode>) -> Self {
        let mut by_len: Vec<(u8, foldhash::HashMap<u32, usize>)> = Vec::new();
        let mut by_node_ip = foldhash::HashMap::default();
        let mut by_node_ip6 = foldhash::HashMap::default();
        for (i, n) in nodes.iter().enumerate() {
            let len = n.pod_cidr.prefix();
            let slot = match by_len.iter().position(|(l, _)| *l == len) {
                Some(s) => s,
                None => {
                    by_len.push((len, foldhash::HashMap::default()));
                    by_len.len() - 1
                }
            };
            by_len[slot].1.insert(u32::from(n.pod_cidr.network()), i);
            if !n.node_ip.is_unspecified() {
                by_node_ip.insert(n.node_ip, i);
            }
            if let Some(ip6) = n.node_ip6 {
                by_node_ip6.insert(ip6, i);
            }
        }
        by_len.sort_by_key(|(len, _)| std::cmp::Reverse(*len));
        let by_len = by_len
            .into_iter()
            .map(|(len, map)| (len, Networks::new(len, map)))
            .collect();
        Self {
            nodes,
            by_len,
            by_node_ip,
            by_node_ip6,
        }
    }

    /// The remote node whose pod CIDR contains `ip`.
    #[inline]
    pub fn lookup(&self, ip: Ipv4Addr) -> Option<&RemoteNode> {
        let a = u32::from(ip);
        for (len, networks) in &self.by_len {
            if let Some(i) = networks.get(*len, a) {
                return self.nodes.get(i);
            }
        }
        None
    }

    /// The remote node with this underlay address (known VTEP peers for decapsulation).
    #[inline]
    pub fn peer(&self, node_ip: Ipv4Addr) -> Option<&RemoteNode> {
        self.by_node_ip
            .get(&node_ip)
            .and_then(|i| self.nodes.get(*i))
    }

    /// The remote node with this IPv6 underlay address (IPv6-outer VXLAN peers).
    #[inline]
    pub fn peer6(&self, node_ip6: Ipv6Addr) -> Option<&RemoteNode> {
        self.by_node_ip6
            .get(&node_ip6)
            .and_then(|i| self.nodes.get(*i))
    }

    /// The remote node a `Remote6` (or anything keyed alike) names: by its IPv4 underlay
    /// address, else by its IPv6 one.
    #[inline]
    pub fn peer_either(
        &self,
        node_ip: Ipv4Addr,
        node_ip6: Option<Ipv6Addr>,
    ) -> Option<&RemoteNode> {
        if node_ip.is_unspecified() {
            node_ip6.and_then(|ip| self.peer6(ip))
        } else {
            self.peer(node_ip)
        }
    }

    pub fn nodes(&self) -> &[RemoteNode] {
        &self.nodes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ip: [u8; 4], cidr: &str) -> RemoteNode {
        RemoteNode {
            name: name.into(),
            node_ip: Ipv4Addr::from(ip),
            node_ip6: None,
            pod_cidr: cidr.parse().expect("cidr"),
            vtep_mac: MacAddr([2, 0, 0, 0, 0, ip[3]]),
            underlay_mac: MacAddr([2, 1, 0, 0, 0, ip[3]]),
        }
    }

    #[test]
    fn longest_prefix_wins_and_peers_are_found_by_node_ip() {
        let t = RouteTable::new(vec![
            node("wide", [192, 168, 0, 2], "10.244.0.0/16"),
            node("n1", [192, 168, 0, 3], "10.244.1.0/24"),
        ]);
        assert_eq!(
            t.lookup(Ipv4Addr::new(10, 244, 1, 9))
                .map(|n| n.name.as_str()),
            Some("n1")
        );
        assert_eq!(
            t.lookup(Ipv4Addr::new(10, 244, 7, 9))
                .map(|n| n.name.as_str()),
            Some("wide")
        );
        assert!(t.lookup(Ipv4Addr::new(10, 0, 0, 1)).is_none());
        assert_eq!(
            t.peer(Ipv4Addr::new(192, 168, 0, 3))
                .map(|n| n.name.as_str()),
            Some("n1")
        );
        assert!(t.peer(Ipv4Addr::new(192, 168, 0, 9)).is_none());
    }

    #[test]
    fn dense_and_sparse_indexes_answer_alike() {
        // Close /24s (dense), a far-away /24 (the same length, so that length goes sparse),
        // and a /0 (always sparse).
        let close = vec![
            node("a", [192, 168, 0, 2], "10.244.1.0/24"),
            node("b", [192, 168, 0, 3], "10.244.3.0/24"),
        ];
        let mut far = close.clone();
        far.push(node("c", [192, 168, 0, 4], "172.16.9.0/24"));
        let mut default = close.clone();
        default.push(node("d", [192, 168, 0, 5], "0.0.0.0/0"));
        let name =
            |t: &RouteTable, ip: [u8; 4]| t.lookup(Ipv4Addr::from(ip)).map(|n| n.name.clone());
        for t in [
            RouteTable::new(close),
            RouteTable::new(far),
            RouteTable::new(default),
        ] {
            let sparse_default = t.nodes.len() == 3 && t.nodes[2].name == "d";
            assert_eq!(name(&t, [10, 244, 1, 200]).as_deref(), Some("a"));
            assert_eq!(name(&t, [10, 244, 3, 1]).as_deref(), Some("b"));
            // Between, below and above the dense range.
            for ip in [
                [10, 244, 2, 1],
                [10, 244, 0, 255],
                [10, 244, 4, 0],
                [0, 0, 0, 0],
            ] {
                let want = sparse_default.then_some("d");
                assert_eq!(name(&t, ip).as_deref(), want, "{ip:?}");
            }
        }
        let far = RouteTable::new(vec![
            node("a", [192, 168, 0, 2], "10.244.1.0/24"),
            node("c", [192, 168, 0, 4], "172.16.9.0/24"),
        ]);
        assert!(matches!(far.by_len[0].1, Networks::Sparse(_)));
        assert_eq!(name(&far, [172, 16, 9, 3]).as_deref(), Some("c"));
        let close = RouteTable::new(vec![node("a", [192, 168, 0, 2], "10.244.1.0/24")]);
        assert!(matches!(close.by_len[0].1, Networks::Dense { .. }));
    }
}
