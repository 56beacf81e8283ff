//! `FlowMap`: a fixed-capacity concurrent hash table of fixed-size records made of `u64` words,
//! shared by all workers, with lock-free reads. Conntrack and session affinity sit on it.
//!
//! Layout (one flat `[AtomicU64]`, position independent: indices, never pointers; the words live
//! in an [`io::words::Words`](crate::io::words::Words), on the heap or in a shared file mapping
//! that outlives the process):
//! - a header of 8 words: magic, layout version, value words `V`, slots per bucket, bucket count,
//!   seed 0, seed 1, and a reserved zero word;
//! - `buckets` buckets of `4 + 16 * (2 + V)` words: a version word, two tag words (one byte per
//!   slot, 0 = empty), a reserved zero word, then 16 slots, each a key (2 words) and a value
//!   (`V` words).
//!
//! Cache lines: the words start on a 64-byte boundary (`Words` guarantees it), so with the
//! 8-word table header and buckets of a multiple of 4 words every bucket's 32-byte header lies
//! in one cache line. Where a record (`2 + V` words) cannot lie in one line in every lane, an
//! insert prefers a lane where it does, and the key's first bucket while it has room (see
//! [`Locked::vacancy`]): an established flow's lookup then reads one header line and one record
//! line.
//!
//! Invariants and protocol:
//! - A key has two candidate buckets (two seeded hashes) and lives in at most one slot of them.
//!   Records never move: a [`SlotId`] names a record until the record is cleared.
//! - Writers lock buckets with [`FlowMap::lock`]: a CAS makes the version odd. Several buckets are
//!   locked in ascending index order, so writers cannot deadlock. Unlocking bumps the version of a
//!   modified bucket and restores the version of an untouched one.
//! - Readers never lock: they read the version (waiting while it is odd), read the words with
//!   Relaxed loads, issue an Acquire fence and re-read the version; a change means a writer came
//!   in between and the read is retried. A reader waits only while a writer is inside its short
//!   critical section (no allocation, no syscall there).
//! - Publication order of a record: after a Release fence, the key and value words `1..V` are
//!   stored, then value word 0 (the *head* word) with Release. The owner may change the head word
//!   outside any lock with single-word atomics, and `clear` leaves the value words in place, so an
//!   owner can keep a per-slot generation in the head word across reuse of the slot.
//! - A writer that dies holding a lock (the process was killed) leaves its buckets odd; adoption
//!   (`FlowMap::from_words`) repairs them, see `layout`.
//! - Capacity is fixed at construction. A key whose two buckets are full gets no vacancy; eviction
//!   is the caller's policy (or [`FlowMap::upsert_evicting`]'s least-recently-used one).

mod layout;
mod locked;
mod prefetch;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering, fence};

pub use layout::{LAYOUT_VERSION, LayoutError};
pub use locked::Locked;
pub use prefetch::Probe;

use crate::flow::mix64;
use crate::io::hugepages::Pages;
use crate::io::words::Words;

/// A record key: two words (a [`crate::flow::FlowKey`] packs into exactly this).
pub type Key = [u64; 2];

/// Slots in one bucket.
pub const SLOTS_PER_BUCKET: usize = 16;
/// Words of a key at the start of every record.
pub const KEY_WORDS: usize = 2;
/// Words at the start of a bucket: version, two tag words and a reserved zero word (32 bytes, so
/// a header never straddles two cache lines).
const BUCKET_HEADER_WORDS: usize = 4;
/// Bytes of a cache line.
const LINE_BYTES: usize = 64;

/// A record's position: bucket * [`SLOTS_PER_BUCKET`] + lane. Only a map makes them, in bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SlotId(u32);

impl SlotId {
    fn new(bucket: usize, lane: usize) -> Self {
        // The constructors guarantee every slot index fits in u32.
        Self((bucket * SLOTS_PER_BUCKET + lane) as u32)
    }

    /// The index as stored in records that point at other records.
    pub fn raw(self) -> u32 {
        self.0
    }

    /// The bucket holding this slot.
    pub fn bucket(self) -> usize {
        self.0 as usize / SLOTS_PER_BUCKET
    }

