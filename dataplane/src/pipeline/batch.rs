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
//!   allocates; entries past the current batch are stale and never read.

use crate::drop::DropReason;
use crate::packet::Packet;
use crate::snapshot::Snapshot;
use crate::stages::Ctx;
use crate::tables::flowmap::Probe;

use super::{Front, Pipeline};

/// How many packets ahead the bucket headers are fetched (stage 1).
const BUCKETS_AHEAD: usize = 16;
/// How many packets ahead the records are fetched (stage 2); the headers are in cache by then.
const RECORDS_AHEAD: usize = 8;

/// A packet between the passes: what the first stages made of it, its context (written in
/// place by classification) and its conntrack probe (none for packets that end early or are
/// matched by their quoted packet, ICMP errors).
#[derive(Clone, Copy, Debug)]
pub(super) struct Staged {
    front: Result<Front, DropReason>,
    ctx: Ctx,
    probe: Option<Probe>,
}

impl Staged {
    const UNSET: Staged = Staged {
        front: Err(DropReason::Malformed),
        ctx: Ctx::UNSET,
        probe: None,
    };
}

impl Pipeline {
    /// [`Pipeline::process_batch`] in two passes, with prefetch (see the module doc).
    pub(super) fn process_batch_prefetched(&mut self, snap: &Snapshot, batch: &mut [Packet]) {
        let mut staged = std::mem::take(&mut self.staged);
        if staged.len() < batch.len() {
            staged.resize(batch.len(), Staged::UNSET);
        }
        let staged_batch = &mut staged[..batch.len()];
        // Each context is written where the second pass reads it, and the keys are hashed in a
        // loop of their own: a context returned by value and read back at once (its key
        // hashed, or the whole of it copied) stalls on store forwarding (see `Ctx`).
        for (s, pkt) in staged_batch.iter_mut().zip(batch.iter_mut()) {
            s.front = self.front(snap, pkt, &mut s.ctx);
        }
        for s in staged_batch.iter_mut() {
            s.probe = match s.front {
                Ok(Front::Ip) if !s.ctx.icmp_error => Some(self.ct.probe(&s.ctx.key)),
                _ => None,
            };
        }
        for i in 0..BUCKETS_AHEAD {
            if let Some(p) = probe_at(staged_batch, i) {
                self.ct.prefetch_buckets(&p);
            }
        }
        for i in 0..RECORDS_AHEAD {
            if let Some(p) = probe_at(staged_batch, i) {
                self.ct.prefetch_records(&p);
            }
        }
        for (i, pkt) in batch.iter_mut().enumerate() {
            if let Some(p) = probe_at(staged_batch, i + BUCKETS_AHEAD) {
                self.ct.prefetch_buckets(&p);
            }
            if let Some(p) = probe_at(staged_batch, i + RECORDS_AHEAD) {
                self.ct.prefetch_records(&p);
            }
            // The context is used where the first pass left it, not copied out (see `Ctx`).
            let s = &mut staged_batch[i];
            let result = match s.front {
                Ok(Front::Done(verdict)) => Ok(verdict),
                Ok(Front::Ip) => self.back(snap, pkt, &mut s.ctx),
                Err(reason) => Err(reason),
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
