//! The batch driver's two passes: every packet of the batch first goes through the stages
//! that read only the packet and the snapshot (parse, decap, ARP, classify), which yields its
//! flow key, hashed once for conntrack; then through conntrack and routing, while the
//! conntrack buckets of the packets a few places ahead are fetched into the cache (flowmap's
//! prefetch hints). A lookup's memory latency then overlaps the work on the packets before it
//! instead of stalling the core.
//!
//! Invariants:
//! - A packet gets the same verdict, bytes and counters as from [`Pipeline::process`]: the
//!   first pass touches no table that the second pass changes, so running it early for the
//!   whole batch changes nothing a later packet sees, and each packet's first-pass result is
//!   kept (not recomputed) for its second pass.
//! - With tracing on, packets go one by one, so a trace keeps each packet's events together.
//! - The per-batch scratch list is reused: it grows to the largest batch once, then never
//!   allocates.

use crate::drop::DropReason;
use crate::packet::Packet;
use crate::snapshot::Snapshot;
use crate::tables::flowmap::Probe;

use super::{Front, Pipeline};

/// How many packets ahead the bucket headers are fetched (stage 1).
const BUCKETS_AHEAD: usize = 16;
/// How many packets ahead the records are fetched (stage 2); the headers are in cache by then.
const RECORDS_AHEAD: usize = 8;

/// A packet between the passes: what the first stages made of it, and its conntrack probe
/// (none for packets that end early or are matched by their quoted packet, ICMP errors).
#[derive(Clone, Copy, Debug)]
pub(super) struct Staged {
    front: Result<Front, DropReason>,
    probe: Option<Probe>,
}

impl Pipeline {
    /// [`Pipeline::process_batch`] in two passes, with prefetch (see the module doc).
    pub(super) fn process_batch_prefetched(&mut self, snap: &Snapshot, batch: &mut [Packet]) {
        let mut staged = std::mem::take(&mut self.staged);
        staged.clear();
        for pkt in batch.iter_mut() {
            let front = self.front(snap, pkt);
            let probe = match &front {
                Ok(Front::Ip(ctx)) if !ctx.icmp_error => Some(self.ct.probe(&ctx.key)),
                _ => None,
            };
            staged.push(Staged { front, probe });
        }
        for i in 0..BUCKETS_AHEAD {
            if let Some(p) = probe_at(&staged, i) {
                self.ct.prefetch_buckets(&p);
            }
        }
        for i in 0..RECORDS_AHEAD {
            if let Some(p) = probe_at(&staged, i) {
                self.ct.prefetch_records(&p);
            }
        }
        for (i, pkt) in batch.iter_mut().enumerate() {
            if let Some(p) = probe_at(&staged, i + BUCKETS_AHEAD) {
                self.ct.prefetch_buckets(&p);
            }
            if let Some(p) = probe_at(&staged, i + RECORDS_AHEAD) {
                self.ct.prefetch_records(&p);
            }
            // The context is used where the first pass left it, not copied out: a copy right
            // before conntrack reads it back costs a store-forwarding stall when the reads do
            // not line up with the copy's stores (see `Ctx`).
            let result = match &mut staged[i].front {
                Ok(Front::Done(verdict)) => Ok(*verdict),
                Ok(Front::Ip(ctx)) => self.back(snap, pkt, ctx),
                Err(reason) => Err(*reason),
            };
            self.finish(pkt, result);
        }
        self.staged = staged;
    }
}

/// The conntrack probe of the `i`th staged packet, if it has one.
#[inline]
fn probe_at(staged: &[Staged], i: usize) -> Option<Probe> {
    staged.get(i).and_then(|s| s.probe)
}