    fn lane(self) -> usize {
        self.0 as usize % SLOTS_PER_BUCKET
    }
}

/// Where a key may live: its two candidate buckets (equal only in a one-bucket map) and its tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Placement {
    buckets: [usize; 2],
    tag: u8,
}

impl Placement {
    fn distinct(self) -> impl Iterator<Item = usize> {
        let second = (self.buckets[1] != self.buckets[0]).then_some(self.buckets[1]);
        std::iter::once(self.buckets[0]).chain(second)
    }
}

/// A bounded step of a full-table scan (ageing, flushes): the next bucket to visit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepCursor {
    next: usize,
}

impl SweepCursor {
    /// Returns the bucket to visit now and moves past it, wrapping at `buckets`.
    pub fn advance(&mut self, buckets: usize) -> usize {
        let bucket = self.next % buckets.max(1);
        self.next = (bucket + 1) % buckets.max(1);
        bucket
    }
}

/// What [`FlowMap::upsert_evicting`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upsert {
    Inserted,
    Replaced,
    /// Both buckets were full: the record with this key, the least recently used, was dropped.
    Evicted(Key),
}

/// A consistent copy of one bucket's occupied slots.
#[derive(Clone, Copy, Debug)]
pub struct BucketSnapshot<const V: usize> {
    bucket: usize,
    occupied: u16,
    keys: [Key; SLOTS_PER_BUCKET],
    values: [[u64; V]; SLOTS_PER_BUCKET],
}

impl<const V: usize> BucketSnapshot<V> {
    /// The occupied slots with their keys and values.
    pub fn iter(&self) -> impl Iterator<Item = (SlotId, Key, [u64; V])> + '_ {
        (0..SLOTS_PER_BUCKET)
            .filter(|lane| self.occupied & (1 << lane) != 0)
            .map(|lane| {
                (
                    SlotId::new(self.bucket, lane),
                    self.keys[lane],
                    self.values[lane],
                )
            })
    }
}

/// The table. `V` is the number of value words per record (at least 1: word 0 is the head).
pub struct FlowMap<const V: usize> {
    words: Words,
    buckets: usize,
    seeds: [u64; 2],
    /// Buckets found locked by a dead writer and repaired at adoption.
    repaired: usize,
}

impl<const V: usize> FlowMap<V> {
    const SLOT_WORDS: usize = KEY_WORDS + V;
    const BUCKET_WORDS: usize = BUCKET_HEADER_WORDS + SLOTS_PER_BUCKET * Self::SLOT_WORDS;

    /// The number of records the table can hold.
    pub fn slots(&self) -> usize {
        self.buckets * SLOTS_PER_BUCKET
    }

    /// The number of buckets.
    pub fn buckets(&self) -> usize {
        self.buckets
    }

    /// The raw storage (header and buckets).
    pub fn words(&self) -> &[AtomicU64] {
        &self.words
    }

    /// What backs the storage (huge pages or not); reads `/proc`, so not for the data path.
    pub fn pages(&self) -> Pages {
        self.words.pages()
    }

    /// Gives the storage back, for [`FlowMap::from_words`] in a successor.
    pub fn into_words(self) -> Words {
        self.words
    }

    /// Buckets that adoption found locked by a dead writer and repaired (0 for a new table).
    pub fn repaired_buckets(&self) -> usize {
        self.repaired
    }

    /// Checks a slot index read from a record; `None` if it is out of this table.
    pub fn slot(&self, raw: u32) -> Option<SlotId> {
        ((raw as usize) < self.slots()).then_some(SlotId(raw))
    }

    /// The candidate buckets of `key` (equal only when the table has one bucket).
    pub fn candidate_buckets(&self, key: &Key) -> [usize; 2] {
        self.placement(key).buckets
    }

    /// The words of one record: its key, then its value. For single-word atomic updates of a
    /// record's head word and for reads that validate themselves (see the module doc).
    pub fn record(&self, slot: SlotId) -> &[AtomicU64] {
        let start = Self::record_start(slot);
        &self.words[start..start + Self::SLOT_WORDS]
    }

