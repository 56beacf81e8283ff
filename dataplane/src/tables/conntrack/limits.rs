//! Per-source and per-destination limits on unreplied (embryonic) flows: a SYN or UDP flood
//! from one address, or aimed at one pod, cannot fill the table.
//!
//! Two fixed tables of counters shared by all workers, indexed by a keyed hash of the address
//! (the original source; the destination after DNAT, i.e. the reply tuple's source). Cheap: no
//! allocation, one atomic add per new flow and one subtract when it leaves the unreplied states.
//!
//! Invariants:
//! - A counter counts the live flows in an unreplied state (`FlowState::is_unreplied`) whose
//!   address hashes to it: incremented by the insert that creates such a flow, decremented
//!   exactly once, by whoever ends it (the kill CAS) or moves it out of those states (the
//!   `on_packet` CAS). Both are single CAS winners, so a flow is never released twice.
//! - Addresses that share a counter share its limit: the hash is keyed per process
//!   (`RandomState`), so a sender cannot aim its flows at another address's counter.
//! - Releases saturate at 0 (after adoption, `recount` re-acquires the adopted flows).

use std::hash::{BuildHasher, RandomState};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};

/// Counters per table; a power of two.
const COUNTERS: usize = 4096;

/// The node's limits on unreplied flows (0 = no limit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowLimits {
    /// Unreplied flows one source address may have at once.
    pub unreplied_per_source: u32,
    /// Unreplied flows toward one destination (a pod, after DNAT) at once.
    pub unreplied_per_destination: u32,
}

impl FlowLimits {
    /// No limits.
    pub const NONE: Self = Self {
        unreplied_per_source: 0,
        unreplied_per_destination: 0,
    };
}

impl Default for FlowLimits {
    fn default() -> Self {
        Self {
            unreplied_per_source: 8_192,
            unreplied_per_destination: 32_768,
        }
    }
}

/// Which limit refused a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limited {
    Source,
    Destination,
}

pub(super) struct Limiter {
    limits: FlowLimits,
    hasher: RandomState,
    sources: Box<[AtomicU32]>,
    destinations: Box<[AtomicU32]>,
}

impl Limiter {
    pub(super) fn new(limits: FlowLimits) -> Self {
        let counters = || (0..COUNTERS).map(|_| AtomicU32::new(0)).collect();
        Self {
            limits,
            hasher: RandomState::new(),
            sources: counters(),
            destinations: counters(),
        }
    }

    fn index(&self, ip: Ipv4Addr) -> usize {
        self.hasher.hash_one(u32::from(ip)) as usize & (COUNTERS - 1)
    }

    /// Counts one more unreplied flow from `src` to `dst`, unless that passes a limit (then
    /// nothing is counted). `force` counts regardless (adoption).
    pub(super) fn acquire(&self, src: Ipv4Addr, dst: Ipv4Addr, force: bool) -> Result<(), Limited> {
        let source = &self.sources[self.index(src)];
        let destination = &self.destinations[self.index(dst)];
        let limit = |l: u32| if force || l == 0 { u32::MAX } else { l };
        let take = |counter: &AtomicU32, l: u32| {
            counter
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n < limit(l)).then_some(n + 1)
                })
                .is_ok()
        };
        if !take(source, self.limits.unreplied_per_source) {
            return Err(Limited::Source);
        }
        if !take(destination, self.limits.unreplied_per_destination) {
            release(source);
            return Err(Limited::Destination);
        }
        Ok(())
    }

    /// Uncounts an unreplied flow from `src` to `dst` (it was replied to, or ended).
    pub(super) fn release(&self, src: Ipv4Addr, dst: Ipv4Addr) {
        release(&self.sources[self.index(src)]);
        release(&self.destinations[self.index(dst)]);
    }
}

fn release(counter: &AtomicU32) {
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
}
