//! Birth and death of flows: the atomic two-record insert, the kill CAS, clearing both records,
//! and eviction when the table or a key's buckets are full.
//!
//! Invariants:
//! - The insert holds the candidate buckets of both keys (up to four, locked in index order) from
//!   the first check to the last write; it writes nothing unless both keys are free and a place in
//!   the live count is reserved, so there is never anything to roll back.
//! - A flow dies only through `kill` (live -> dead CAS on its original head), which decrements the
//!   live count once; records are cleared afterwards by `purge`, or later by whoever needs the slot.
//! - No lock is taken while holding locks except inside one `FlowMap::lock` call; `purge` and
//!   eviction run after the insert's guard is dropped.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering, fence};

use super::limits::Limited;
use super::record::{self, HEAD, HEAD_IN_RECORD, Head, VALUE_WORDS, XLATE_IN_RECORD};
use super::state::initial_state;
use super::{Conntrack, EntryRef, Hit, InsertError, Inserted, NewFlow, Now};
use crate::flow::Dir;
use crate::tables::flowmap::{Key, SlotId};

/// Inserts retried after making room.
const INSERT_ATTEMPTS: usize = 4;
/// Eviction victims chosen afresh when the chosen one saw a packet meanwhile.
const EVICT_ATTEMPTS: usize = 3;
/// Buckets scanned past a key's candidates when those hold no flow at all.
const EVICT_FALLBACK_BUCKETS: usize = 8;

pub(super) enum Kill {
    Killed(Killed),
    /// The flow had already ended (or the slot holds another flow).
    Gone,
    /// The flow is live and `decide` spared it.
    Declined,
}

/// A flow this thread ended, with what is needed to clear its records.
pub(super) struct Killed {
    pub(super) slot: SlotId,
    pub(super) generation: u8,
    pub(super) key: Key,
    pub(super) reply_key: Option<Key>,
}

enum Attempt {
    Done(Result<Inserted, InsertError>),
    /// Make room in these keys' candidate buckets, then try again.
    NeedRoom(Room),
}

enum Room {
    /// The live count is at capacity: any of both keys' buckets will do.
    Capacity,
    /// This key's two buckets are full.
    Buckets(Key),
}

impl Conntrack {
    /// Tracks a new flow; see the module doc of `conntrack` for the semantics.
    pub fn insert(&self, flow: &NewFlow, now: Now) -> Result<Inserted, InsertError> {
        self.insert_evicting(flow, now, true)
    }

    /// [`Conntrack::insert`] that evicts nothing: `Full` where it would have to make room (not
    /// counted as a failure). For a first packet whose fate is not known yet.
    pub fn insert_without_eviction(
        &self,
        flow: &NewFlow,
        now: Now,
    ) -> Result<Inserted, InsertError> {
        self.insert_evicting(flow, now, false)
    }

    fn insert_evicting(
        &self,
        flow: &NewFlow,
        now: Now,
        evict: bool,
    ) -> Result<Inserted, InsertError> {
        let keys = [flow.original.to_words(), flow.reply.to_words()];
        if keys[0] == keys[1] {
            return Err(InsertError::ReplyTaken);
        }
        for _ in 0..INSERT_ATTEMPTS {
            let room = match self.try_insert(flow, keys, now) {
                Attempt::Done(result) => return result,
                Attempt::NeedRoom(_) if !evict => return Err(InsertError::Full),
                Attempt::NeedRoom(room) => room,
            };
            let freed = match room {
                Room::Capacity => self.make_room(&keys, true, now),
                Room::Buckets(key) => self.make_room(&[key], false, now),
            };
            if !freed {
                break;
            }
        }
        self.counters.insert_failed.fetch_add(1, Ordering::Relaxed);
        Err(InsertError::Full)
    }

