//! The node's ports (uplink, host, one per pod) and the local pods behind them.
//!
//! Invariant: `PortId` values index `kinds`; every local pod maps to exactly one pod port,
//! and a pod whose port is outside `kinds` is reachable by IP but owns no port.

use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::packet::PortId;
use crate::wire::MacAddr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortKind {
    /// The underlay NIC: VXLAN, egress, external ingress.
    Uplink,
    /// A TAP into the node's own kernel stack: node-local traffic.
    Host,
    /// A pod's interface.
    Pod,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalPod {
    /// "namespace/name".
    pub name: Arc<str>,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    pub port: PortId,
}

#[derive(Clone, Debug, Default)]
pub struct PortTable {
    kinds: Vec<PortKind>,
    pods_by_ip: foldhash::HashMap<Ipv4Addr, LocalPod>,
    /// Indexed by `PortId`: the addresses of the pod on that port (as `pods_by_ip` holds it),
    /// if it is a pod port; the anti-spoofing check of every pod packet reads them without
    /// hashing.
    pod_by_port: Vec<Option<(Ipv4Addr, MacAddr)>>,
    /// The lowest and highest local pod address (`None`: no pods): `pod` answers an address
    /// outside them without hashing (most destinations are not local pods).
    pod_range: Option<(u32, u32)>,
    uplink: Option<PortId>,
    host: Option<PortId>,
}

impl PortTable {
    pub fn new(kinds: Vec<PortKind>, pods: Vec<LocalPod>) -> Self {
        let uplink = kinds
            .iter()
            .position(|k| *k == PortKind::Uplink)
            .map(|i| PortId(i as u16));
        let host = kinds
            .iter()
            .position(|k| *k == PortKind::Host)
            .map(|i| PortId(i as u16));
        let mut pod_by_port = vec![None; kinds.len()];
        let ports: Vec<(PortId, Ipv4Addr)> = pods.iter().map(|p| (p.port, p.ip)).collect();
        let pods_by_ip: foldhash::HashMap<Ipv4Addr, LocalPod> =
            pods.into_iter().map(|p| (p.ip, p)).collect();
        for (port, ip) in ports {
            if let (Some(slot), Some(pod)) = (
                pod_by_port.get_mut(usize::from(port.0)),
                pods_by_ip.get(&ip),
            ) {
                *slot = Some((pod.ip, pod.mac));
            }
        }
        let addresses = || pods_by_ip.keys().map(|ip| u32::from(*ip));
        let pod_range = addresses().min().zip(addresses().max());
        Self {
            kinds,
            pods_by_ip,
            pod_by_port,
            pod_range,
            uplink,
            host,
        }
    }

    #[inline]
    pub fn kind(&self, port: PortId) -> Option<PortKind> {
        self.kinds.get(usize::from(port.0)).copied()
    }

    #[inline]
    pub fn pod(&self, ip: Ipv4Addr) -> Option<&LocalPod> {
        let (low, high) = self.pod_range?;
        if !(low..=high).contains(&u32::from(ip)) {
            return None;
        }
        self.pods_by_ip.get(&ip)
    }

    /// The pod attached to a pod port.
    #[inline]
    pub fn pod_on(&self, port: PortId) -> Option<&LocalPod> {
        self.pod_addresses_on(port)
            .and_then(|(ip, _)| self.pods_by_ip.get(&ip))
    }

    /// The IP and MAC address of the pod attached to a pod port (`pod_on`'s, without a lookup).
    #[inline]
    pub fn pod_addresses_on(&self, port: PortId) -> Option<(Ipv4Addr, MacAddr)> {
        self.pod_by_port.get(usize::from(port.0)).copied().flatten()
    }

    pub fn uplink(&self) -> Option<PortId> {
        self.uplink
    }

    pub fn host(&self) -> Option<PortId> {
        self.host
    }

    pub fn len(&self) -> usize {
        self.kinds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    pub fn pods(&self) -> impl Iterator<Item = &LocalPod> {
        self.pods_by_ip.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ip: [u8; 4], port: u16) -> LocalPod {
        LocalPod {
            name: name.into(),
            ip: Ipv4Addr::from(ip),
            mac: MacAddr([2, 0, 0, 0, 0, ip[3]]),
            port: PortId(port),
        }
    }

    #[test]
    fn pods_are_found_by_address_and_port_and_nothing_else() {
        let kinds = vec![
            PortKind::Uplink,
            PortKind::Host,
            PortKind::Pod,
            PortKind::Pod,
        ];
        let t = PortTable::new(
            kinds,
            vec![pod("a", [10, 244, 1, 5], 2), pod("b", [10, 244, 1, 9], 3)],
        );
        let name = |ip: [u8; 4]| t.pod(Ipv4Addr::from(ip)).map(|p| p.name.to_string());
        assert_eq!(name([10, 244, 1, 5]).as_deref(), Some("a"));
        assert_eq!(name([10, 244, 1, 9]).as_deref(), Some("b"));
        // Inside the range of pod addresses but no pod; below it; above it.
        for ip in [
            [10, 244, 1, 7],
            [10, 244, 1, 4],
            [10, 244, 1, 10],
            [10, 244, 2, 5],
        ] {
            assert_eq!(name(ip), None, "{ip:?}");
        }
        assert_eq!(
            t.pod_addresses_on(PortId(3)),
            Some((Ipv4Addr::new(10, 244, 1, 9), MacAddr([2, 0, 0, 0, 0, 9])))
        );
        assert_eq!(
            t.pod_on(PortId(2)).map(|p| p.ip),
            Some(Ipv4Addr::new(10, 244, 1, 5))
        );
        for port in [0, 1, 4] {
            assert_eq!(t.pod_addresses_on(PortId(port)), None);
            assert!(t.pod_on(PortId(port)).is_none());
        }
        let empty = PortTable::new(vec![PortKind::Uplink], Vec::new());
        assert!(empty.pod(Ipv4Addr::new(10, 244, 1, 5)).is_none());
    }
}
