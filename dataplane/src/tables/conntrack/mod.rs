//! Connection tracking: one table shared by all workers, with lock-free lookups.
//!
//! A tracked flow is two flowmap records: one keyed by the original tuple, one keyed by the reply
//! tuple as it arrives after NAT; each carries the tuple its direction is rewritten to (see
//! `record`). Per-packet work is a lock-free lookup plus one CAS on the original record's head word
//! (last-seen and state; `state` has the machine), skipped when neither the second nor the state
//! changed. Only the new-flow path and housekeeping lock, one to four buckets at a time.
//!
//! Invariants:
//! - A key is in the table at most once, as an original or as a reply record.
//! - A flow is created whole: both records are written under the locks of all their candidate
//!   buckets, after checking both keys, so no thread ever sees half a flow or a rolled-back one,
//!   and two racing inserts of one original tuple yield one flow (user-needs A1). The reply tuple
//!   being taken is reported, which makes SNAT port choice collision-free (A2).
//! - A flow ends exactly once, when a CAS marks its original record dead; whoever wins the CAS
//!   counts it and clears both records. Records of dead flows are garbage that lookups skip and
//!   inserts, sweeps and evictions reclaim.
//! - `len() <= capacity()`: an insert reserves its place in the live count first; at capacity, or
//!   with both buckets of a key full, it evicts the least recently seen flow of its candidate
//!   buckets (counted) and fails with `Full` only when that cannot make room (A8).
//! - Time is the caller's `now` (seconds of CLOCK_MONOTONIC); nothing here reads a clock.

mod housekeeping;
mod lifecycle;
mod policy_epoch;
mod record;
mod resolve;
mod state;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_adopt;
#[cfg(test)]
mod tests_concurrent;
#[cfg(test)]
mod tests_model;
#[cfg(test)]
mod tests_table;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use record::{HEAD_IN_RECORD, Head, Map};

use crate::io::words::Words;
use crate::quiesce::Readers;
pub use crate::tables::flowmap::{LayoutError, SweepCursor};
pub use state::{FlowState, Timeouts};

use crate::flow::{Dir, FlowKey};
use crate::tables::flowmap::SLOTS_PER_BUCKET;

/// Seconds of CLOCK_MONOTONIC, shared by the processes of one host; always supplied by the caller.
pub type Now = u32;

/// Flow flags: what was done to a flow, for the pipeline and for `conntrack list`.
pub mod flags {
    /// The destination was rewritten (Service VIP to a backend).
    pub const DNAT: u8 = 1 << 0;
    /// The source was rewritten (masquerade).
    pub const SNAT: u8 = 1 << 1;
    /// A pod reached itself through a Service.
    pub const HAIRPIN: u8 = 1 << 2;
    /// The flow was started by the host itself.
    pub const FROM_HOST: u8 = 1 << 3;
    /// The flow came from outside the cluster (NodePort, LoadBalancer, externalIP).
    pub const EXTERNAL: u8 = 1 << 4;
}

/// Table size and timeouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConntrackConfig {
    /// Flows the table holds before it evicts.
    pub capacity: usize,
    pub timeouts: Timeouts,
}

impl Default for ConntrackConfig {
    /// kube-proxy's floor (`conntrack.min`), kube-proxy/kernel timeouts.
    fn default() -> Self {
        Self {
            capacity: 131_072,
            timeouts: Timeouts::default(),
        }
    }
}

/// A flow to create, as the new-flow path decided it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewFlow {
    pub original: FlowKey,
    /// The reply tuple as it arrives after NAT.
    pub reply: FlowKey,
    /// Service id, 0 for none.
    pub service: u32,
    pub backend: u32,
    /// Bits from [`flags`].
    pub flags: u8,
    /// TCP flags byte of the first packet, 0 for UDP and ICMP.
    pub tcp_flags: u8,
}

/// Names one flow for [`Conntrack::on_packet`] and [`Conntrack::remove`]: the original record's
/// slot and generation, so a reference outliving its flow never touches a newer one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryRef {
    slot: u32,
    generation: u8,
}

/// A tracked flow, as seen from one packet's direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit {
    pub dir: Dir,
    /// The tuple the packet is rewritten to.
    pub xlate: FlowKey,
    pub service: u32,
    pub backend: u32,
    pub flags: u8,
    pub entry: EntryRef,
    /// The policy epoch the flow was last allowed under (0 = never checked); see
    /// [`Conntrack::stamp_policy`].
    pub policy_epoch: u8,
}

