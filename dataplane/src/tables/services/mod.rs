//! Service load-balancing tables: which (dst, dport, proto) is a Service front end, and which
//! backend a new flow to it goes to.
//!
//! The control plane builds a [`ServiceTable`] once per snapshot from one [`ServiceSpec`] per
//! Service port ([`ServiceTable::build`] or, to skip bad specs, [`ServiceTable::build_lenient`]).
//! It is immutable afterwards and shared read-only by all workers. Workers call
//! [`ServiceTable::lookup`] and then [`Service::select`] on the first packet of a flow; both
//! are O(1), allocate nothing and take no lock.
//!
//! Invariants:
//! - `ServiceId` `n` names `services[n - 1]`; 0 never names a service.
//! - Every (ip, port, proto) front end belongs to exactly one service; a NodePort claims
//!   (port, proto) on every node address, so it collides with an explicit front end on a
//!   node address too.
//! - A node address is never a "VIP": traffic to a node address on a port that is no
//!   NodePort (and no explicit front end) is [`Frontend::NotService`], so that SSH and the
//!   kubelet keep working when a node IP doubles as an externalIP or LB IP (k3s servicelb).
//! - Each [`Service`]'s backends are sorted by (ip, port) and de-duplicated (user-needs B5),
//!   so backend indices and Maglev tables do not depend on the order the specs listed them.
//! - Every precomputed candidate index and every Maglev table entry is `< backends().len()`.

mod builder;
mod frontend;
mod maglev;
mod select;
#[cfg(test)]
mod tests;

use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::flow::L4Proto;

pub use builder::{BuildError, DEFAULT_MAGLEV_M, Reuse};
pub use select::{SelectCtx, Selection, Service};

use frontend::FrontendIndex;

/// Names one service of a [`ServiceTable`]: its index + 1. 0 means "none".
pub type ServiceId = u32;

/// How a flow reached a service; decides which traffic policy and source ranges apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrontendKind {
    ClusterIp,
    ExternalIp,
    LoadBalancer,
    NodePort,
}

impl FrontendKind {
    /// True for the kinds that `externalTrafficPolicy` governs.
    pub fn is_external(self) -> bool {
        !matches!(self, Self::ClusterIp)
    }
}

/// How a service spreads new flows over its candidate backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheduler {
    /// `random % n` over the candidates (kube-proxy's rule).
    Random,
    /// Maglev consistent hashing on the flow hash (Eisenbud et al., NSDI 2016).
    Maglev,
}

/// One endpoint of a Service port, already resolved to its numeric target port.
#[derive(Clone, Debug, PartialEq)]
pub struct Backend {
    pub ip: Ipv4Addr,
    pub port: u16,
    /// The endpoint runs on this node.
    pub node_local: bool,
    /// EndpointSlice `conditions.serving`.
    pub serving: bool,
    /// EndpointSlice `conditions.terminating`.
    pub terminating: bool,
    /// `namespace/name` of the pod, for trace and metrics.
    pub pod: Option<Arc<str>>,
}

/// Builder input: one Service port with its front ends and endpoints.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceSpec {
    /// `namespace/name:portname`, for errors, trace and metrics.
    pub name: Arc<str>,
    pub proto: L4Proto,
    pub port: u16,
    pub cluster_ips: Vec<Ipv4Addr>,
    pub external_ips: Vec<Ipv4Addr>,
    pub lb_ips: Vec<Ipv4Addr>,
    pub node_port: Option<u16>,
    pub backends: Vec<Backend>,
    pub scheduler: Scheduler,
    /// ClientIP session affinity timeout in seconds; `None` = no affinity.
    pub affinity_timeout: Option<u32>,
    /// `internalTrafficPolicy: Local`.
    pub internal_local: bool,
    /// `externalTrafficPolicy: Local`.
    pub external_local: bool,
    /// `loadBalancerSourceRanges` as (network, prefix length); empty = all sources.
    pub lb_source_ranges: Vec<(Ipv4Addr, u8)>,
}

/// What a destination (ip, port, proto) is, as far as Services go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frontend {
    /// A front end of service `id`.
    Service { id: ServiceId, kind: FrontendKind },
    /// A ClusterIP, but not on a Service port: must never reach the host (user-needs B7).
    /// (externalIPs and LB IPs own only their Service ports: their other ports are
    /// `NotService`.)
    VipOtherPort,
    /// Nothing to do with Services.
    NotService,
}

/// All services of one snapshot, indexed by front end. Equal tables hold equal services
/// under the same ids and answer every lookup alike.
#[derive(Debug, PartialEq)]
pub struct ServiceTable {
    services: Box<[Arc<Service>]>,
    frontends: FrontendIndex,
}

impl ServiceTable {
    /// Classifies a destination: one hash probe on (ip, port, proto), NodePorts included
    /// (they are stored per node address); on a miss, one probe of the VIP set.
    #[inline]
    pub fn lookup(&self, dst: Ipv4Addr, dport: u16, proto: L4Proto) -> Frontend {
        self.frontends.lookup(dst, dport, proto)
    }

    /// The service named by `id`; `None` for 0 or an id of another snapshot that is out of range.
    #[inline]
    pub fn service(&self, id: ServiceId) -> Option<&Service> {
        let index = usize::try_from(id.checked_sub(1)?).ok()?;
        self.services.get(index).map(|s| &**s)
    }

    /// Number of services (Service ports) in the table.
    pub fn len(&self) -> usize {
        self.services.len()
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// True if `ip` is a ClusterIP that is not also a node address (see `Frontend::VipOtherPort`).
    pub fn is_vip(&self, ip: Ipv4Addr) -> bool {
        self.frontends.is_vip(ip)
    }

    /// All services with their ids, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (ServiceId, &Service)> {
        (1..).zip(self.services.iter().map(|s| &**s))
    }

    /// All services as shared handles, in id order: what a rebuild may reuse.
    pub fn shared(&self) -> impl Iterator<Item = &Arc<Service>> {
        self.services.iter()
    }
}
