//! Compiles [`ServiceSpec`]s into a [`ServiceTable`]: validates each spec, de-duplicates and
//! sorts its backends, precomputes both candidate sets and their Maglev tables, and indexes
//! its front ends.
//!
//! Invariants:
//! - A spec is checked completely before anything of it is inserted, so a refused spec
//!   leaves no trace: `build_lenient` keeps every other spec exactly as `build` would (B8).
//! - Ids are handed out to accepted specs in input order, starting at 1.
//! - Among copies of one (ip, port) the best-conditioned one is kept (ready, then
//!   serving-terminating, then non-serving; ties broken by pod name, then locality), so the
//!   result does not depend on the order EndpointSlices listed them (B5).
//! - A rebuild with [`Reuse`] whose specs have the previous table's names in its order (the
//!   usual case under endpoint churn: no Service port added, removed or refused) patches a
//!   copy of the previous front-end index, re-indexing only the changed specs; anything else
//!   (a refused or colliding spec included) falls back to the full build, so the result is
//!   always the full build's.

use std::cmp::Ordering;
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;

use super::frontend::{Collision, FrontendIndex};
use super::maglev;
use super::select::{CandidateSet, Service, Tier};
use super::{Backend, Scheduler, ServiceId, ServiceSpec, ServiceTable};
use crate::flow::L4Proto;

/// Maglev table size used by the default configuration (Cilium's default too).
pub const DEFAULT_MAGLEV_M: usize = 16381;

/// Why one spec could not be compiled; every variant names the spec's service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BuildError {
    /// `ip:port/proto` is claimed by `holder` already (or twice by the spec itself).
    DuplicateFrontend {
        service: Arc<str>,
        holder: Arc<str>,
        ip: Ipv4Addr,
        port: u16,
        proto: L4Proto,
    },
    /// Services carry TCP or UDP only.
    UnsupportedProto { service: Arc<str>, proto: L4Proto },
    /// The Service port or the NodePort is 0.
    ZeroPort { service: Arc<str> },
    /// A `loadBalancerSourceRanges` prefix longer than 32.
    InvalidSourceRange {
        service: Arc<str>,
        network: Ipv4Addr,
        prefix: u8,
    },
    /// The configured Maglev table size is not prime.
    MaglevSizeNotPrime { service: Arc<str>, m: usize },
    /// The configured Maglev table size is smaller than a candidate set.
    MaglevSizeTooSmall {
        service: Arc<str>,
        m: usize,
        candidates: usize,
    },
    /// More backends than a `u32` index can name.
    TooManyBackends { service: Arc<str>, backends: usize },
    /// More services than a [`ServiceId`] can name.
    TooManyServices { service: Arc<str> },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DuplicateFrontend {
                service,
                holder,
                ip,
                port,
                proto,
            } => write!(
                f,
                "service {service}: front end {ip}:{port}/{} is already claimed by {holder}",
                proto.name()
            ),
            Self::UnsupportedProto { service, proto } => {
                write!(
                    f,
                    "service {service}: protocol {} is not supported",
                    proto.name()
                )
            }
            Self::ZeroPort { service } => write!(f, "service {service}: port 0"),
            Self::InvalidSourceRange {
                service,
                network,
                prefix,
            } => write!(
                f,
                "service {service}: invalid source range {network}/{prefix}"
            ),
            Self::MaglevSizeNotPrime { service, m } => {
                write!(f, "service {service}: Maglev table size {m} is not prime")
            }
            Self::MaglevSizeTooSmall {
                service,
                m,
                candidates,
            } => write!(
                f,
                "service {service}: Maglev table size {m} is below its {candidates} backends"
            ),
            Self::TooManyBackends { service, backends } => {
                write!(
                    f,
                    "service {service}: {backends} backends exceed the u32 index"
                )
            }
            Self::TooManyServices { service } => {
                write!(f, "service {service}: too many services for a u32 id")
            }
        }
    }
}

impl std::error::Error for BuildError {}

impl ServiceTable {
    /// Compiles all specs; fails on the first bad one. `maglev_m` is the largest Maglev table
    /// size (see the `maglev` module for how smaller services get smaller tables).
    pub fn build(
        specs: Vec<ServiceSpec>,
        node_addresses: &[Ipv4Addr],
        maglev_m: usize,
    ) -> Result<Self, BuildError> {
        let mut builder = Builder::new(node_addresses, maglev_m, specs.len());
        for spec in &specs {
            builder.add(spec, None)?;
        }
        Ok(builder.finish())
    }

