//! The flowmap header: building a fresh table and adopting a live one from its words.
//!
//! Invariants:
//! - Word 0 is the magic, word 1 the layout version; a table whose header does not describe
//!   exactly its own length, value width and bucket size is refused, never guessed at.
//! - Adoption repairs what a writer that died inside its critical section can leave: its
//!   buckets' versions are odd (locked). Such a bucket keeps every record whose tag is its key's
//!   tag in one of its key's candidate buckets; a slot caught between its words and its tag is
//!   emptied, and the words of every empty slot are zeroed, so nobody resolving a record by its
//!   slot (an owner following a partner index) finds half-written words; then the version
//!   becomes even. What the records mean to each other is the owner's to check.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{FlowMap, KEY_WORDS, SLOTS_PER_BUCKET, lane_tag, load_tags};
use crate::io::words::Words;

/// Words of the table header.
pub(super) const HEADER_WORDS: usize = 8;
/// "FPFLOWMP".
const MAGIC: u64 = u64::from_be_bytes(*b"FPFLOWMP");
/// Bumped whenever the bucket layout or an owner's record encoding changes.
pub const LAYOUT_VERSION: u64 = 2;

const AT_MAGIC: usize = 0;
const AT_LAYOUT: usize = 1;
const AT_VALUE_WORDS: usize = 2;
const AT_SLOTS_PER_BUCKET: usize = 3;
const AT_BUCKETS: usize = 4;
const AT_SEEDS: usize = 5;

/// Why a block of words is not a table this build can adopt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// Shorter than the header.
    TooShort { words: usize },
    /// Not a flowmap at all.
    BadMagic { found: u64 },
    /// Written by a build with another layout.
    Version { found: u64 },
    /// A table of records of another width (another owner).
    ValueWords { expected: usize, found: u64 },
    /// Another bucket size.
    SlotsPerBucket { found: u64 },
    /// The header's bucket count does not match the length.
    Length { buckets: u64, words: usize },
    /// The table is too small for what its owner is configured to hold.
    TooSmall { slots: usize, needed: usize },
    /// Storage given for a new table is not the size the table needs.
    Storage { expected: usize, found: usize },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { words } => write!(f, "{words} words is shorter than the header"),
            Self::BadMagic { found } => write!(f, "bad magic {found:#018x}"),
            Self::Version { found } => {
                write!(
                    f,
                    "layout version {found}, this build reads {LAYOUT_VERSION}"
                )
            }
            Self::ValueWords { expected, found } => {
                write!(f, "records have {found} value words, expected {expected}")
            }
            Self::SlotsPerBucket { found } => {
                write!(f, "{found} slots per bucket, expected {SLOTS_PER_BUCKET}")
            }
            Self::Length { buckets, words } => {
                write!(f, "{buckets} buckets do not fit in {words} words")
            }
            Self::TooSmall { slots, needed } => {
                write!(f, "{slots} slots, {needed} needed")
            }
            Self::Storage { expected, found } => {
                write!(f, "{found} words of storage, the table takes {expected}")
            }
        }
    }
}

impl std::error::Error for LayoutError {}

impl<const V: usize> FlowMap<V> {
    const VALUE_WORDS_VALID: () = assert!(V >= 1, "word 0 of a value is its head word");

    /// An empty table on the heap with room for at least `records` records and fresh random
    /// seeds.
    ///
    /// # Panics
    /// If the table would hold more than `u32::MAX` slots (hundreds of GiB).
    pub fn with_capacity(records: usize) -> Self {
        let words = Words::zeroed(Self::storage_words(records));
        match Self::with_capacity_in(records, words) {
            Ok(map) => map,
            Err(error) => unreachable!("storage sized by storage_words: {error}"),
        }
    }

    /// The number of words a table for `records` records takes ([`FlowMap::with_capacity_in`]).
    pub fn storage_words(records: usize) -> usize {
        HEADER_WORDS + Self::buckets_for(records) * Self::BUCKET_WORDS
    }

    fn buckets_for(records: usize) -> usize {
        records.div_ceil(SLOTS_PER_BUCKET).max(1)
    }

