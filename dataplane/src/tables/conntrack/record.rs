//! How a tracked flow's two records are encoded in flowmap value words.
//!
//! A record is a flowmap slot: the key (the tuple packets in its direction carry) and 4 words:
//! - `HEAD`: bits 0..32 last-seen time (original) or partner slot (reply); bits 32..40 the slot
//!   generation; bits 40..48 the state code (original, 0 = dead) or the partner's generation
//!   (reply); bits 48..56 the flow flags; bit 56 set on reply records; bits 57..64 (original)
//!   the policy epoch the flow was last allowed under (`PolicyTable::epoch`, 0 = never).
//! - `IDS`: service id << 32 | backend index.
//! - `XLATE`, `XLATE + 1`: the tuple a packet in this direction is rewritten to
//!   (original record: `reply.reversed()`; reply record: `original.reversed()`). The bits of
//!   `XLATE + 1` that a packed tuple leaves zero (8..16 and 48..64, ignored by
//!   `FlowKey::from_words`) hold the TCP *sequence mark* of this direction: the 256-byte granule
//!   of the end of the furthest segment seen, plus 1 (0 = none seen); see `seq`.
//!
//! Invariants:
//! - After insertion only the original record's head changes, by single-word CAS: last-seen and
//!   state (per packet), or live -> dead (the kill, the one moment a flow ends). A dead record never
//!   comes back; it waits to be cleared. The one other word written outside the insert is a
//!   record's sequence mark, by CAS that keeps every other bit of its word, so a reader (even one
//!   of a newer flow in a reused slot) never sees a tuple change.
//! - A new record takes its slot's previous generation + 1 (wrapping at 256), so a stale
//!   (slot, generation) reference does not match a newer flow in that slot.
//! - A reply record counts only while its partner slot holds a live original record with the
//!   partner generation and the key `xlate.reversed()`; otherwise it is an orphan, i.e. garbage.

use super::state::FlowState;
use super::{NewFlow, Now};
use crate::flow::FlowKey;
use crate::tables::flowmap::{FlowMap, KEY_WORDS, Key, SlotId};

/// Value words per record.
pub(super) const VALUE_WORDS: usize = 4;
pub(super) type Map = FlowMap<VALUE_WORDS>;

pub(super) const HEAD: usize = 0;
pub(super) const IDS: usize = 1;
pub(super) const XLATE: usize = 2;
/// Where the head word sits among a flowmap record's words.
pub(super) const HEAD_IN_RECORD: usize = KEY_WORDS + HEAD;
/// Where the translation sits among a flowmap record's words.
pub(super) const XLATE_IN_RECORD: usize = KEY_WORDS + XLATE;

const LOW32: u64 = 0xffff_ffff;
const GENERATION_SHIFT: u32 = 32;
const STATE_SHIFT: u32 = 40;
const FLAGS_SHIFT: u32 = 48;
const REPLY_BIT: u64 = 1 << 56;
const POLICY_SHIFT: u32 = 57;
const POLICY_MASK: u64 = 0x7f << POLICY_SHIFT;

/// A record's head word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Head(pub(super) u64);

impl Head {
    pub(super) fn original(last_seen: Now, state: FlowState, generation: u8, flags: u8) -> Self {
        Self(
            u64::from(last_seen)
                | u64::from(generation) << GENERATION_SHIFT
                | u64::from(state.code()) << STATE_SHIFT
                | u64::from(flags) << FLAGS_SHIFT,
        )
    }

    pub(super) fn reply(
        partner: SlotId,
        partner_generation: u8,
        generation: u8,
        flags: u8,
    ) -> Self {
        Self(
            u64::from(partner.raw())
                | u64::from(generation) << GENERATION_SHIFT
                | u64::from(partner_generation) << STATE_SHIFT
                | u64::from(flags) << FLAGS_SHIFT
                | REPLY_BIT,
        )
    }

    pub(super) fn is_reply(self) -> bool {
        self.0 & REPLY_BIT != 0
    }

    pub(super) fn generation(self) -> u8 {
        (self.0 >> GENERATION_SHIFT) as u8
    }

    pub(super) fn flags(self) -> u8 {
        (self.0 >> FLAGS_SHIFT) as u8
    }

    /// Original records: when the last packet was seen.
    pub(super) fn last_seen(self) -> Now {
        (self.0 & LOW32) as u32
    }