    /// Compiles the specs that are valid and reports the ones skipped (user-needs B8).
    pub fn build_lenient(
        specs: Vec<ServiceSpec>,
        node_addresses: &[Ipv4Addr],
        maglev_m: usize,
    ) -> (Self, Vec<BuildError>) {
        Self::rebuild_lenient(specs.iter(), None, node_addresses, maglev_m)
    }

    /// Like [`Self::build_lenient`], over borrowed specs; with `reuse`, a spec whose name
    /// `reuse.previous` holds and `reuse.unchanged` accepts shares that service instead of
    /// compiling it again. When the specs name the previous table's services in its order,
    /// only the changed specs' front ends are re-indexed (see the module's invariants).
    pub fn rebuild_lenient<'a>(
        specs: impl ExactSizeIterator<Item = &'a ServiceSpec>,
        reuse: Option<Reuse<'_>>,
        node_addresses: &[Ipv4Addr],
        maglev_m: usize,
    ) -> (Self, Vec<BuildError>) {
        let Some(reuse) = reuse else {
            return Self::full_build(specs, None, node_addresses, maglev_m);
        };
        let specs: Vec<&ServiceSpec> = specs.collect();
        if let Some(table) = patch(&specs, reuse, node_addresses, maglev_m) {
            return (table, Vec::new());
        }
        Self::full_build(specs.into_iter(), Some(reuse), node_addresses, maglev_m)
    }

    fn full_build<'a>(
        specs: impl ExactSizeIterator<Item = &'a ServiceSpec>,
        reuse: Option<Reuse<'_>>,
        node_addresses: &[Ipv4Addr],
        maglev_m: usize,
    ) -> (Self, Vec<BuildError>) {
        let mut reusable = Reusable::new(reuse.map(|r| &*r.previous.services));
        let mut builder = Builder::new(node_addresses, maglev_m, specs.len());
        let errors = specs
            .filter_map(|spec| {
                let reused = reuse
                    .filter(|r| (r.unchanged)(&spec.name))
                    .and_then(|_| reusable.find(&spec.name));
                builder.add(spec, reused).err()
            })
            .collect();
        (builder.finish(), errors)
    }
}

/// What [`ServiceTable::rebuild_lenient`] may take from the table it replaces.
#[derive(Clone, Copy)]
pub struct Reuse<'a> {
    /// The table being replaced; built with the same Maglev table size.
    pub previous: &'a ServiceTable,
    /// Whether the spec of this name is the one `previous` was built from.
    pub unchanged: &'a dyn Fn(&str) -> bool,
}

/// The previous table patched: `None` unless `specs` name `reuse.previous`'s services one to
/// one in its order (so every id stays) and every changed spec compiles and indexes without
/// a collision. Then the result equals the full build: unchanged specs keep their services
/// and claims, which collided with nothing before; the changed specs' old claims are
/// released first and their new ones checked against all the others.
pub(super) fn patch(
    specs: &[&ServiceSpec],
    reuse: Reuse<'_>,
    node_addresses: &[Ipv4Addr],
    maglev_m: usize,
) -> Option<ServiceTable> {
    let previous = reuse.previous;
    if specs.len() != previous.services.len()
        || !previous.frontends.has_node_addresses(node_addresses)
    {
        return None;
    }
    let mut changed: Vec<(ServiceId, &ServiceSpec)> = Vec::new();
    for (id, (spec, old)) in (1..).zip(specs.iter().zip(previous.services.iter())) {
        // Unchanged specs carry the very name the service was built from: no string compare.
        if !Arc::ptr_eq(&old.name, &spec.name) && *old.name != *spec.name {
            return None;
        }
        if !(reuse.unchanged)(&spec.name) {
            changed.push((id, spec));
        }
    }
    let mut builder = Builder {
        services: previous.services.to_vec(),
        frontends: previous.frontends.clone(),
        maglev_m,
        maglev_m_is_prime: maglev::is_prime(maglev_m),
    };
    // `changed` is in id order.
    builder
        .frontends
        .release(|id| changed.binary_search_by_key(&id, |(c, _)| *c).is_ok());
    for (id, spec) in changed {
        let service = builder.compile(spec, id, None).ok()?;
        let slot = builder.services.get_mut(usize::try_from(id - 1).ok()?)?;
        *slot = service;
    }
    Some(builder.finish())
}

