//! Prefetch hints for a batch driver: the cache lines a lookup of a flow key will read,
//! requested some packets ahead (see `flowmap`'s prefetch module for the two stages).
//!
//! Invariant: hints only; nothing is written or locked, and a hint that comes too late or
//! names a record that changed meanwhile costs a wasted load, never a wrong lookup.

use super::Conntrack;
use crate::flow::FlowKey;
use crate::tables::flowmap::Probe;

impl Conntrack {
    /// Hashes `key` once for both prefetch stages.
    #[inline]
    pub fn probe(&self, key: &FlowKey) -> Probe {
        self.map.probe(&key.to_words())
    }

    /// Stage 1: starts loading the headers of the key's candidate buckets.
    #[inline]
    pub fn prefetch_buckets(&self, probe: &Probe) {
        self.map.prefetch_buckets(probe);
    }

    /// Stage 2: starts loading the records that may hold the key (issue it once stage 1 has
    /// had time to bring the bucket headers in).
    #[inline]
    pub fn prefetch_records(&self, probe: &Probe) {
        self.map.prefetch_records(probe);
    }
}