    /// Lock-free lookup: the slot and a consistent copy of the value of `key`.
    pub fn get(&self, key: &Key) -> Option<(SlotId, [u64; V])> {
        let place = self.placement(key);
        // Two plain calls rather than an iterator over the buckets: this is the hottest path
        // of the pipeline, and the copy of the value stays in registers.
        let [first, second] = place.buckets;
        let found = self.get_in(first, key, place.tag);
        if found.is_some() || second == first {
            return found;
        }
        self.get_in(second, key, place.tag)
    }

    /// [`FlowMap::get`] in one bucket.
    #[inline(always)]
    fn get_in(&self, bucket: usize, key: &Key, tag: u8) -> Option<(SlotId, [u64; V])> {
        self.read_stable(bucket, |words| {
            let lane = Self::find_lane(words, key, tag)?;
            Some((SlotId::new(bucket, lane), Self::load_value(words, lane)))
        })
    }

    /// A consistent copy of one bucket, for scans that run beside writers.
    pub fn read_bucket(&self, bucket: usize) -> BucketSnapshot<V> {
        self.read_stable(bucket, |words| {
            let tags = load_tags(words);
            let mut snapshot = BucketSnapshot {
                bucket,
                occupied: 0,
                keys: [[0; 2]; SLOTS_PER_BUCKET],
                values: [[0; V]; SLOTS_PER_BUCKET],
            };
            for lane in (0..SLOTS_PER_BUCKET).filter(|&lane| lane_tag(tags, lane) != 0) {
                snapshot.occupied |= 1 << lane;
                snapshot.keys[lane] = Self::load_key(words, lane);
                snapshot.values[lane] = Self::load_value(words, lane);
            }
            snapshot
        })
    }

