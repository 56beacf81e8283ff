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
//!   with both buckets of a key full, it evicts a flow of its candidate buckets (counted by state)
//!   and fails with `Full` only when that cannot make room (A8). The victim is an expired flow,
//!   else the least recently seen unreplied one, else the least recently seen unassured one;
//!   never an assured flow (ESTABLISHED, replied UDP): if only those are there, the insert fails.
//! - Unreplied flows are limited per source and per destination address (`limits`).
//! - A TCP RST closes a flow only if its sequence number is the one its direction expects
//!   (`seq`); other RSTs in the window pass without effect, the rest are reported.
//! - Time is the caller's `now` (seconds of CLOCK_MONOTONIC); nothing here reads a clock.

mod housekeeping;
mod lifecycle;
mod limits;
mod policy_epoch;
mod prefetch;
mod record;
mod resolve;
mod sctp;
mod seq;
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
mod tests_pressure;
#[cfg(test)]
mod tests_table;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use record::{HEAD_IN_RECORD, Head, Map, XLATE_IN_RECORD};

use crate::io::hugepages::Pages;
use crate::io::words::Words;
use crate::quiesce::Readers;
pub use crate::tables::flowmap::{LayoutError, SweepCursor};
pub use limits::{FlowLimits, Limited};
pub use seq::WINDOW as RST_WINDOW;
pub use state::{FlowState, Timeouts, is_bogus};

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
    /// Limits on unreplied flows per source and per destination.
    pub limits: FlowLimits,
}

