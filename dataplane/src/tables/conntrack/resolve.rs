//! Resolving a record to its flow: the live original record it belongs to, the hit it yields,
//! and whether that flow has timed out.
//!
//! Invariants:
//! - A reply record is resolved through its partner slot without taking, or waiting for, the
//!   partner bucket's lock: the partner's head word acts as a per-slot sequence. Its head must be
//!   live with the expected generation before and after its key is read, and the key must match.
//!   Sound because every writer kills a record (head CAS) before it overwrites that record's key,
//!   with a Release fence in between (flowmap's publication order), so a key read that saw a newer
//!   writer is followed by a head read that sees the kill.
//! - Nothing here writes: lookups stay read-only; killing is `lifecycle`'s job.

use std::sync::atomic::{Ordering, fence};

use super::record::{self, HEAD, HEAD_IN_RECORD, Head, VALUE_WORDS};
use super::{Conntrack, EntryRef, Hit, Now};
use crate::flow::Dir;
use crate::tables::flowmap::{Key, SlotId};

impl Conntrack {
    /// The live original record that a record belongs to (itself, or the verified partner of a
    /// reply record) with its current head; `None` for records of dead flows.
    pub(super) fn owner(&self, slot: SlotId, value: &[u64; VALUE_WORDS]) -> Option<(SlotId, Head)> {
        let head = Head(value[HEAD]);
        if head.is_reply() {
            let partner = self.map.slot(head.partner())?;
            let original_key = record::partner_key(record::xlate_words(value))?;
            let generation = head.partner_generation();
            let current = self.verified_original(partner, generation, &original_key)?;
            Some((partner, current))
        } else {
            let current = Head(self.map.record(slot)[HEAD_IN_RECORD].load(Ordering::Acquire));
            let same = current.generation() == head.generation() && current.is_live_original();
            same.then_some((slot, current))
        }
    }

    /// Reads an original record outside any bucket lock (see the module doc): its current head if
    /// it is live with `generation` and its key is `key`.
    fn verified_original(&self, slot: SlotId, generation: u8, key: &Key) -> Option<Head> {
        let words = self.map.record(slot);
        let valid = |head: Head| head.is_live_original() && head.generation() == generation;
        let before = Head(words[HEAD_IN_RECORD].load(Ordering::Acquire));
        if !valid(before) {
            return None;
        }
        let found = [
            words[0].load(Ordering::Relaxed),
            words[1].load(Ordering::Relaxed),
        ];
        fence(Ordering::Acquire);
        let after = Head(words[HEAD_IN_RECORD].load(Ordering::Relaxed));
        (found == *key && valid(after)).then_some(after)
    }

    /// The hit for the record at `slot` (`value`) whose live owner is `owner` with head
    /// `owner_head`.
    pub(super) fn hit(
        &self,
        slot: SlotId,
        value: &[u64; VALUE_WORDS],
        owner: SlotId,
        owner_head: Head,
    ) -> Option<Hit> {
        let head = Head(value[HEAD]);
        Some(Hit {
            dir: if head.is_reply() {
                Dir::Reply
            } else {
                Dir::Original
            },
            xlate: record::xlate(value)?,
            service: record::service(value),
            backend: record::backend(value),
            flags: head.flags(),
            entry: EntryRef {
                slot: owner.raw(),
                generation: owner_head.generation(),
            },
            record: slot.raw(),
            policy_epoch: owner_head.policy_epoch(),
        })
    }

    /// Whether an original record's flow has timed out at `now`.
    pub(super) fn is_expired(&self, head: Head, now: Now) -> bool {
        let code = usize::from(head.state_code());
        let timeout = self.timeout_by_code.get(code).copied().unwrap_or(0);
        u64::from(head.last_seen()) + u64::from(timeout) < u64::from(now)
    }

    /// Seconds until an original record's flow expires at `now`.
    pub(super) fn expires_in(&self, head: Head, now: Now) -> u32 {
        let timeout = head.state().map_or(0, |state| self.timeouts.of(state));
        let deadline = u64::from(head.last_seen()) + u64::from(timeout);
        u32::try_from(deadline.saturating_sub(u64::from(now))).unwrap_or(u32::MAX)
    }
}