    /// An empty table for at least `records` records in `words`, which must be exactly
    /// [`FlowMap::storage_words`] long (e.g. a freshly formatted shared file); every word is
    /// overwritten.
    ///
    /// # Panics
    /// If the table would hold more than `u32::MAX` slots (hundreds of GiB).
    pub fn with_capacity_in(records: usize, words: Words) -> Result<Self, LayoutError> {
        let () = Self::VALUE_WORDS_VALID;
        let buckets = Self::buckets_for(records);
        assert!(
            buckets.saturating_mul(SLOTS_PER_BUCKET) <= u32::MAX as usize,
            "a flowmap holds at most 2^32 slots"
        );
        let expected = Self::storage_words(records);
        if words.len() != expected {
            let found = words.len();
            return Err(LayoutError::Storage { expected, found });
        }
        let seeds = random_seeds();
        let header = [
            MAGIC,
            LAYOUT_VERSION,
            V as u64,
            SLOTS_PER_BUCKET as u64,
            buckets as u64,
            seeds[0],
            seeds[1],
        ];
        for (i, word) in words.iter().enumerate() {
            word.store(header.get(i).copied().unwrap_or(0), Ordering::Relaxed);
        }
        Ok(Self {
            words,
            buckets,
            seeds,
            repaired: 0,
        })
    }

    /// Checks that `words` hold a table of this record width that this build can adopt;
    /// returns its bucket count. Reads only the header.
    pub fn check_words(words: &[AtomicU64]) -> Result<usize, LayoutError> {
        let () = Self::VALUE_WORDS_VALID;
        if words.len() < HEADER_WORDS {
            return Err(LayoutError::TooShort { words: words.len() });
        }
        let at = |i: usize| words[i].load(Ordering::Acquire);
        if at(AT_MAGIC) != MAGIC {
            return Err(LayoutError::BadMagic {
                found: at(AT_MAGIC),
            });
        }
        if at(AT_LAYOUT) != LAYOUT_VERSION {
            return Err(LayoutError::Version {
                found: at(AT_LAYOUT),
            });
        }
        if at(AT_VALUE_WORDS) != V as u64 {
            let found = at(AT_VALUE_WORDS);
            return Err(LayoutError::ValueWords { expected: V, found });
        }
        if at(AT_SLOTS_PER_BUCKET) != SLOTS_PER_BUCKET as u64 {
            let found = at(AT_SLOTS_PER_BUCKET);
            return Err(LayoutError::SlotsPerBucket { found });
        }
        let buckets = at(AT_BUCKETS);
        let fits = usize::try_from(buckets).ok().filter(|&b| {
            b >= 1
                && b.checked_mul(SLOTS_PER_BUCKET)
                    .is_some_and(|slots| slots <= u32::MAX as usize)
                && b.checked_mul(Self::BUCKET_WORDS)
                    .and_then(|w| w.checked_add(HEADER_WORDS))
                    == Some(words.len())
        });
        fits.ok_or(LayoutError::Length {
            buckets,
            words: words.len(),
        })
    }

    /// Adopts a table from its words (for example a table a previous process left behind, in
    /// place in a shared file), after checking the header. Buckets a dead writer left locked
    /// are repaired (see the module doc). The caller must be the only user of the words.
    pub fn from_words(words: Words) -> Result<Self, LayoutError> {
        let buckets = Self::check_words(&words)?;
        let seeds = [
            words[AT_SEEDS].load(Ordering::Acquire),
            words[AT_SEEDS + 1].load(Ordering::Acquire),
        ];
        let mut map = Self {
            words,
            buckets,
            seeds,
            repaired: 0,
        };
        map.repaired = (0..buckets)
            .filter(|&bucket| map.repair_if_abandoned(bucket))
            .count();
        Ok(map)
    }

    /// Repairs and unlocks `bucket` if a writer never finished with it; true if it did.
    fn repair_if_abandoned(&self, bucket: usize) -> bool {
        let words = self.bucket_words(bucket);
        let version = words[0].load(Ordering::Acquire);
        if version & 1 == 0 {
            return false;
        }
        let mut tags = load_tags(words);
        for lane in 0..SLOTS_PER_BUCKET {
            let tag = lane_tag(tags, lane);
            let place = self.placement(&Self::load_key(words, lane));
            let whole = tag != 0 && tag == place.tag && place.buckets.contains(&bucket);
            if !whole {
                tags[lane / 8] &= !(0xff << ((lane % 8) * 8));
                let at = Self::lane_offset(lane);
                for word in &words[at..at + KEY_WORDS + V] {
                    word.store(0, Ordering::Relaxed);
                }
            }
        }
        words[1].store(tags[0], Ordering::Relaxed);
        words[2].store(tags[1], Ordering::Relaxed);
        words[0].store(version.wrapping_add(1), Ordering::Release);
        true
    }
}

/// Two fresh random seeds, so that remote senders cannot aim flows at one bucket.
fn random_seeds() -> [u64; 2] {
    use std::hash::{BuildHasher, Hasher};
    let state = std::collections::hash_map::RandomState::new();
    std::array::from_fn(|i| {
        let mut hasher = state.build_hasher();
        hasher.write_usize(i);
        hasher.finish()
    })
}
