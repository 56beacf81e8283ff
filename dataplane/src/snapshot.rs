//! The immutable table generation that workers run against, and its publication.
//!
//! Invariants:
//! - A `Snapshot` is never mutated after `publish`; the control thread builds a whole new
//!   one and swaps one pointer (RCU via `arc_swap`). A worker loads the pointer once per
//!   batch, so every packet of a batch sees exactly one generation, never half an update.
//! - Per-flow state (conntrack, affinity) is not in the snapshot: it outlives generations.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::tables::node::NodeConfig;
use crate::tables::policy::PolicyTable;
use crate::tables::ports::PortTable;
use crate::tables::routes::RouteTable;
use crate::tables::services::ServiceTable;
use crate::tables::v6::V6Tables;

pub struct Snapshot {
    /// Increases by one per publication.
    pub generation: u64,
    pub node: NodeConfig,
    pub ports: PortTable,
    /// Shared between generations until the nodes change (a Service or endpoint change
    /// publishes the same table, not a copy of every remote node).
    pub routes: Arc<RouteTable>,
    /// Shared between generations when unchanged (a publication that only moved an endpoint
    /// reuses the policy table, and the Services it did not touch).
    pub services: Arc<ServiceTable>,
    pub policy: Arc<PolicyTable>,
    /// The IPv6 side (`V6Tables::default()` on an IPv4-only node: IPv6 frames are dropped).
    pub v6: Arc<V6Tables>,
}

/// The slot workers read the current snapshot from.
pub struct SnapshotCell {
    current: ArcSwap<Snapshot>,
}

impl SnapshotCell {
    pub fn new(first: Snapshot) -> Self {
        Self {
            current: ArcSwap::from_pointee(first),
        }
    }

    /// The current generation (one atomic load plus a reference count).
    #[inline]
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Replaces the current snapshot; returns the previous one (for diff-driven flushes).
    pub fn publish(&self, next: Snapshot) -> Arc<Snapshot> {
        self.current.swap(Arc::new(next))
    }
}