/// A successful insert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    Created(Hit),
    /// The tuple was already tracked (another worker won the race): use this translation.
    Existing(Hit),
}

impl Inserted {
    pub fn hit(&self) -> &Hit {
        match self {
            Self::Created(hit) | Self::Existing(hit) => hit,
        }
    }
}

/// Why a flow was not created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertError {
    /// The reply tuple belongs to another live flow (or equals the original): pick another SNAT
    /// port. Nothing was inserted.
    ReplyTaken,
    /// No room even after eviction.
    Full,
}

/// The outcome of [`Conntrack::on_packet`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Track {
    Ok,
    /// The packet does not fit the flow's state: drop it and count it.
    Invalid,
    /// A SYN reuses the tuple of a finished TCP flow: remove the hit and handle the packet as new.
    Restart,
}

/// One flow for listings and flushes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowView {
    pub original: FlowKey,
    pub reply: FlowKey,
    pub state: FlowState,
    pub service: u32,
    pub backend: u32,
    pub flags: u8,
    /// Seconds until the flow expires unless a packet comes.
    pub expires_in: u32,
}

/// Counters since construction (or adoption).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtStats {
    /// Live flows now.
    pub entries: u64,
    /// Flows created.
    pub inserts: u64,
    /// Inserts that found the tuple already tracked (the other worker's entry was used).
    pub insert_races_lost: u64,
    /// Live flows removed to make room.
    pub evictions: u64,
    /// Inserts that failed with `Full`.
    pub insert_failed: u64,
    /// Flows removed because they timed out.
    pub expired: u64,
    /// Packets that did not fit their flow's state.
    pub invalid: u64,
}

#[derive(Debug, Default)]
#[repr(align(64))]
struct Counters {
    inserts: AtomicU64,
    races_lost: AtomicU64,
    evictions: AtomicU64,
    insert_failed: AtomicU64,
    expired: AtomicU64,
    invalid: AtomicU64,
}

/// The live-flow count, alone on its cache line.
#[derive(Debug, Default)]
#[repr(align(64))]
struct LiveCount(AtomicUsize);

/// Target share of slots in use at capacity: two records per flow fill 80 % of the slots, where
/// two-choice buckets of 16 still practically never overflow.
const SLOTS_PER_FLOW_NUM: usize = 5;
const SLOTS_PER_FLOW_DEN: usize = 2;

/// The connection-tracking table. `Send + Sync`: share it with an `Arc`.
pub struct Conntrack {
    map: Map,
    capacity: usize,
    timeouts: Timeouts,
    timeout_by_code: [u32; state::CODES],
    live: LiveCount,
    counters: Counters,
    /// The workers using this table, for grace periods before flushes (`quiesce`).
    readers: Readers,
}

impl Conntrack {
    /// An empty table on the heap.
    pub fn new(cfg: ConntrackConfig) -> Self {
        Self::over(Map::with_capacity(Self::slots_for(&cfg)), cfg)
    }

    /// The number of words of storage an empty table for `cfg` takes ([`Conntrack::new_in`]).
    pub fn storage_words(cfg: &ConntrackConfig) -> usize {
        Map::storage_words(Self::slots_for(cfg))
    }

    /// An empty table in `words` (e.g. a freshly formatted shared file), which must be exactly
    /// [`Conntrack::storage_words`] long.
    pub fn new_in(words: Words, cfg: ConntrackConfig) -> Result<Self, LayoutError> {
        Ok(Self::over(
            Map::with_capacity_in(Self::slots_for(&cfg), words)?,
            cfg,
        ))
    }

    fn slots_for(cfg: &ConntrackConfig) -> usize {
        cfg.capacity.saturating_mul(SLOTS_PER_FLOW_NUM) / SLOTS_PER_FLOW_DEN
    }

    /// Whether `words` hold a table [`Conntrack::adopt`] takes for `cfg`: this build's layout,
    /// room for `cfg.capacity` flows. Reads only the header.
    pub fn check_adoptable(words: &[AtomicU64], cfg: &ConntrackConfig) -> Result<(), LayoutError> {
        let slots = Map::check_words(words)? * SLOTS_PER_BUCKET;
        let needed = cfg.capacity.saturating_mul(2);
        if slots < needed {
            return Err(LayoutError::TooSmall { slots, needed });
        }
        Ok(())
    }