impl Default for ConntrackConfig {
    /// kube-proxy's floor (`conntrack.min`), kube-proxy/kernel timeouts.
    fn default() -> Self {
        Self {
            capacity: 131_072,
            timeouts: Timeouts::default(),
            limits: FlowLimits::default(),
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
    /// The raw slot of the record the packet matched (its direction's record).
    record: u32,
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
    /// No room even after eviction (only assured flows could have made room).
    Full,
    /// The flow would be unreplied and its source or destination has as many as allowed.
    Limited(Limited),
}

/// The outcome of [`Conntrack::on_packet`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Track {
    Ok,
    /// The packet does not fit the flow's state: drop it and count it.
    Invalid,
    /// A SYN reuses the tuple of a finished TCP flow: remove the hit and handle the packet as new.
    Restart,
    /// An RST whose sequence number is outside its direction's window: drop it.
    RstOutOfWindow,
}

/// What [`Conntrack::on_segment`] needs of a TCP segment besides its flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentSeq {
    /// The sequence number.
    pub seq: u32,
    /// Sequence space the segment takes: payload bytes, plus one each for SYN and FIN.
    pub len: u32,
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
    /// `evictions` by the state the flow was in, indexed by [`FlowState::index`].
    pub evictions_by_state: [u64; FlowState::ALL.len()],
    /// Inserts that failed with `Full` (dropped as `ct_table_full`).
    pub insert_failed: u64,
    /// Inserts refused by the per-source limit on unreplied flows.
    pub limited_source: u64,
    /// Inserts refused by the per-destination limit on unreplied flows.
    pub limited_destination: u64,
    /// Flows removed right after their insert because their first packet was dropped later.
    pub retracted: u64,
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
    evictions: [AtomicU64; FlowState::ALL.len()],
    insert_failed: AtomicU64,
    limited_source: AtomicU64,
    limited_destination: AtomicU64,
    retracted: AtomicU64,
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
    limiter: limits::Limiter,
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
            limiter: limits::Limiter::new(cfg.limits),
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
        self.hit(slot, &value, owner, head)
    }

    /// Refreshes the flow of `hit` and advances its state for a packet in `hit.dir`.
    /// A flow that ended meanwhile is left alone (`Track::Ok`).
    pub fn on_packet(&self, hit: &Hit, tcp_flags: u8, now: Now) -> Track {
        self.on_segment(hit, tcp_flags, None, now)
    }

    /// [`Conntrack::on_packet`] for a TCP segment whose sequence numbers are known: also keeps
    /// its direction's sequence mark and checks RSTs against it (see `seq`).
    pub fn on_segment(
        &self,
        hit: &Hit,
        tcp_flags: u8,
        segment: Option<SegmentSeq>,
        now: Now,
    ) -> Track {
        let Some(slot) = self.map.slot(hit.entry.slot) else {
            return Track::Ok;
        };
        if let Some(segment) = segment
            && let Some(done) = self.check_sequence(hit, tcp_flags, segment)
        {
            return done;
        }
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
            if state.is_unreplied() && !next.is_unreplied() {
                // Leaving the unreplied states: uncount it, once (the winner of this CAS).
                let words = self.map.record(slot);
                let flow = lifecycle::flow_addresses(words);
                if word
                    .compare_exchange(current, touched.0, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
                {
                    if let Some((src, dst)) = flow {
                        self.limiter.release(src, dst);
                    }
                    return Track::Ok;
                }
                current = word.load(Ordering::Relaxed);
                continue;
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

    /// Keeps the sequence mark of `hit`'s direction and judges an RST by it (module `seq`).
    /// `Some` is the packet's outcome; `None`: go on with the state machine.
    fn check_sequence(&self, hit: &Hit, tcp_flags: u8, segment: SegmentSeq) -> Option<Track> {
        const SYN: u8 = 0x02;
        const RST: u8 = 0x04;
        const ACK: u8 = 0x10;
        let slot = self.map.slot(hit.record)?;
        let word = &self.map.record(slot)[XLATE_IN_RECORD + 1];
        let current_word = word.load(Ordering::Relaxed);
        let current = record::seq_mark(current_word);
        if tcp_flags & (RST | SYN) == RST {
            return match seq::rst_fit(current, seq::mark(segment.seq)) {
                seq::RstFit::Close => None,
                seq::RstFit::Pass => Some(Track::Ok),
                seq::RstFit::OutOfWindow => Some(Track::RstOutOfWindow),
            };
        }
        // Learn only from segments the state machine can accept.
        let syn_ack_from_client = tcp_flags & (SYN | ACK) == SYN | ACK && hit.dir == Dir::Original;
        if state::is_bogus(tcp_flags) || syn_ack_from_client {
            return None;
        }
        let end = seq::mark(segment.seq.wrapping_add(segment.len));
        if let Some(next) = seq::advanced(current, end) {
            // Relaxed, and a lost race is fine: the mark is a hint kept per direction.
            let _ = word.compare_exchange(
                current_word,
                record::with_seq_mark(current_word, next),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        None
    }

    /// Ends the flow of `hit` because the packet that created it was dropped afterwards (the
    /// table keeps entries only for packets that leave; counted as `retracted`).
    pub fn retract(&self, hit: &Hit) -> bool {
        let removed = self.remove(hit);
        if removed {
            self.counters.retracted.fetch_add(1, Ordering::Relaxed);
        }
        removed
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
        let evictions_by_state = std::array::from_fn(|i| read(&c.evictions[i]));
        CtStats {
            entries: self.len() as u64,
            inserts: read(&c.inserts),
            insert_races_lost: read(&c.races_lost),
            evictions: evictions_by_state.iter().sum(),
            evictions_by_state,
            insert_failed: read(&c.insert_failed),
            limited_source: read(&c.limited_source),
            limited_destination: read(&c.limited_destination),
            retracted: read(&c.retracted),
            expired: read(&c.expired),
            invalid: read(&c.invalid),
        }
    }

    /// What backs the table's memory (huge pages or not); reads `/proc`, not per packet.
    pub fn pages(&self) -> Pages {
        self.map.pages()
    }

    /// Table bytes per flow of capacity (both records, buckets' headers and the spare slots).
    pub fn bytes_per_flow(&self) -> usize {
        (self.map.words().len() * 8).div_ceil(self.capacity.max(1))
    }
}
