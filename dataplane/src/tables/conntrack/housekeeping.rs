//! Housekeeping: the bounded ageing step run between batches, and the control thread's full
//! scans (flush by predicate, listing).
//!
//! Invariants:
//! - `sweep` visits at most `budget` buckets per call and resumes where it stopped, so its cost per
//!   call is bounded whatever the table size (no full scan on the data path): at most
//!   `budget` header lines and `16 * budget` records, each read in place (no bucket copy).
//! - Scans read consistent bucket snapshots and act through the same kill-then-purge path as
//!   `remove`, so they race safely with workers: a flow refreshed after the snapshot is spared.
//! - Garbage met on the way (records of dead flows, orphaned reply records) is cleared, after
//!   re-checking under the bucket lock that it still is garbage.

use std::sync::atomic::Ordering;

use super::lifecycle::Kill;
use super::record::{self, HEAD, HEAD_IN_RECORD, Head, VALUE_WORDS};
use super::{Conntrack, FlowView, Now, SweepCursor};
use crate::flow::FlowKey;
use crate::tables::flowmap::{KEY_WORDS, Key, SLOTS_PER_BUCKET, SlotId};

impl Conntrack {
    /// Visits up to `budget` buckets from `cursor` (wrapping), ending flows whose last packet plus
    /// timeout is before `now`, both records together. Returns the flows it ended.
    ///
    /// Cheap per bucket: an empty bucket costs the read of its header line; an occupied lane the
    /// read of its head word (a reply record also its translation and its partner's head, to
    /// tell an orphan). Nothing is copied; what a read without the seqlock suggests is checked
    /// again where it is acted on (the kill CAS, the garbage check under the bucket's lock).
    pub fn sweep(&self, cursor: &mut SweepCursor, budget: usize, now: Now) -> usize {
        let mut ended = 0;
        for _ in 0..budget.min(self.map.buckets()) {
            let bucket = cursor.advance(self.map.buckets());
            let mut lanes = self.map.occupied_lanes(bucket);
            while lanes != 0 {
                let lane = lanes.trailing_zeros() as usize;
                lanes &= lanes - 1;
                let Some(slot) = self.map.slot((bucket * SLOTS_PER_BUCKET + lane) as u32) else {
                    continue;
                };
                ended += self.sweep_record(slot, now);
            }
        }
        ended
    }

    /// Ends the flow of the original record at `slot` if it expired (1 if this call ended it),
    /// or clears the record if it is garbage.
    fn sweep_record(&self, slot: SlotId, now: Now) -> usize {
        let words = self.map.record(slot);
        let head = Head(words[HEAD_IN_RECORD].load(Ordering::Acquire));
        if head.is_live_original() {
            let still_expired = |h: Head| self.is_expired(h, now);
            if still_expired(head)
                && let Kill::Killed(killed) = self.kill(slot, head.generation(), still_expired)
            {
                self.counters.expired.fetch_add(1, Ordering::Relaxed);
                self.purge(&killed);
                return 1;
            }
            return 0;
        }
        let load = |i: usize| words[i].load(Ordering::Relaxed);
        let value: [u64; VALUE_WORDS] = std::array::from_fn(|i| load(KEY_WORDS + i));
        if self.owner(slot, &value).is_none() {
            self.clear_garbage(slot, &[load(0), load(1)]);
        }
        0
    }

    /// Ends every live flow `pred` selects (e.g. those to a removed backend). A full scan: for the
    /// control thread. Returns the flows it ended.
    pub fn flush(&self, now: Now, mut pred: impl FnMut(&FlowView) -> bool) -> usize {
        let mut ended = 0;
        self.scan_views(now, |slot, generation, view| {
            if pred(view)
                && let Kill::Killed(killed) = self.kill(slot, generation, |_| true)
            {
                self.purge(&killed);
                ended += 1;
            }
        });
        ended
    }

    /// Calls `f` for every live, unexpired flow (for `conntrack list`). A full scan.
    pub fn for_each(&self, now: Now, mut f: impl FnMut(&FlowView)) {
        self.scan_views(now, |_, _, view| f(view));
    }

    /// The buckets a scan walks: [`Conntrack::for_each_in`] takes ranges of `0..scan_buckets()`.
    pub fn scan_buckets(&self) -> usize {
        self.map.buckets()
    }

    /// As [`Conntrack::for_each`], over `buckets` only (clamped to the table): a caller that
    /// scans in slices may pause between them (a streamed listing). Each bucket is read
    /// consistently; the slices together are not one moment's table.
    pub fn for_each_in(
        &self,
        buckets: std::ops::Range<usize>,
        now: Now,
        mut f: impl FnMut(&FlowView),
    ) {
        let end = buckets.end.min(self.map.buckets());
        self.scan_range(buckets.start.min(end)..end, now, |_, _, view| f(view));
    }

    fn scan_views(&self, now: Now, f: impl FnMut(SlotId, u8, &FlowView)) {
        self.scan_range(0..self.map.buckets(), now, f);
    }

    fn scan_range(
        &self,
        buckets: std::ops::Range<usize>,
        now: Now,
        mut f: impl FnMut(SlotId, u8, &FlowView),
    ) {
        for bucket in buckets {
            for (slot, key, value) in self.map.read_bucket(bucket).iter() {
                let head = Head(value[HEAD]);
                let Some(state) = head.state().filter(|_| !head.is_reply()) else {
                    continue;
                };
                if self.is_expired(head, now) {
                    continue;
                }
                let (Some(original), Some(xlate)) =
                    (FlowKey::from_words(key), record::xlate(&value))
                else {
                    continue;
                };
                let view = FlowView {
                    original,
                    reply: xlate.reversed(),
                    state,
                    service: record::service(&value),
                    backend: record::backend(&value),
                    flags: head.flags(),
                    expires_in: self.expires_in(head, now),
                };
                f(slot, head.generation(), &view);
            }
        }
    }

    /// Clears the record of `key` at `slot` if, under its bucket's lock, it still belongs to no
    /// live flow.
    pub(super) fn clear_garbage(&self, slot: SlotId, key: &Key) {
        self.map.remove_if(key, |found, value| {
            found == slot && self.owner(found, value).is_none()
        });
    }
}
