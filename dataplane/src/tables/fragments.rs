//! The fragment table: what the first fragment of a fragmented IPv4 datagram got (its
//! translation and its verdict), keyed by (source, destination, protocol, IP id) as received,
//! so that the later fragments, which carry no ports, get exactly the same (Cilium's fragment
//! map, the kernel's nf_defrag without the reassembly).
//!
//! Invariants:
//! - Per worker: all fragments of a datagram reach one worker (a pod port is polled by one
//!   worker; AF_PACKET fanout hashes fragments by addresses only), so the table is plain memory
//!   owned by its `Pipeline`: no atomics, no locks. Allocated once; nothing per packet.
//! - Bounded: `SLOTS` entries in buckets of `WAYS`; an entry lives `TIMEOUT` seconds after its
//!   first fragment, or until its fragments have covered the whole datagram. A first fragment
//!   that finds its bucket full of live entries is refused (`fragment_table_full`); nothing
//!   live is evicted.
//! - A later fragment without an entry (its first one not seen yet, expired or refused) has no
//!   verdict to follow: `fragment_unknown`. Out-of-order first fragments are not held.

use std::net::Ipv4Addr;

use crate::drop::DropReason;
use crate::flow::{FlowKey, L4Proto, mix64};

use super::conntrack::Now;

/// Entries per worker table.
pub const SLOTS: usize = 4096;
/// Entries per bucket (a key may sit in any slot of its bucket).
const WAYS: usize = 8;
/// Seconds an entry lives after its first fragment (the kernel's ipfrag_time is 30 s; a
/// datagram's fragments travel back to back, so a short timeout keeps the table small).
pub const TIMEOUT: Now = 4;

/// What the datagram's fragments are identified by, as received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragKey {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: L4Proto,
    pub id: u16,
}

impl FragKey {
    fn hash(&self, seed: u64) -> u64 {
        let a = (u64::from(u32::from(self.src)) << 32) | u64::from(u32::from(self.dst));
        let b = (u64::from(self.id) << 8) | self.proto as u64;
        mix64(a ^ seed, b.wrapping_add(seed.rotate_left(17)))
    }
}

/// What the first fragment got, for the later ones to follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FragVerdict {
    /// Not decided yet: the slot is claimed by a first fragment still in the pipeline.
    Pending,
    /// Forwarded: `key` is the first fragment's flow key as received (ports included),
    /// `src`/`dst` the addresses it left with, `translated` as `Ctx::translated`.
    Forward {
        key: FlowKey,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        translated: bool,
    },
    /// Dropped (or answered here): later fragments are dropped for the same reason.
    Drop(DropReason),
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    key: FragKey,
    verdict: FragVerdict,
    expires: Now,
    /// Payload bytes seen so far (every fragment, the first included).
    seen: u32,
    /// The datagram's payload length, known once its last fragment came (0 until then).
    total: u32,
    live: bool,
}

const EMPTY: Slot = Slot {
    key: FragKey {
        src: Ipv4Addr::UNSPECIFIED,
        dst: Ipv4Addr::UNSPECIFIED,
        proto: L4Proto::Udp,
        id: 0,
    },
    verdict: FragVerdict::Pending,
    expires: 0,
    seen: 0,
    total: 0,
    live: false,
};

/// One worker's fragment table (see the module doc).
pub struct FragmentTable {
    slots: Box<[Slot]>,
    seed: u64,
}

impl FragmentTable {
    /// A table of `slots` entries (rounded up to whole buckets), hashed with `seed`.
    pub fn new(slots: usize, seed: u64) -> Self {
        let n = slots.div_ceil(WAYS).max(1) * WAYS;
        Self {
            slots: vec![EMPTY; n].into_boxed_slice(),
            seed,
        }
    }

    fn bucket(&self, key: &FragKey) -> std::ops::Range<usize> {
        let buckets = self.slots.len() / WAYS;
        let b = (key.hash(self.seed) % buckets as u64) as usize * WAYS;
        b..b + WAYS
    }

