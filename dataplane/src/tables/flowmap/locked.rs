//! The write side of the flowmap: a guard holding the candidate buckets of one or two keys.
//!
//! Invariants:
//! - Buckets are locked in ascending index order and each at most once, so two guards never wait
//!   on each other in a cycle; the guard unlocks them all when dropped, even while unwinding.
//! - Every method touches only buckets this guard holds (checked: a slip is a bug, it panics).
//! - Writes keep the publication order of the module doc: Release fence, key and value words
//!   `1..V`, then value word 0 with Release; then the slot's tag.

use std::sync::atomic::{AtomicU64, Ordering, fence};

use super::{FlowMap, Key, SLOTS_PER_BUCKET, SlotId, load_tags, wait_a_little};
use super::{KEY_WORDS, lane_tag};

/// At most two keys, two candidate buckets each.
const MAX_HELD: usize = 4;
/// Empty slots a key's first bucket keeps before new records go to the emptier candidate.
const FIRST_BUCKET_SPARE: usize = 6;

#[derive(Clone, Copy, Debug, Default)]
struct Held {
    bucket: usize,
    /// The odd version this guard set.
    locked_at: u64,
    dirty: bool,
}

/// Exclusive access to the candidate buckets of up to two keys. See [`FlowMap::lock`].
pub struct Locked<'a, const V: usize> {
    map: &'a FlowMap<V>,
    held: [Held; MAX_HELD],
    count: usize,
}

impl<'a, const V: usize> Locked<'a, V> {
    pub(super) fn new(map: &'a FlowMap<V>, keys: &[Key]) -> Self {
        assert!(keys.len() <= MAX_HELD / 2, "a guard holds at most two keys");
        let mut buckets = [usize::MAX; MAX_HELD];
        let mut count = 0;
        for bucket in keys.iter().flat_map(|key| map.placement(key).distinct()) {
            buckets[count] = bucket;
            count += 1;
        }
        buckets[..count].sort_unstable();
        let mut guard = Self {
            map,
            held: [Held::default(); MAX_HELD],
            count: 0,
        };
        for (i, &bucket) in buckets[..count].iter().enumerate() {
            if i > 0 && buckets[i - 1] == bucket {
                continue;
            }
            let locked_at = lock_bucket(&map.bucket_words(bucket)[0]);
            guard.held[guard.count] = Held {
                bucket,
                locked_at,
                dirty: false,
            };
            guard.count += 1;
        }
        // Seqlock write side: nothing stored from here on may become visible before the odd
        // versions above.
        fence(Ordering::Release);
        guard
    }

    /// The slot holding `key`, if any.
    pub fn find(&self, key: &Key) -> Option<SlotId> {
        let place = self.map.placement(key);
        place.distinct().find_map(|bucket| {
            self.held_index(bucket);
            let lane = FlowMap::<V>::find_lane(self.map.bucket_words(bucket), key, place.tag)?;
            Some(SlotId::new(bucket, lane))
        })
    }

    /// The key stored at `slot`.
    pub fn key(&self, slot: SlotId) -> Key {
        self.held_index(slot.bucket());
        FlowMap::<V>::load_key(self.map.bucket_words(slot.bucket()), slot.lane())
    }

    /// The value stored at `slot` (its head word as of now: owners may change it without a lock).
    pub fn value(&self, slot: SlotId) -> [u64; V] {
        self.held_index(slot.bucket());
        FlowMap::<V>::load_value(self.map.bucket_words(slot.bucket()), slot.lane())
    }

    /// A slot for a new record of `key`, other than `exclude`: an empty slot of the key's first
    /// bucket while that has `FIRST_BUCKET_SPARE` empty slots, else of the emptier candidate
    /// bucket, preferring a lane whose record lies in one cache line; else the first occupied
    /// slot that `reclaimable` gives up (it may act, e.g. retire the old record, before saying
    /// yes). `None`: both buckets are full.
    ///
    /// Keeping most records in their key's first bucket makes most lookups read one bucket
    /// header; the switch to the emptier bucket near full keeps two-choice hashing's balance
    /// where it matters (a full pair of buckets forces an eviction).
    pub fn vacancy(
        &self,
        key: &Key,
        exclude: Option<SlotId>,
        mut reclaimable: impl FnMut(SlotId, &Key, &[u64; V]) -> bool,
    ) -> Option<SlotId> {
        let place = self.map.placement(key);
        let mut emptiest: Option<(usize, SlotId)> = None;
        for (nth, bucket) in place.distinct().enumerate() {
            self.held_index(bucket);
            let tags = load_tags(self.map.bucket_words(bucket));
            let mut count = 0;
            let mut pick: Option<(SlotId, bool)> = None;
            let empty = (0..SLOTS_PER_BUCKET)
                .filter(|&lane| lane_tag(tags, lane) == 0)
                .map(|lane| SlotId::new(bucket, lane))
                .filter(|&slot| Some(slot) != exclude);
            for slot in empty {
                count += 1;
                let one_line = FlowMap::<V>::in_one_line(slot);
                if pick.is_none_or(|(_, picked_one_line)| one_line && !picked_one_line) {
                    pick = Some((slot, one_line));
                }
            }
            let Some((pick, _)) = pick else {
                continue;
            };
            if nth == 0 && count >= FIRST_BUCKET_SPARE {
                return Some(pick);
            }
            if emptiest.is_none_or(|(best, _)| count > best) {
                emptiest = Some((count, pick));
            }
        }
        if let Some((_, slot)) = emptiest {
            return Some(slot);
        }
        place
            .distinct()
            .flat_map(|bucket| (0..SLOTS_PER_BUCKET).map(move |lane| SlotId::new(bucket, lane)))
            .filter(|&slot| Some(slot) != exclude)
            .find(|&slot| reclaimable(slot, &self.key(slot), &self.value(slot)))
    }