    /// Adopts the live table a previous process left (see [`Conntrack::words`]), which may have
    /// been killed at any instruction: buckets it held locked are repaired (see `flowmap`),
    /// flows that lost a record are ended, records of dead flows are cleared, and the live
    /// count is rebuilt from the records; counters start at 0. The caller must be the only
    /// user of the words.
    pub fn adopt(words: Words, cfg: ConntrackConfig) -> Result<Self, LayoutError> {
        Self::check_adoptable(&words, &cfg)?;
        let table = Self::over(Map::from_words(words)?, cfg);
        table.recount();
        Ok(table)
    }

    fn over(map: Map, cfg: ConntrackConfig) -> Self {
        Self {
            map,
            capacity: cfg.capacity,
            timeouts: cfg.timeouts,
            timeout_by_code: cfg.timeouts.by_code(),
            live: LiveCount::default(),
            counters: Counters::default(),
            readers: Readers::default(),
        }
    }

    /// The workers that use this table (each `Pipeline` registers one epoch).
    pub fn readers(&self) -> &Readers {
        &self.readers
    }

    /// The table's storage, position independent, for a successor process to adopt.
    pub fn words(&self) -> &[AtomicU64] {
        self.map.words()
    }

    /// Gives the storage back, for [`Conntrack::adopt`].
    pub fn into_words(self) -> Words {
        self.map.into_words()
    }

    /// Buckets that adoption found locked by a dead writer and repaired (0 for a new table).
    pub fn repaired_buckets(&self) -> usize {
        self.map.repaired_buckets()
    }

    /// The flow `key` belongs to, from the direction `key` travels. Expired flows are misses.
    pub fn lookup(&self, key: &FlowKey, now: Now) -> Option<Hit> {
        let (slot, value) = self.map.get(&key.to_words())?;
        let (owner, head) = self.owner(slot, &value)?;
        if self.is_expired(head, now) {
            return None;
        }
        self.hit(&value, owner, head)
    }

    /// Refreshes the flow of `hit` and advances its state for a packet in `hit.dir`.
    /// A flow that ended meanwhile is left alone (`Track::Ok`).
    pub fn on_packet(&self, hit: &Hit, tcp_flags: u8, now: Now) -> Track {
        let Some(slot) = self.map.slot(hit.entry.slot) else {
            return Track::Ok;
        };
        let word = &self.map.record(slot)[HEAD_IN_RECORD];
        let mut current = word.load(Ordering::Relaxed);
        loop {
            let head = Head(current);
            if head.generation() != hit.entry.generation || head.is_reply() {
                return Track::Ok;
            }
            let Some(state) = head.state() else {
                return Track::Ok;
            };
            let next = match state::step(state, hit.dir, tcp_flags) {
                state::Step::Enter(next) => next,
                state::Step::Ignore => return Track::Ok,
                state::Step::Restart => return Track::Restart,
                state::Step::Invalid => {
                    self.counters.invalid.fetch_add(1, Ordering::Relaxed);
                    return Track::Invalid;
                }
            };
            let touched = head.touched(next, now);
            if touched == head {
                return Track::Ok;
            }
            // Relaxed: the head publishes nothing else; the CAS only has to be atomic.
            match word.compare_exchange_weak(
                current,
                touched.0,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Track::Ok,
                Err(seen) => current = seen,
            }
        }
    }

    /// Ends the flow of `hit` (both records). False if it had already ended.
    pub fn remove(&self, hit: &Hit) -> bool {
        let Some(slot) = self.map.slot(hit.entry.slot) else {
            return false;
        };
        match self.kill(slot, hit.entry.generation, |_| true) {
            lifecycle::Kill::Killed(killed) => {
                self.purge(&killed);
                true
            }
            lifecycle::Kill::Gone | lifecycle::Kill::Declined => false,
        }
    }

    /// Live flows (expired ones count until swept or reclaimed).
    pub fn len(&self) -> usize {
        self.live.0.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Flows the table holds before it evicts.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    pub fn stats(&self) -> CtStats {
        let c = &self.counters;
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        CtStats {
            entries: self.len() as u64,
            inserts: read(&c.inserts),
            insert_races_lost: read(&c.races_lost),
            evictions: read(&c.evictions),
            insert_failed: read(&c.insert_failed),
            expired: read(&c.expired),
            invalid: read(&c.invalid),
        }
    }

    /// Table bytes per flow of capacity (both records, buckets' headers and the spare slots).
    pub fn bytes_per_flow(&self) -> usize {
        (self.map.words().len() * 8).div_ceil(self.capacity.max(1))
    }
}
