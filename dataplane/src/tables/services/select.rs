//! One compiled Service port and its per-flow backend choice (kube-proxy semantics).
//!
//! Usable endpoints are `serving && !terminating`; if there are none, `serving && terminating`;
//! never non-serving ones (user-needs B4, C2). Policy "Local" applies to ClusterIP traffic when
//! `internal_local` (D4) and to NodePort / externalIP / LB traffic when `external_local` and
//! the source is outside the cluster (D1, D3). Local restricts to node-local endpoints with the
//! same terminating fallback inside the local set.
//!
//! Invariants:
//! - Both candidate sets are computed at build time; `select` only indexes into them.
//! - `cluster` is empty exactly when the service has no serving endpoint at all; then every
//!   selection is `Reject`, whatever the policy (kube-proxy rejects before it drops).
//! - A candidate set holds the indices of one tier only (ready, or serving-terminating), in
//!   ascending order; its Maglev table, if any, holds only those indices.

use std::net::Ipv4Addr;
use std::sync::Arc;

use super::{Backend, FrontendKind, Scheduler};
use crate::flow::L4Proto;

/// Per-flow inputs to [`Service::select`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SelectCtx {
    /// How the flow reached the service (from [`super::ServiceTable::lookup`]).
    pub kind: FrontendKind,
    /// The source is a pod or this node: external traffic policy does not apply (D3).
    pub from_cluster: bool,
    /// Hash of the 5-tuple; Maglev indexes its table with it.
    pub flow_hash: u64,
    /// Per-flow random value; the Random scheduler uses it.
    pub random: u64,
}

/// The outcome of backend selection for a new flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection {
    /// Index into [`Service::backends`].
    Backend(u32),
    /// No usable endpoint anywhere: answer ICMP port unreachable / TCP RST (B3).
    Reject,
    /// Traffic policy Local and no usable local endpoint: drop silently (D1, D4).
    Drop,
}

/// Which endpoints a candidate set was drawn from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Tier {
    /// `serving && !terminating`.
    Ready,
    /// `serving && terminating`, used only when no ready endpoint exists.
    Terminating,
}

/// The backends one traffic policy may choose from, with their Maglev table.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct CandidateSet {
    pub(super) tier: Tier,
    pub(super) members: Box<[u32]>,
    /// Present iff the scheduler is Maglev and `members` is not empty.
    pub(super) maglev: Option<Arc<[u32]>>,
}

impl CandidateSet {
    fn admits(&self, backend: &Backend) -> bool {
        backend.serving && backend.terminating == (self.tier == Tier::Terminating)
    }
}

/// One Service port as workers see it. Built by [`super::ServiceTable::build`].
#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    pub(super) name: Arc<str>,
    pub(super) proto: L4Proto,
    pub(super) port: u16,
    pub(super) node_port: Option<u16>,
    pub(super) backends: Box<[Backend]>,
    pub(super) scheduler: Scheduler,
    pub(super) affinity_timeout: Option<u32>,
    pub(super) internal_local: bool,
    pub(super) external_local: bool,
    /// (network, mask) pairs with the host bits of `network` cleared.
    pub(super) source_ranges: Box<[(u32, u32)]>,
    /// Usable endpoints on any node.
    pub(super) cluster: CandidateSet,
    /// Usable endpoints on this node.
    pub(super) local: CandidateSet,
}

impl Service {
    /// `namespace/name:portname`.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    pub fn proto(&self) -> L4Proto {
        self.proto
    }

    /// The Service port (ClusterIP, externalIP and LB front ends).
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn node_port(&self) -> Option<u16> {
        self.node_port
    }

    /// All endpoints, sorted by (ip, port) and de-duplicated; selections index into this.
    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    pub fn scheduler(&self) -> Scheduler {
        self.scheduler
    }

    /// ClientIP affinity timeout in seconds, if affinity is on.
    pub fn affinity_timeout(&self) -> Option<u32> {
        self.affinity_timeout
    }

    pub fn internal_local(&self) -> bool {
        self.internal_local
    }

    pub fn external_local(&self) -> bool {
        self.external_local
    }

    /// Local endpoints that are serving and not terminating: the `localEndpoints` of the
    /// healthCheckNodePort answer, which must be 503 when this is 0 (D2, C2).
    pub fn local_ready_endpoints(&self) -> usize {
        match self.local.tier {
            Tier::Ready => self.local.members.len(),
            Tier::Terminating => 0,
        }
    }

    /// The candidate set `ctx` selects from, and whether that set is the Local one.
    #[inline]
    fn candidates(&self, kind: FrontendKind, from_cluster: bool) -> (&CandidateSet, bool) {
        let local_policy = if kind.is_external() {
            self.external_local && !from_cluster
        } else {
            self.internal_local
        };
        if local_policy {
            (&self.local, true)
        } else {
            (&self.cluster, false)
        }
    }

    /// Chooses the backend for a new flow. O(1), no allocation.
    #[inline]
    pub fn select(&self, ctx: &SelectCtx) -> Selection {
        if self.cluster.members.is_empty() {
            return Selection::Reject;
        }
        let (set, is_local) = self.candidates(ctx.kind, ctx.from_cluster);
        let pick = match &set.maglev {
            Some(table) => pick(table, ctx.flow_hash),
            None => pick(&set.members, ctx.random),
        };
        match pick {
            Some(index) => Selection::Backend(index),
            None if is_local => Selection::Drop,
            None => Selection::Reject,
        }
    }

    /// The index of backend `ip:port` if [`Service::select`] could choose it for `ctx`'s kind
    /// and source: what a ClientIP affinity entry must check before reusing its backend, so
    /// affinity never pins to an unready, terminating-while-others-ready or deleted endpoint,
    /// nor to a remote one under policy Local (E2, D9). O(log n) in the backend count.
    pub fn selectable(&self, ctx: &SelectCtx, ip: Ipv4Addr, port: u16) -> Option<u32> {
        let position = self
            .backends
            .binary_search_by(|b| (b.ip, b.port).cmp(&(ip, port)))
            .ok()?;
        let backend = self.backends.get(position)?;
        let (set, is_local) = self.candidates(ctx.kind, ctx.from_cluster);
        let eligible =
            !set.members.is_empty() && set.admits(backend) && (!is_local || backend.node_local);
        if eligible {
            u32::try_from(position).ok()
        } else {
            None
        }
    }

    /// `loadBalancerSourceRanges` (D5): LB IP and externalIP traffic must come from a listed
    /// range when any is listed; ClusterIP and NodePort traffic is never filtered. In-cluster
    /// sources must not be filtered either: the caller skips this check when `from_cluster`.
    #[inline]
    pub fn source_allowed(&self, kind: FrontendKind, src: Ipv4Addr) -> bool {
        let filtered = matches!(kind, FrontendKind::LoadBalancer | FrontendKind::ExternalIp);
        if !filtered || self.source_ranges.is_empty() {
            return true;
        }
        let src = u32::from(src);
        self.source_ranges
            .iter()
            .any(|&(network, mask)| src & mask == network)
    }
}

/// `entries[value % len]`, or `None` when there are no entries.
#[inline]
fn pick(entries: &[u32], value: u64) -> Option<u32> {
    let len = u64::try_from(entries.len()).ok().filter(|&len| len > 0)?;
    let slot = usize::try_from(value % len).ok()?;
    entries.get(slot).copied()
}
