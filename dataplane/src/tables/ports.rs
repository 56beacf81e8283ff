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
    /// Indexed by `PortId`: the pod on that port, if it is a pod port.
    pod_by_port: Vec<Option<Ipv4Addr>>,
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
        for p in &pods {
            if let Some(slot) = pod_by_port.get_mut(usize::from(p.port.0)) {
                *slot = Some(p.ip);
            }
        }
        let pods_by_ip = pods.into_iter().map(|p| (p.ip, p)).collect();
        Self {
            kinds,
            pods_by_ip,
            pod_by_port,
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
        self.pods_by_ip.get(&ip)
    }

    /// The pod attached to a pod port.
    #[inline]
    pub fn pod_on(&self, port: PortId) -> Option<&LocalPod> {
        self.pod_by_port
            .get(usize::from(port.0))
            .copied()
            .flatten()
            .and_then(|ip| self.pods_by_ip.get(&ip))
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
