//! Flushing flows that a table change made stale, when a new snapshot replaces an old one.
//!
//! Rules (user-needs A3, A5, A10, C1):
//! - UDP flows DNATed to a backend that is no longer a serving endpoint of any UDP Service
//!   are removed (senders that reuse one source port would otherwise be blackholed).
//! - Flows whose front end belonged to a Service whose port, nodePort or target ports changed
//!   are removed (all protocols: the old translation points at a port nobody serves).
//! - Flows to or from a local pod IP that disappeared are removed before the IP is reused.
//! - TCP flows to a backend that is merely terminating or gone are kept: they finish
//!   gracefully (C1); only their new connections go elsewhere.
//!
//! Invariants:
//! - This runs on the control thread (one scan of the flow table per publication that needs
//!   it), after the new snapshot is published, and never on a worker.
//! - Before scanning, it waits (bounded) until every worker has left the round it was in at
//!   publication (`quiesce`): a worker still deciding on the old tables could otherwise
//!   re-create a flow to a removed backend right behind the scan, and a steady UDP sender
//!   would stay blackholed on it (security review M4). On timeout it flushes anyway and says
//!   so in the report (`Quiescence::TimedOut`), for the caller to log.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use crate::flow::L4Proto;
use crate::quiesce::{DEFAULT_GRACE_TIMEOUT, Quiescence};
use crate::snapshot::Snapshot;
use crate::tables::conntrack::{Conntrack, FlowView, Now, flags};
use crate::tables::services::{Frontend, Service, ServiceTable};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlushReport {
    pub udp_backend_removed: usize,
    pub service_changed: usize,
    pub pod_deleted: usize,
    /// Whether the workers left the old snapshot before the scan (always `Quiet` when there
    /// was nothing to flush: no wait happens then).
    pub quiescence: Quiescence,
}

impl FlushReport {
    pub fn total(&self) -> usize {
        self.udp_backend_removed + self.service_changed + self.pod_deleted
    }
}

/// Removes the flows of `ct` that `new` makes stale relative to `old`, after a grace period
/// of at most [`DEFAULT_GRACE_TIMEOUT`]. Call after `new` is published.
pub fn flush_stale(ct: &Conntrack, old: &Snapshot, new: &Snapshot, now: Now) -> FlushReport {
    flush_stale_within(ct, old, new, now, DEFAULT_GRACE_TIMEOUT)
}

/// [`flush_stale`] with the grace period bounded by `grace`.
pub fn flush_stale_within(
    ct: &Conntrack,
    old: &Snapshot,
    new: &Snapshot,
    now: Now,
    grace: Duration,
) -> FlushReport {
    let touched = if Arc::ptr_eq(&old.services, &new.services) {
        Vec::new()
    } else {
        unshared(&old.services, &new.services)
    };
    let gone_udp = removed_udp_backends(&touched, &new.services);
    let changed = changed_services(&touched, &new.services);
    let gone_pods = removed_pod_ips(old, new);
    let mut report = FlushReport::default();
    if gone_udp.is_empty() && changed.is_empty() && gone_pods.is_empty() {
        return report;
    }
    report.quiescence = ct.readers().wait_quiescent(grace);
    ct.flush(now, |f: &FlowView| {
        let dnat = f.flags & flags::DNAT != 0;
        if dnat
            && f.original.proto == L4Proto::Udp
            && gone_udp.contains(&(f.reply.src, f.reply.sport))
        {
            report.udp_backend_removed += 1;
            return true;
        }
        if dnat
            && let Frontend::Service { id, .. } =
                old.services
                    .lookup(f.original.dst, f.original.dport, f.original.proto)
            && changed.contains(&id)
        {
            report.service_changed += 1;
            return true;
        }
        let touches = |ip: &Ipv4Addr| gone_pods.contains(ip);
        if [f.original.src, f.original.dst, f.reply.src, f.reply.dst]
            .iter()
            .any(touches)
        {
            report.pod_deleted += 1;
            return true;
        }
        false
    });
    report
}

/// Services of `old` that `new` does not share (the only ones a rebuild may have changed).
///
/// A Service kept at the same id is told by one pointer compare; only the others are looked
/// up among `new`'s Services not kept in place (few, unless ids shifted), so a sync that
/// changed a few Services costs a pass over two arrays of pointers, not a hash set of all.
fn unshared(old: &ServiceTable, new: &ServiceTable) -> Vec<(u32, Arc<Service>)> {
    let mut moved_old = Vec::new();
    let mut moved_new = HashSet::new();
    let (mut olds, mut news) = ((1u32..).zip(old.shared()), new.shared());
    loop {
        match (olds.next(), news.next()) {
            (Some((_, o)), Some(n)) if Arc::ptr_eq(o, n) => {}
            (None, None) => break,
            (o, n) => {
                moved_old.extend(o);
                moved_new.extend(n.map(Arc::as_ptr));
            }
        }
    }
    moved_old
        .into_iter()
        .filter(|(_, s)| !moved_new.contains(&Arc::as_ptr(s)))
        .map(|(id, s)| (id, Arc::clone(s)))
        .collect()
}

/// Serving UDP backends of the `changed` services of `old` that are not serving UDP backends
/// in `new`.
fn removed_udp_backends(
    changed: &[(u32, Arc<Service>)],
    new: &ServiceTable,
) -> HashSet<(Ipv4Addr, u16)> {
    let serving_udp = |s: &Service| {
        (s.proto() == L4Proto::Udp)
            .then(|| {
                s.backends()
                    .iter()
                    .filter(|b| b.serving)
                    .map(|b| (b.ip, b.port))
            })
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
    };
    let candidates: Vec<(Ipv4Addr, u16)> =
        changed.iter().flat_map(|(_, s)| serving_udp(s)).collect();
    if candidates.is_empty() {
        return HashSet::new();
    }
    let now: HashSet<(Ipv4Addr, u16)> = new.iter().flat_map(|(_, s)| serving_udp(s)).collect();
    candidates
        .into_iter()
        .filter(|b| !now.contains(b))
        .collect()
}

/// Ids (in `old`) of the `changed` services present in `new` whose ports changed.
fn changed_services(changed: &[(u32, Arc<Service>)], new: &ServiceTable) -> HashSet<u32> {
    if changed.is_empty() {
        return HashSet::new();
    }
    let by_name: std::collections::HashMap<&str, &Service> =
        new.iter().map(|(_, s)| (&**s.name(), s)).collect();
    changed
        .iter()
        .filter(|(_, s)| {
            by_name
                .get(&**s.name())
                .is_some_and(|n| ports_changed(s, n))
        })
        .map(|(id, _)| *id)
        .collect()
}

fn ports_changed(a: &Service, b: &Service) -> bool {
    let targets = |s: &Service| -> HashSet<u16> { s.backends().iter().map(|x| x.port).collect() };
    a.port() != b.port()
        || a.proto() != b.proto()
        || a.node_port() != b.node_port()
        || (!a.backends().is_empty() && !b.backends().is_empty() && targets(a) != targets(b))
}

/// Local pod addresses `old` had that `new` does not. Pod IPs are reused only on the node
/// that owns the pod CIDR, so each node flushes its own deleted pods; a pod that merely left
/// a Service's selector is not deleted and keeps its connections.
fn removed_pod_ips(old: &Snapshot, new: &Snapshot) -> HashSet<Ipv4Addr> {
    old.ports
        .pods()
        .map(|p| p.ip)
        .filter(|ip| new.ports.pod(*ip).is_none())
        .collect()
}