    /// Locks the candidate buckets of up to two keys (ascending order) until the guard drops.
    ///
    /// # Panics
    /// If given more than two keys.
    pub fn lock(&self, keys: &[Key]) -> Locked<'_, V> {
        Locked::new(self, keys)
    }

    /// Inserts or overwrites `key`. When both buckets are full, the record with the smallest
    /// `last_used` in them is overwritten (least recently used eviction).
    pub fn upsert_evicting(
        &self,
        key: Key,
        value: [u64; V],
        last_used: impl Fn(&[u64; V]) -> u32,
    ) -> Upsert {
        let mut locked = self.lock(&[key]);
        if let Some(slot) = locked.find(&key) {
            locked.write(slot, key, value);
            return Upsert::Replaced;
        }
        let (slot, evicted) = match locked.vacancy(&key, None, |_, _, _| false) {
            Some(slot) => (slot, None),
            None => {
                let slot = locked.least_recent(&key, last_used);
                (slot, Some(locked.key(slot)))
            }
        };
        locked.write(slot, key, value);
        evicted.map_or(Upsert::Inserted, Upsert::Evicted)
    }

    /// Removes `key` if `remove` says so about its current slot and value; returns the value.
    pub fn remove_if(
        &self,
        key: &Key,
        remove: impl FnOnce(SlotId, &[u64; V]) -> bool,
    ) -> Option<[u64; V]> {
        let mut locked = self.lock(&[*key]);
        let slot = locked.find(key)?;
        let value = locked.value(slot);
        remove(slot, &value).then(|| {
            locked.clear(slot);
            value
        })
    }

    fn placement(&self, key: &Key) -> Placement {
        let hash = |seed: u64| mix64(key[0] ^ seed, key[1].wrapping_add(seed.rotate_left(29)));
        let (first, second) = (hash(self.seeds[0]), hash(self.seeds[1]));
        let reduce = |h: u64| ((u128::from(h) * self.buckets as u128) >> 64) as usize;
        let b0 = reduce(first);
        let mut b1 = reduce(second);
        if b1 == b0 {
            b1 = (b0 + 1) % self.buckets;
        }
        // The tag comes from the low byte, independent of the high bits that pick the bucket.
        let tag = (first as u8).max(1);
        Placement {
            buckets: [b0, b1],
            tag,
        }
    }

    fn bucket_words(&self, bucket: usize) -> &[AtomicU64] {
        let start = layout::HEADER_WORDS + bucket * Self::BUCKET_WORDS;
        &self.words[start..start + Self::BUCKET_WORDS]
    }

    fn record_start(slot: SlotId) -> usize {
        layout::HEADER_WORDS + slot.bucket() * Self::BUCKET_WORDS + Self::lane_offset(slot.lane())
    }

    fn lane_offset(lane: usize) -> usize {
        BUCKET_HEADER_WORDS + lane * Self::SLOT_WORDS
    }

    /// Whether the record at `slot` lies within one cache line (the storage starts on one).
    fn in_one_line(slot: SlotId) -> bool {
        let start = Self::record_start(slot) * 8;
        start % LINE_BYTES + Self::SLOT_WORDS * 8 <= LINE_BYTES
    }

    /// The lanes of `bucket` that hold a record (bit `lane`), read without the seqlock: a
    /// hint for scans that check each record again before acting on it.
    pub fn occupied_lanes(&self, bucket: usize) -> u16 {
        let tags = load_tags(self.bucket_words(bucket));
        (0..SLOTS_PER_BUCKET)
            .filter(|&lane| lane_tag(tags, lane) != 0)
            .fold(0, |mask, lane| mask | 1 << lane)
    }

    /// Runs `read` over a bucket until it saw no concurrent writer (the seqlock read side).
    #[inline(always)]
    fn read_stable<T>(&self, bucket: usize, read: impl Fn(&[AtomicU64]) -> T) -> T {
        let words = self.bucket_words(bucket);
        let mut waited = 0u32;
        loop {
            let before = words[0].load(Ordering::Acquire);
            if before & 1 == 0 {
                let out = read(words);
                fence(Ordering::Acquire);
                if words[0].load(Ordering::Relaxed) == before {
                    return out;
                }
            }
            wait_a_little(&mut waited);
        }
    }

    /// The lane holding `key`. Tags are matched eight lanes at a time (SWAR zero-byte test on
    /// `tags ^ tag-pattern`); the test may flag extra lanes, never misses one, and every flagged
    /// lane's tag and key are compared exactly.
    #[inline(always)]
    fn find_lane(words: &[AtomicU64], key: &Key, tag: u8) -> Option<usize> {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGHS: u64 = 0x8080_8080_8080_8080;
        let pattern = u64::from(tag) * ONES;
        for (half, tag_word) in load_tags(words).into_iter().enumerate() {
            let x = tag_word ^ pattern;
            let mut candidates = x.wrapping_sub(ONES) & !x & HIGHS;
            while candidates != 0 {
                let byte = candidates.trailing_zeros() / 8;
                let lane = half * 8 + byte as usize;
                // The exact tag check drops the test's false positives (an empty lane, tag 0,
                // may still hold the words of an old key).
                if (tag_word >> (byte * 8)) as u8 == tag
                    && lane < SLOTS_PER_BUCKET
                    && Self::load_key(words, lane) == *key
                {
                    return Some(lane);
                }
                candidates &= candidates - 1;
            }
        }
        None
    }

    fn load_key(words: &[AtomicU64], lane: usize) -> Key {
        let at = Self::lane_offset(lane);
        [
            words[at].load(Ordering::Relaxed),
            words[at + 1].load(Ordering::Relaxed),
        ]
    }

    fn load_value(words: &[AtomicU64], lane: usize) -> [u64; V] {
        let at = Self::lane_offset(lane) + KEY_WORDS;
        std::array::from_fn(|i| words[at + i].load(Ordering::Relaxed))
    }
}

/// Backs off while a writer holds a bucket: spin, and let the OS run others now and then in case
/// the writer was preempted.
fn wait_a_little(waited: &mut u32) {
    *waited = waited.wrapping_add(1);
    if waited.is_multiple_of(128) {
        std::thread::yield_now();
    } else {
        std::hint::spin_loop();
    }
}

fn load_tags(bucket: &[AtomicU64]) -> [u64; 2] {
    [
        bucket[1].load(Ordering::Relaxed),
        bucket[2].load(Ordering::Relaxed),
    ]
}

fn lane_tag(tags: [u64; 2], lane: usize) -> u8 {
    (tags[lane / 8] >> ((lane % 8) * 8)) as u8
}