    /// The occupied candidate slot of `key` whose record has the smallest `last_used`
    /// (an empty slot, if there is one, counts as oldest).
    pub fn least_recent(&self, key: &Key, last_used: impl Fn(&[u64; V]) -> u32) -> SlotId {
        let place = self.map.placement(key);
        let candidates = place
            .distinct()
            .flat_map(|bucket| (0..SLOTS_PER_BUCKET).map(move |lane| SlotId::new(bucket, lane)));
        let age = |slot: SlotId| {
            let tags = load_tags(self.map.bucket_words(slot.bucket()));
            match lane_tag(tags, slot.lane()) {
                0 => None,
                _ => Some(last_used(&self.value(slot))),
            }
        };
        let mut oldest = SlotId::new(place.buckets[0], 0);
        for slot in candidates {
            if age(slot) < age(oldest) {
                oldest = slot;
            }
        }
        oldest
    }

    /// Stores a record for `key` at `slot`, which must be one of `key`'s candidate slots.
    pub fn write(&mut self, slot: SlotId, key: Key, value: [u64; V]) {
        let place = self.map.placement(&key);
        assert!(
            place.buckets.contains(&slot.bucket()),
            "a record must live in a candidate bucket of its key"
        );
        let held = self.held_index(slot.bucket());
        let words = self.map.bucket_words(slot.bucket());
        let at = FlowMap::<V>::lane_offset(slot.lane());
        fence(Ordering::Release);
        words[at].store(key[0], Ordering::Relaxed);
        words[at + 1].store(key[1], Ordering::Relaxed);
        for (i, &word) in value.iter().enumerate().skip(1) {
            words[at + KEY_WORDS + i].store(word, Ordering::Relaxed);
        }
        words[at + KEY_WORDS].store(value[0], Ordering::Release);
        set_tag(words, slot.lane(), place.tag);
        self.held[held].dirty = true;
    }

    /// Empties `slot`. The value words stay (see the module doc); the key is unreachable.
    pub fn clear(&mut self, slot: SlotId) {
        let held = self.held_index(slot.bucket());
        set_tag(self.map.bucket_words(slot.bucket()), slot.lane(), 0);
        self.held[held].dirty = true;
    }

    fn held_index(&self, bucket: usize) -> usize {
        let found = self.held[..self.count]
            .iter()
            .position(|h| h.bucket == bucket);
        match found {
            Some(index) => index,
            None => panic!("bucket {bucket} is not held by this guard"),
        }
    }
}

impl<const V: usize> Drop for Locked<'_, V> {
    fn drop(&mut self) {
        for held in &self.held[..self.count] {
            let version = &self.map.bucket_words(held.bucket)[0];
            let unlocked = if held.dirty {
                held.locked_at.wrapping_add(1)
            } else {
                held.locked_at.wrapping_sub(1)
            };
            version.store(unlocked, Ordering::Release);
        }
    }
}

/// Spins until this thread turns the version from even to odd; returns the odd version.
fn lock_bucket(version: &AtomicU64) -> u64 {
    let mut waited = 0u32;
    loop {
        let seen = version.load(Ordering::Relaxed);
        if seen & 1 == 0 {
            let odd = seen.wrapping_add(1);
            let swapped =
                version.compare_exchange_weak(seen, odd, Ordering::Acquire, Ordering::Relaxed);
            if swapped.is_ok() {
                return odd;
            }
        }
        wait_a_little(&mut waited);
    }
}

fn set_tag(bucket: &[AtomicU64], lane: usize, tag: u8) {
    let word = &bucket[1 + lane / 8];
    let shift = (lane % 8) * 8;
    let old = word.load(Ordering::Relaxed);
    word.store(
        (old & !(0xff << shift)) | (u64::from(tag) << shift),
        Ordering::Relaxed,
    );
}