/// The previous table's services by name, for [`ServiceTable::rebuild_lenient`]. Specs
/// usually come in the previous table's order, so the service after the last one found is
/// tried first; a name map is built only at the first miss (a spec added, removed or moved),
/// so a rebuild after a small change hashes no names.
struct Reusable<'a> {
    previous: &'a [Arc<Service>],
    next: usize,
    by_name: Option<std::collections::HashMap<&'a str, usize>>,
}

impl<'a> Reusable<'a> {
    fn new(previous: Option<&'a [Arc<Service>]>) -> Self {
        Self {
            previous: previous.unwrap_or_default(),
            next: 0,
            by_name: None,
        }
    }

    fn find(&mut self, name: &str) -> Option<&'a Arc<Service>> {
        let previous = self.previous;
        let index = match previous.get(self.next) {
            Some(service) if *service.name == *name => self.next,
            _ => *self
                .by_name
                .get_or_insert_with(|| {
                    previous
                        .iter()
                        .enumerate()
                        .map(|(i, s)| (&*s.name, i))
                        .collect()
                })
                .get(name)?,
        };
        self.next = index + 1;
        previous.get(index)
    }
}

struct Builder {
    services: Vec<Arc<Service>>,
    frontends: FrontendIndex,
    maglev_m: usize,
    maglev_m_is_prime: bool,
}

impl Builder {
    fn new(node_addresses: &[Ipv4Addr], maglev_m: usize, capacity: usize) -> Self {
        Self {
            services: Vec::with_capacity(capacity),
            frontends: FrontendIndex::new(node_addresses),
            maglev_m,
            maglev_m_is_prime: maglev::is_prime(maglev_m),
        }
    }

    fn finish(self) -> ServiceTable {
        ServiceTable {
            services: self.services.into_boxed_slice(),
            frontends: self.frontends,
        }
    }

    fn add(&mut self, spec: &ServiceSpec, reused: Option<&Arc<Service>>) -> Result<(), BuildError> {
        // Ids stop below `ServiceId::MAX` so that `ServiceTable::iter`'s counter never overflows.
        let id = u32::try_from(self.services.len() + 1)
            .ok()
            .filter(|&id| id < ServiceId::MAX)
            .ok_or_else(|| BuildError::TooManyServices {
                service: spec.name.clone(),
            })?;
        let service = self.compile(spec, id, reused)?;
        self.services.push(service);
        Ok(())
    }

    /// Checks `spec`, indexes its front ends for `id` and returns its service (`reused` when
    /// given); on an error nothing of it is indexed.
    fn compile(
        &mut self,
        spec: &ServiceSpec,
        id: ServiceId,
        reused: Option<&Arc<Service>>,
    ) -> Result<Arc<Service>, BuildError> {
        let name = &spec.name;
        if !matches!(spec.proto, L4Proto::Tcp | L4Proto::Udp | L4Proto::Sctp) {
            let proto = spec.proto;
            return Err(BuildError::UnsupportedProto {
                service: name.clone(),
                proto,
            });
        }
        if spec.port == 0 || spec.node_port == Some(0) {
            return Err(BuildError::ZeroPort {
                service: name.clone(),
            });
        }
        if let Some(service) = reused {
            let claims = self
                .frontends
                .plan(spec)
                .map_err(|c| self.collision(spec, c))?;
            self.frontends.commit(id, spec.proto, &claims);
            return Ok(Arc::clone(service));
        }
        let source_ranges = compile_source_ranges(spec)?;
        let backends = canonical_backends(&spec.backends);
        // Indices stay below `u32::MAX`, which Maglev filling uses as "empty".
        if !u32::try_from(backends.len()).is_ok_and(|n| n < u32::MAX) {
            let backends = backends.len();
            return Err(BuildError::TooManyBackends {
                service: name.clone(),
                backends,
            });
        }
        let mut cluster = candidate_set(&backends, false);
        let mut local = candidate_set(&backends, true);
        if spec.scheduler == Scheduler::Maglev {
            self.check_maglev_size(spec, &cluster, &local)?;
        }
        let claims = self
            .frontends
            .plan(spec)
            .map_err(|c| self.collision(spec, c))?;
        if spec.scheduler == Scheduler::Maglev {
            cluster.maglev = maglev_table(&backends, &cluster.members, self.maglev_m);
            local.maglev = if local.members == cluster.members {
                cluster.maglev.clone()
            } else {
                maglev_table(&backends, &local.members, self.maglev_m)
            };
        }
        self.frontends.commit(id, spec.proto, &claims);
        Ok(Arc::new(Service {
            name: spec.name.clone(),
            proto: spec.proto,
            port: spec.port,
            node_port: spec.node_port,
            backends,
            scheduler: spec.scheduler,
            affinity_timeout: spec.affinity_timeout,
            internal_local: spec.internal_local,
            external_local: spec.external_local,
            source_ranges,
            cluster,
            local,
        }))
    }

