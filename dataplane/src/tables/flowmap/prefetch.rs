//! Prefetch hints: a batch driver that knows the keys of the packets a few places ahead asks
//! for their buckets' cache lines now, so the lookup finds them in cache instead of waiting
//! on memory (at a million flows a lookup otherwise misses the caches and the TLB).
//!
//! Two stages, issued some packets apart:
//! 1. [`FlowMap::prefetch_buckets`]: the header line (version, tags) of both candidate
//!    buckets;
//! 2. [`FlowMap::prefetch_records`]: the record lines of the lanes whose tag matches the key's,
//!    found by reading the (by now cached) tags: in the first bucket, where inserts put most
//!    records (`Locked::vacancy`), and in the second only where the first has no match.
//!
//! Invariants:
//! - Hints only: nothing is written, no lock is taken or waited for, and the tags are read
//!   without the seqlock; a concurrent writer can make a hint useless, never a lookup wrong.
//! - Only words of the table are named, so every address is in bounds.

use super::{BUCKET_HEADER_WORDS, FlowMap, Key, Placement, load_tags};
use crate::io::prefetch::prefetch_record;

/// Where a key may live, hashed once for both prefetch stages ([`FlowMap::probe`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe(Placement);

impl<const V: usize> FlowMap<V> {
    /// Hashes `key` for the prefetch stages.
    #[inline]
    pub fn probe(&self, key: &Key) -> Probe {
        Probe(self.placement(key))
    }

    /// Stage 1: starts loading the headers of both candidate buckets (a probe of another,
    /// larger table names buckets this one lacks: those are skipped).
    #[inline]
    pub fn prefetch_buckets(&self, probe: &Probe) {
        let [first, second] = probe.0.buckets;
        self.prefetch_header(first);
        if second != first {
            self.prefetch_header(second);
        }
    }

    /// Stage 2: starts loading the records whose tag matches, as far as the tags read now say
    /// (the zero-byte test may flag a lane too many: a wasted hint): those of the first bucket,
    /// and only where none matches there, those of the second.
    #[inline]
    pub fn prefetch_records(&self, probe: &Probe) {
        let place = probe.0;
        let [first, second] = place.buckets;
        if !self.prefetch_matching(first, place.tag) && second != first {
            self.prefetch_matching(second, place.tag);
        }
    }

    /// Prefetches the records of `bucket` whose tag may be `tag`; whether there was one.
    #[inline(always)]
    fn prefetch_matching(&self, bucket: usize, tag: u8) -> bool {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGHS: u64 = 0x8080_8080_8080_8080;
        if bucket >= self.buckets {
            return false;
        }
        let pattern = u64::from(tag) * ONES;
        let words = self.bucket_words(bucket);
        let mut matched = false;
        for (half, tags) in load_tags(words).into_iter().enumerate() {
            let x = tags ^ pattern;
            let mut flagged = x.wrapping_sub(ONES) & !x & HIGHS;
            while flagged != 0 {
                let lane = half * 8 + (flagged.trailing_zeros() / 8) as usize;
                let at = Self::lane_offset(lane);
                prefetch_record(&words[at..at + Self::SLOT_WORDS]);
                matched = true;
                flagged &= flagged - 1;
            }
        }
        matched
    }

    #[inline(always)]
    fn prefetch_header(&self, bucket: usize) {
        let start = super::layout::HEADER_WORDS + bucket * Self::BUCKET_WORDS;
        if let Some(header) = self.words.get(start..start + BUCKET_HEADER_WORDS) {
            prefetch_record(header);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_change_nothing_and_tolerate_a_probe_of_another_table() {
        let map = FlowMap::<2>::with_capacity(64);
        let big = FlowMap::<2>::with_capacity(1 << 16);
        let key: Key = [7, 9];
        map.upsert_evicting(key, [1, 2], |_| 0);
        let before: Vec<u64> = map
            .words()
            .iter()
            .map(|w| w.load(std::sync::atomic::Ordering::Relaxed))
            .collect();
        for probe in [map.probe(&key), big.probe(&key), big.probe(&[1, 1])] {
            map.prefetch_buckets(&probe);
            map.prefetch_records(&probe);
        }
        let after: Vec<u64> = map
            .words()
            .iter()
            .map(|w| w.load(std::sync::atomic::Ordering::Relaxed))
            .collect();
        assert_eq!(before, after);
        assert_eq!(map.get(&key).map(|(_, v)| v), Some([1, 2]));
    }
}