    fn find(&self, key: &FragKey, now: Now) -> Option<usize> {
        self.bucket(key).find(|&i| {
            let s = &self.slots[i];
            s.live && s.key == *key && s.expires.wrapping_sub(now) as i32 >= 0
        })
    }

    /// Claims the entry of a first fragment (an existing one for the same key is reused: a
    /// retransmitted first fragment). `None`: the bucket is full of live entries.
    pub fn claim(&mut self, key: FragKey, now: Now) -> Option<usize> {
        let at = self.find(&key, now).or_else(|| {
            self.bucket(&key).find(|&i| {
                let s = &self.slots[i];
                !s.live || (s.expires.wrapping_sub(now) as i32) < 0
            })
        })?;
        let s = &mut self.slots[at];
        let (seen, total) = if s.live && s.key == key {
            (s.seen, s.total)
        } else {
            (0, 0)
        };
        *s = Slot {
            key,
            verdict: FragVerdict::Pending,
            expires: now.wrapping_add(TIMEOUT),
            seen,
            total,
            live: true,
        };
        Some(at)
    }

    /// Records the first fragment's outcome in the slot `claim` gave, and counts its bytes.
    pub fn decide(&mut self, at: usize, verdict: FragVerdict, payload: u32, last: Option<u32>) {
        if let Some(s) = self.slots.get_mut(at) {
            s.verdict = verdict;
        }
        self.account(at, payload, last);
    }

    /// The first fragment's outcome for a later fragment of the same datagram, and the slot
    /// (for `account`). `None`: no live entry.
    pub fn lookup(&self, key: &FragKey, now: Now) -> Option<(usize, FragVerdict)> {
        let at = self.find(key, now)?;
        Some((at, self.slots[at].verdict))
    }

    /// Counts `payload` bytes of a fragment; `last` is the datagram's payload length when the
    /// fragment is the last one (MF clear). Frees the entry once the whole datagram went by.
    pub fn account(&mut self, at: usize, payload: u32, last: Option<u32>) {
        let Some(s) = self.slots.get_mut(at) else {
            return;
        };
        s.seen = s.seen.saturating_add(payload);
        if let Some(total) = last {
            s.total = total;
        }
        if s.total != 0 && s.seen >= s.total {
            s.live = false;
        }
    }

    /// Live entries (tests and stats; walks the table).
    pub fn len(&self, now: Now) -> usize {
        self.slots
            .iter()
            .filter(|s| s.live && s.expires.wrapping_sub(now) as i32 >= 0)
            .count()
    }

    pub fn is_empty(&self, now: Now) -> bool {
        self.len(now) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u16) -> FragKey {
        FragKey {
            src: Ipv4Addr::new(10, 244, 1, 10),
            dst: Ipv4Addr::new(10, 96, 0, 10),
            proto: L4Proto::Udp,
            id,
        }
    }

    #[test]
    fn an_entry_lives_until_the_datagram_is_covered() {
        let mut t = FragmentTable::new(64, 1);
        let at = t.claim(key(7), 100).expect("room");
        t.decide(at, FragVerdict::Drop(DropReason::NoRoute), 1480, None);
        let (at2, v) = t.lookup(&key(7), 101).expect("entry");
        assert_eq!(v, FragVerdict::Drop(DropReason::NoRoute));
        assert!(t.lookup(&key(8), 101).is_none());
        t.account(at2, 520, Some(2000));
        assert!(t.lookup(&key(7), 101).is_none(), "freed once covered");
    }

    #[test]
    fn entries_expire_and_a_full_bucket_refuses() {
        let mut t = FragmentTable::new(WAYS, 2);
        for id in 0..WAYS as u16 {
            assert!(t.claim(key(id), 10).is_some());
        }
        assert_eq!(t.len(10), WAYS);
        assert!(t.claim(key(999), 10).is_none(), "one bucket, all live");
        assert!(t.lookup(&key(0), 10 + TIMEOUT + 1).is_none(), "expired");
        assert!(
            t.claim(key(999), 10 + TIMEOUT + 1).is_some(),
            "expired slots are reused"
        );
    }
}
