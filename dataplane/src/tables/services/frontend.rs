//! Front-end index: (dst ip, dst port, proto) -> (service, kind), plus the set of VIPs.
//!
//! Invariants:
//! - A NodePort is stored as one entry per node address, so every front end, NodePorts
//!   included, is found by a single probe on (ip, port, proto), and two services claiming
//!   the same destination always collide on the same key.
//! - Each key has exactly one owner; `plan` refuses a spec whose front ends collide with the
//!   index or with each other (the same address listed twice under the same kind is merged).
//! - `vips` holds every ClusterIP that is not a node address: only a ClusterIP owns its whole
//!   address (its unserved ports are `VipOtherPort`). An externalIP or LB IP owns only its
//!   (ip, port, proto) front ends; its other ports are `NotService` and are routed as if no
//!   Service were there, so a Service cannot blackhole an address it does not own
//!   (CVE-2020-8554; security review H5).
//! - Building is two-phase (`plan` checks, `commit` inserts), so a refused spec leaves the
//!   index untouched.

use std::net::Ipv4Addr;

use hashbrown::{HashMap, HashSet};

use super::{Frontend, FrontendKind, ServiceId, ServiceSpec};
use crate::flow::L4Proto;

/// The service and kind that own one destination.
#[derive(Clone, Copy, Debug)]
struct Owner {
    id: ServiceId,
    kind: FrontendKind,
}

/// One destination a spec wants, checked but not yet inserted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Claim {
    pub(super) ip: Ipv4Addr,
    pub(super) port: u16,
    pub(super) kind: FrontendKind,
}

/// Why a spec's front ends cannot be inserted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Collision {
    /// The destination claimed twice.
    pub(super) ip: Ipv4Addr,
    pub(super) port: u16,
    /// The service that holds it already; `None` when the spec claims it twice itself.
    pub(super) holder: Option<ServiceId>,
}

#[derive(Debug)]
pub(super) struct FrontendIndex {
    by_destination: HashMap<u64, Owner>,
    vips: HashSet<u32>,
    node_addresses: Box<[Ipv4Addr]>,
}

/// Packs (ip, port, proto) into one word: ip << 24 | port << 8 | proto.
#[inline]
fn destination_key(ip: Ipv4Addr, port: u16, proto: L4Proto) -> u64 {
    (u64::from(u32::from(ip)) << 24) | (u64::from(port) << 8) | proto as u64
}

impl FrontendIndex {
    pub(super) fn new(node_addresses: &[Ipv4Addr]) -> Self {
        let mut unique = node_addresses.to_vec();
        unique.sort_unstable();
        unique.dedup();
        Self {
            by_destination: HashMap::new(),
            vips: HashSet::new(),
            node_addresses: unique.into_boxed_slice(),
        }
    }

    #[inline]
    pub(super) fn lookup(&self, dst: Ipv4Addr, dport: u16, proto: L4Proto) -> Frontend {
        if let Some(owner) = self.by_destination.get(&destination_key(dst, dport, proto)) {
            return Frontend::Service {
                id: owner.id,
                kind: owner.kind,
            };
        }
        if self.vips.contains(&u32::from(dst)) {
            Frontend::VipOtherPort
        } else {
            Frontend::NotService
        }
    }

    pub(super) fn is_vip(&self, ip: Ipv4Addr) -> bool {
        self.vips.contains(&u32::from(ip))
    }

    /// Lists the destinations `spec` claims and checks them against the index and each other.
    pub(super) fn plan(&self, spec: &ServiceSpec) -> Result<Vec<Claim>, Collision> {
        let explicit = [
            (&spec.cluster_ips, FrontendKind::ClusterIp),
            (&spec.external_ips, FrontendKind::ExternalIp),
            (&spec.lb_ips, FrontendKind::LoadBalancer),
        ];
        let addressed = explicit.into_iter().flat_map(|(ips, kind)| {
            ips.iter().map(move |&ip| Claim {
                ip,
                port: spec.port,
                kind,
            })
        });
        let node_ports = spec.node_port.into_iter().flat_map(|port| {
            self.node_addresses.iter().map(move |&ip| Claim {
                ip,
                port,
                kind: FrontendKind::NodePort,
            })
        });
        let mut claims: Vec<Claim> = Vec::new();
        for claim in addressed.chain(node_ports) {
            let key = destination_key(claim.ip, claim.port, spec.proto);
            if let Some(owner) = self.by_destination.get(&key) {
                return Err(Collision {
                    ip: claim.ip,
                    port: claim.port,
                    holder: Some(owner.id),
                });
            }
            match claims
                .iter()
                .find(|c| c.ip == claim.ip && c.port == claim.port)
            {
                Some(earlier) if earlier.kind == claim.kind => {}
                Some(_) => {
                    return Err(Collision {
                        ip: claim.ip,
                        port: claim.port,
                        holder: None,
                    });
                }
                None => claims.push(claim),
            }
        }
        Ok(claims)
    }

    /// Inserts claims returned by [`FrontendIndex::plan`] for the service that becomes `id`.
    pub(super) fn commit(&mut self, id: ServiceId, proto: L4Proto, claims: &[Claim]) {
        for claim in claims {
            let key = destination_key(claim.ip, claim.port, proto);
            self.by_destination.insert(
                key,
                Owner {
                    id,
                    kind: claim.kind,
                },
            );
            let is_node_address = self.node_addresses.binary_search(&claim.ip).is_ok();
            if claim.kind == FrontendKind::ClusterIp && !is_node_address {
                self.vips.insert(u32::from(claim.ip));
            }
        }
    }
}