    fn try_insert(&self, flow: &NewFlow, keys: [Key; 2], now: Now) -> Attempt {
        let [original, reply] = keys;
        let mut locked = self.map.lock(&keys);
        if let Some(slot) = locked.find(&original) {
            if let Some(hit) = self.settle(slot, &locked.value(slot), now) {
                self.counters.races_lost.fetch_add(1, Ordering::Relaxed);
                return Attempt::Done(Ok(Inserted::Existing(hit)));
            }
            locked.clear(slot);
        }
        if let Some(slot) = locked.find(&reply) {
            if self.settle(slot, &locked.value(slot), now).is_some() {
                return Attempt::Done(Err(InsertError::ReplyTaken));
            }
            locked.clear(slot);
        }
        let reclaimable =
            |slot, _: &Key, value: &[u64; VALUE_WORDS]| self.settle(slot, value, now).is_none();
        let Some(original_slot) = locked.vacancy(&original, None, reclaimable) else {
            return Attempt::NeedRoom(Room::Buckets(original));
        };
        let Some(reply_slot) = locked.vacancy(&reply, Some(original_slot), reclaimable) else {
            return Attempt::NeedRoom(Room::Buckets(reply));
        };
        let state = initial_state(flow.original.proto, flow.tcp_flags);
        let unreplied = state.is_unreplied();
        if unreplied
            && let Err(limited) = self
                .limiter
                .acquire(flow.original.src, flow.reply.src, false)
        {
            let counter = match limited {
                Limited::Source => &self.counters.limited_source,
                Limited::Destination => &self.counters.limited_destination,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            return Attempt::Done(Err(InsertError::Limited(limited)));
        }
        if !self.reserve() {
            if unreplied {
                self.limiter.release(flow.original.src, flow.reply.src);
            }
            return Attempt::NeedRoom(Room::Capacity);
        }
        let next_generation = |slot| Head(locked.value(slot)[HEAD]).generation().wrapping_add(1);
        let generation = next_generation(original_slot);
        let reply_generation = next_generation(reply_slot);
        let original_head = Head::original(now, state, generation, flow.flags);
        let reply_head = Head::reply(original_slot, generation, reply_generation, flow.flags);
        locked.write(reply_slot, reply, record::reply_value(flow, reply_head));
        locked.write(
            original_slot,
            original,
            record::original_value(flow, original_head),
        );
        self.counters.inserts.fetch_add(1, Ordering::Relaxed);
        Attempt::Done(Ok(Inserted::Created(Hit {
            dir: Dir::Original,
            xlate: flow.reply.reversed(),
            service: flow.service,
            backend: flow.backend,
            flags: flow.flags,
            entry: EntryRef {
                slot: original_slot.raw(),
                generation,
            },
            record: original_slot.raw(),
            policy_epoch: 0,
        })))
    }

    /// Takes a place in the live count, unless the table is at capacity.
    fn reserve(&self) -> bool {
        let capacity = self.capacity;
        let taken = self
            .live
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < capacity).then_some(n + 1)
            });
        taken.is_ok()
    }

    /// The hit for the record at `slot` if its flow is live at `now`; otherwise makes sure the
    /// flow is dead (killing it if it merely expired) and returns `None`: the record is garbage.
    pub(super) fn settle(&self, slot: SlotId, value: &[u64; VALUE_WORDS], now: Now) -> Option<Hit> {
        loop {
            let (owner, head) = self.owner(slot, value)?;
            if !self.is_expired(head, now) {
                return self.hit(slot, value, owner, head);
            }
            match self.kill(owner, head.generation(), |h| self.is_expired(h, now)) {
                Kill::Killed(_) => {
                    self.counters.expired.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                Kill::Gone => return None,
                // A packet refreshed it meanwhile: look again.
                Kill::Declined => {}
            }
        }
    }

    /// Ends the flow whose original record is at `slot` with `generation`, if `decide` agrees
    /// with its current head. The key words are read before the CAS and are valid if it succeeds:
    /// a writer kills a record before it overwrites its key (module doc of `record`).
    pub(super) fn kill(&self, slot: SlotId, generation: u8, decide: impl Fn(Head) -> bool) -> Kill {
        let words = self.map.record(slot);
        let head_word = &words[HEAD_IN_RECORD];
        let mut current = Head(head_word.load(Ordering::Acquire));
        loop {
            if !current.is_live_original() || current.generation() != generation {
                return Kill::Gone;
            }
            if !decide(current) {
                return Kill::Declined;
            }
            let load = |i: usize| words[i].load(Ordering::Relaxed);
            let key = [load(0), load(1)];
            let xlate = [load(XLATE_IN_RECORD), load(XLATE_IN_RECORD + 1)];
            fence(Ordering::Acquire);
            let dead = current.killed().0;
            match head_word.compare_exchange(current.0, dead, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    self.live.0.fetch_sub(1, Ordering::Relaxed);
                    if current.state().is_some_and(|s| s.is_unreplied()) {
                        let (src, dst) = addresses(key[0], xlate[0]);
                        self.limiter.release(src, dst);
                    }
                    return Kill::Killed(Killed {
                        slot,
                        generation,
                        key,
                        reply_key: record::partner_key(xlate),
                    });
                }
                Err(seen) => current = Head(seen),
            }
        }
    }

    /// Clears both records of a flow this thread killed (those not already reclaimed).
    pub(super) fn purge(&self, killed: &Killed) {
        let mut locked = match killed.reply_key {
            Some(reply_key) => self.map.lock(&[killed.key, reply_key]),
            None => self.map.lock(&[killed.key]),
        };
        if let Some(slot) = locked.find(&killed.key) {
            let head = Head(locked.value(slot)[HEAD]);
            let ours = slot == killed.slot && head.generation() == killed.generation;
            if ours && !head.is_live_original() {
                locked.clear(slot);
            }
        }
        if let Some(reply_key) = killed.reply_key
            && let Some(slot) = locked.find(&reply_key)
        {
            let head = Head(locked.value(slot)[HEAD]);
            let ours = head.partner() == killed.slot.raw()
                && head.partner_generation() == killed.generation;
            if head.is_reply() && ours {
                locked.clear(slot);
            }
        }
    }

    /// Ends one flow with a record in the candidate buckets of `keys`: an expired one, else the
    /// least recently seen unreplied one, else the least recently seen unassured one; never an
    /// assured one. `anywhere`: room in the live count will do, so when the candidates offer no
    /// victim, look in a few buckets past them. False if there was none to end.
    fn make_room(&self, keys: &[Key], anywhere: bool, now: Now) -> bool {
        for _ in 0..EVICT_ATTEMPTS {
            let Some((owner, head)) = self.eviction_victim(keys, anywhere, now) else {
                return false;
            };
            let expired = self.is_expired(head, now);
            if let Kill::Killed(killed) = self.kill(owner, head.generation(), |h| h == head) {
                let counter = match head.state() {
                    Some(state) if !expired => &self.counters.evictions[state.index()],
                    _ => &self.counters.expired,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                self.purge(&killed);
                return true;
            }
        }
        false
    }

    fn eviction_victim(&self, keys: &[Key], anywhere: bool, now: Now) -> Option<(SlotId, Head)> {
        // Lower ranks go first: (class, last seen).
        let mut best: Option<((u8, u32), SlotId, Head)> = None;
        let mut consider = |bucket: usize| {
            for (slot, _, value) in self.map.read_bucket(bucket).iter() {
                let Some((owner, head)) = self.owner(slot, &value) else {
                    continue;
                };
                let class = match head.state() {
                    _ if self.is_expired(head, now) => 0,
                    Some(state) if state.is_unreplied() => 1,
                    Some(state) if !state.is_assured() => 2,
                    _ => continue,
                };
                let rank = (class, head.last_seen());
                if best.is_none_or(|(best_rank, ..)| rank < best_rank) {
                    best = Some((rank, owner, head));
                }
            }
            best.is_some()
        };
        let candidates = keys.iter().flat_map(|key| self.map.candidate_buckets(key));
        let mut found = false;
        for bucket in candidates {
            found = consider(bucket);
        }
        // Room in the live count may come from anywhere: when the candidates offer no victim
        // (tiny tables, or only assured flows there), look a little further.
        let start = self.map.candidate_buckets(&keys[0])[0];
        for step in 1..=EVICT_FALLBACK_BUCKETS {
            if found || !anywhere {
                break;
            }
            found = consider((start + step) % self.map.buckets());
        }
        best.map(|(_, owner, head)| (owner, head))
    }

    /// After adoption: counts live flows, kills those whose reply record did not survive and
    /// clears the records of dead flows (a process killed between a kill and its purge leaves
    /// them) and reply records whose original did not survive.
    pub(super) fn recount(&self) {
        for bucket in 0..self.map.buckets() {
            for (slot, key, value) in self.map.read_bucket(bucket).iter() {
                let head = Head(value[HEAD]);
                if !head.is_live_original() {
                    if self.owner(slot, &value).is_none() {
                        self.clear_garbage(slot, &key);
                    }
                    continue;
                }
                self.live.0.fetch_add(1, Ordering::Relaxed);
                if head.state().is_some_and(|s| s.is_unreplied()) {
                    let (src, dst) = addresses(key[0], value[record::XLATE]);
                    let _ = self.limiter.acquire(src, dst, true);
                }
                let reply_intact = record::partner_key(record::xlate_words(&value))
                    .and_then(|reply_key| self.map.get(&reply_key))
                    .is_some_and(|(_, reply)| {
                        let reply_head = Head(reply[HEAD]);
                        reply_head.is_reply()
                            && reply_head.partner() == slot.raw()
                            && reply_head.partner_generation() == head.generation()
                    });
                if !reply_intact
                    && let Kill::Killed(killed) = self.kill(slot, head.generation(), |_| true)
                {
                    self.purge(&killed);
                }
            }
        }
    }
}

/// The original source and the destination after DNAT of a flow, from its original record's
/// first key word and first translation word (`reply.reversed()`: its destination is the reply
/// tuple's source).
fn addresses(key0: u64, xlate0: u64) -> (Ipv4Addr, Ipv4Addr) {
    (
        Ipv4Addr::from((key0 >> 32) as u32),
        Ipv4Addr::from(xlate0 as u32),
    )
}

/// [`addresses`] read from an original record's words, ahead of a CAS on its head that makes
/// them valid if it succeeds (a writer kills a record before it overwrites it).
pub(super) fn flow_addresses(words: &[AtomicU64]) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let key0 = words.first()?.load(Ordering::Relaxed);
    let xlate0 = words.get(XLATE_IN_RECORD)?.load(Ordering::Relaxed);
    fence(Ordering::Acquire);
    Some(addresses(key0, xlate0))
}