    fn check_maglev_size(
        &self,
        spec: &ServiceSpec,
        cluster: &CandidateSet,
        local: &CandidateSet,
    ) -> Result<(), BuildError> {
        let service = spec.name.clone();
        let m = self.maglev_m;
        if !self.maglev_m_is_prime {
            return Err(BuildError::MaglevSizeNotPrime { service, m });
        }
        let candidates = cluster.members.len().max(local.members.len());
        if candidates > m {
            return Err(BuildError::MaglevSizeTooSmall {
                service,
                m,
                candidates,
            });
        }
        Ok(())
    }

    fn collision(&self, spec: &ServiceSpec, collision: Collision) -> BuildError {
        let holder = collision
            .holder
            .and_then(|id| usize::try_from(id).ok())
            .and_then(|id| self.services.get(id.checked_sub(1)?))
            .map_or_else(|| spec.name.clone(), |s| s.name.clone());
        BuildError::DuplicateFrontend {
            service: spec.name.clone(),
            holder,
            ip: collision.ip,
            port: collision.port,
            proto: spec.proto,
        }
    }
}

/// Normalises `loadBalancerSourceRanges` to (network, mask) with host bits cleared.
fn compile_source_ranges(spec: &ServiceSpec) -> Result<Box<[(u32, u32)]>, BuildError> {
    spec.lb_source_ranges
        .iter()
        .map(|&(network, prefix)| {
            if prefix > 32 {
                let service = spec.name.clone();
                return Err(BuildError::InvalidSourceRange {
                    service,
                    network,
                    prefix,
                });
            }
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            Ok((u32::from(network) & mask, mask))
        })
        .collect()
}

/// Lower is better: ready, then serving-terminating, then not serving.
fn condition_rank(backend: &Backend) -> u8 {
    match (backend.serving, backend.terminating) {
        (true, false) => 0,
        (true, true) => 1,
        (false, _) => 2,
    }
}

fn backend_order(a: &Backend, b: &Backend) -> Ordering {
    (
        a.ip,
        a.port,
        condition_rank(a),
        a.pod.as_deref(),
        !a.node_local,
    )
        .cmp(&(
            b.ip,
            b.port,
            condition_rank(b),
            b.pod.as_deref(),
            !b.node_local,
        ))
}

/// Sorted by (ip, port), one copy per (ip, port): the best-conditioned one.
fn canonical_backends(backends: &[Backend]) -> Box<[Backend]> {
    let mut sorted = backends.to_vec();
    sorted.sort_by(backend_order);
    sorted.dedup_by(|later, kept| (later.ip, later.port) == (kept.ip, kept.port));
    sorted.into_boxed_slice()
}

/// The ready endpoints (only node-local ones when `local_only`), or the serving-terminating
/// ones if none is ready. `backends.len()` must fit a `u32` (checked by the caller).
fn candidate_set(backends: &[Backend], local_only: bool) -> CandidateSet {
    let members_of = |terminating: bool| -> Box<[u32]> {
        (0u32..)
            .zip(backends)
            .filter(|(_, b)| (!local_only || b.node_local) && b.serving)
            .filter(|(_, b)| b.terminating == terminating)
            .map(|(index, _)| index)
            .collect()
    };
    let ready = members_of(false);
    let (tier, members) = if ready.is_empty() {
        (Tier::Terminating, members_of(true))
    } else {
        (Tier::Ready, ready)
    };
    CandidateSet {
        tier,
        members,
        maglev: None,
    }
}

/// The Maglev table over `members`, sized by [`maglev::table_size`]; `None` when empty.
fn maglev_table(backends: &[Backend], members: &[u32], max_m: usize) -> Option<Arc<[u32]>> {
    if members.is_empty() {
        return None;
    }
    let candidates: Vec<(u32, u64)> = members
        .iter()
        .filter_map(|&index| {
            let backend = backends.get(usize::try_from(index).ok()?)?;
            Some((index, maglev::identity(backend.ip, backend.port)))
        })
        .collect();
    let size = maglev::table_size(candidates.len(), max_m);
    Some(maglev::populate(&candidates, size).into())
}