    /// Original records: the state, `None` once dead.
    pub(super) fn state(self) -> Option<FlowState> {
        FlowState::from_code(self.state_code())
    }

    /// Original records: the raw state code (0 = dead).
    pub(super) fn state_code(self) -> u8 {
        (self.0 >> STATE_SHIFT) as u8
    }

    /// An original record whose flow has not been killed.
    pub(super) fn is_live_original(self) -> bool {
        !self.is_reply() && self.state().is_some()
    }

    /// Reply records: the raw slot index of the original record.
    pub(super) fn partner(self) -> u32 {
        (self.0 & LOW32) as u32
    }

    /// Reply records: the generation the original record was written with.
    pub(super) fn partner_generation(self) -> u8 {
        (self.0 >> STATE_SHIFT) as u8
    }

    /// Original records: the policy epoch the flow was last allowed under (0 = never).
    pub(super) fn policy_epoch(self) -> u8 {
        ((self.0 & POLICY_MASK) >> POLICY_SHIFT) as u8
    }

    /// The same original record, allowed under policy `epoch` (7 bits).
    pub(super) fn with_policy_epoch(self, epoch: u8) -> Self {
        Self(self.0 & !POLICY_MASK | (u64::from(epoch) << POLICY_SHIFT) & POLICY_MASK)
    }

    /// The same original record, dead.
    pub(super) fn killed(self) -> Self {
        Self(self.0 & !(0xff << STATE_SHIFT))
    }

    /// The same original record after a packet at `now` moved it to `state`. Last-seen never goes
    /// back: workers may hold slightly different `now`s.
    pub(super) fn touched(self, state: FlowState, now: Now) -> Self {
        let kept = self.0 & !(LOW32 | 0xff << STATE_SHIFT);
        let seen = self.last_seen().max(now);
        Self(kept | u64::from(seen) | u64::from(state.code()) << STATE_SHIFT)
    }
}

/// The value words of a flow's original record.
pub(super) fn original_value(flow: &NewFlow, head: Head) -> [u64; VALUE_WORDS] {
    value(head, flow, flow.reply.reversed())
}

/// The value words of a flow's reply record.
pub(super) fn reply_value(flow: &NewFlow, head: Head) -> [u64; VALUE_WORDS] {
    value(head, flow, flow.original.reversed())
}

fn value(head: Head, flow: &NewFlow, xlate: FlowKey) -> [u64; VALUE_WORDS] {
    let [x0, x1] = xlate.to_words();
    let ids = u64::from(flow.service) << 32 | u64::from(flow.backend);
    [head.0, ids, x0, x1]
}

pub(super) fn service(value: &[u64; VALUE_WORDS]) -> u32 {
    (value[IDS] >> 32) as u32
}

pub(super) fn backend(value: &[u64; VALUE_WORDS]) -> u32 {
    value[IDS] as u32
}

pub(super) fn xlate_words(value: &[u64; VALUE_WORDS]) -> [u64; 2] {
    [value[XLATE], value[XLATE + 1]]
}

pub(super) fn xlate(value: &[u64; VALUE_WORDS]) -> Option<FlowKey> {
    FlowKey::from_words(xlate_words(value))
}

/// The key of the other record of a flow, from this record's translation words.
pub(super) fn partner_key(xlate: [u64; 2]) -> Option<Key> {
    Some(FlowKey::from_words(xlate)?.reversed().to_words())
}

const MARK_LOW_SHIFT: u32 = 8;
const MARK_HIGH_SHIFT: u32 = 48;
const MARK_MASK: u64 = 0xff << MARK_LOW_SHIFT | 0xffff << MARK_HIGH_SHIFT;
/// Sequence marks count in 24 bits.
pub(super) const MARK_MODULUS: u32 = 1 << 24;

/// The sequence mark kept in a record's second translation word (0 = none).
pub(super) fn seq_mark(word: u64) -> u32 {
    let low = (word >> MARK_LOW_SHIFT) & 0xff;
    let high = (word >> MARK_HIGH_SHIFT) & 0xffff;
    (high << 8 | low) as u32
}

/// `word` with its sequence mark replaced by `mark` (24 bits); every other bit unchanged.
pub(super) fn with_seq_mark(word: u64, mark: u32) -> u64 {
    let mark = u64::from(mark & (MARK_MODULUS - 1));
    word & !MARK_MASK | (mark & 0xff) << MARK_LOW_SHIFT | (mark >> 8) << MARK_HIGH_SHIFT
}
