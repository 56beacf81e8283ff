//! Remote nodes and the longest-prefix match from a pod address to the node that hosts it.
//!
//! Invariants: prefixes are grouped by length and matched longest first, so a lookup costs
//! one hash probe per distinct prefix length (one in a cluster of equal per-node CIDRs).

use std::net::Ipv4Addr;

use crate::cidr::Cidr;
use crate::wire::MacAddr;

/// Another node of the cluster, as the overlay needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteNode {
    pub name: String,
    pub node_ip: Ipv4Addr,
    pub pod_cidr: Cidr,
    /// The node's VTEP MAC (inner destination MAC), from the Node's flannel backend-data.
    pub vtep_mac: MacAddr,
    /// The outer destination MAC toward `node_ip` on the underlay.
    pub underlay_mac: MacAddr,
}

#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    nodes: Vec<RemoteNode>,
    /// (prefix length, map from masked network to index in `nodes`), longest first.
    by_len: Vec<(u8, foldhash::HashMap<u32, usize>)>,
    by_node_ip: foldhash::HashMap<Ipv4Addr, usize>,
}

impl RouteTable {
    pub fn new(nodes: Vec<RemoteNode>) -> Self {
        let mut by_len: Vec<(u8, foldhash::HashMap<u32, usize>)> = Vec::new();
        let mut by_node_ip = foldhash::HashMap::default();
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
            by_node_ip.insert(n.node_ip, i);
        }
        by_len.sort_by_key(|(len, _)| std::cmp::Reverse(*len));
        Self {
            nodes,
            by_len,
            by_node_ip,
        }
    }

    /// The remote node whose pod CIDR contains `ip`.
    #[inline]
    pub fn lookup(&self, ip: Ipv4Addr) -> Option<&RemoteNode> {
        let a = u32::from(ip);
        for (len, map) in &self.by_len {
            let mask = if *len == 0 { 0 } else { u32::MAX << (32 - len) };
            if let Some(i) = map.get(&(a & mask)) {
                return self.nodes.get(*i);
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
}
