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
//! - An index can be patched (`release` a set of ids' claims, then plan and commit their new
//!   specs) instead of rebuilt: `vip_refs` counts the ClusterIP claims per VIP so a VIP leaves
//!   `vips` exactly when its last ClusterIP claim is released, and a patched index equals
//!   the one a full build of the same specs gives (`PartialEq` compares what lookups see).

use std::net::Ipv4Addr;

use hashbrown::{HashMap, HashSet};

use super::{Frontend, FrontendKind, ServiceId, ServiceSpec};
use crate::flow::L4Proto;

/// The service and kind that own one destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

#[derive(Clone, Debug)]
pub(super) struct FrontendIndex {
    by_destination: HashMap<u64, Owner>,
    vips: HashSet<u32>,
    /// ClusterIP claims per VIP (building only; lookups read `vips`).
    vip_refs: HashMap<u32, u32>,
    node_addresses: Box<[Ipv4Addr]>,
}

impl PartialEq for FrontendIndex {
    fn eq(&self, other: &Self) -> bool {
        self.by_destination == other.by_destination
            && self.vips == other.vips
            && self.node_addresses == other.node_addresses
    }
}

/// Packs (ip, port, proto) into one word: ip << 24 | port << 8 | proto.
#[inline]
fn destination_key(ip: Ipv4Addr, port: u16, proto: L4Proto) -> u64 {
    (u64::from(u32::from(ip)) << 24) | (u64::from(port) << 8) | proto as u64
}

impl FrontendIndex {
    pub(super) fn new(node_addresses: &[Ipv4Addr]) -> Self {
        Self {
            by_destination: HashMap::new(),
            vips: HashSet::new(),
            vip_refs: HashMap::new(),
            node_addresses: unique_addresses(node_addresses),
        }
    }

    /// Whether the index was built for these node addresses (in any order, with repeats).
    pub(super) fn has_node_addresses(&self, node_addresses: &[Ipv4Addr]) -> bool {
        *self.node_addresses == *unique_addresses(node_addresses)
    }

    /// Removes every destination owned by a service for which `released` is true (a VIP
    /// leaves `vips` with its last ClusterIP claim); their ids can then be committed again.
    pub(super) fn release(&mut self, released: impl Fn(ServiceId) -> bool) {
        let node_addresses = &self.node_addresses;
        let vip_refs = &mut self.vip_refs;
        let vips = &mut self.vips;
        self.by_destination.retain(|&key, owner| {
            if !released(owner.id) {
                return true;
            }
            // The key's top bits are the address (see `destination_key`).
            let ip = (key >> 24) as u32;
            let is_node_address = node_addresses.binary_search(&Ipv4Addr::from(ip)).is_ok();
            if owner.kind == FrontendKind::ClusterIp
                && !is_node_address
                && let Some(count) = vip_refs.get_mut(&ip)
            {
                *count -= 1;
                if *count == 0 {
                    vip_refs.remove(&ip);
                    vips.remove(&ip);
                }
            }
            false
        });
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
                *self.vip_refs.entry(u32::from(claim.ip)).or_insert(0) += 1;
            }
        }
    }
}

fn unique_addresses(node_addresses: &[Ipv4Addr]) -> Box<[Ipv4Addr]> {
    let mut unique = node_addresses.to_vec();
    unique.sort_unstable();
    unique.dedup();
    unique.into_boxed_slice()
}
