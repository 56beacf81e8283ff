//! The flowmap header: building a fresh table and adopting a live one from its words.
//!
//! Invariants:
//! - Word 0 is the magic, word 1 the layout version; a table whose header does not describe
//!   exactly its own length, value width and bucket size is refused, never guessed at.
//! - An adopted bucket left locked (its writer died mid-update) is zeroed and unlocked: its
//!   records may be torn, so they are dropped rather than trusted.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{FlowMap, SLOTS_PER_BUCKET};

/// Words of the table header.
pub(super) const HEADER_WORDS: usize = 8;
/// "FPFLOWMP".
const MAGIC: u64 = u64::from_be_bytes(*b"FPFLOWMP");
/// Bumped whenever the bucket layout or an owner's record encoding changes.
pub const LAYOUT_VERSION: u64 = 1;

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
        }
    }
}

impl std::error::Error for LayoutError {}

impl<const V: usize> FlowMap<V> {
    const VALUE_WORDS_VALID: () = assert!(V >= 1, "word 0 of a value is its head word");

    pub(super) fn with_buckets(buckets: usize, seeds: [u64; 2]) -> Self {
        let () = Self::VALUE_WORDS_VALID;
        assert!(
            buckets.saturating_mul(SLOTS_PER_BUCKET) <= u32::MAX as usize,
            "a flowmap holds at most 2^32 slots"
        );
        let len = HEADER_WORDS + buckets * Self::BUCKET_WORDS;
        let words: Box<[AtomicU64]> = std::iter::repeat_with(|| AtomicU64::new(0))
            .take(len)
            .collect();
        let header = [
            MAGIC,
            LAYOUT_VERSION,
            V as u64,
            SLOTS_PER_BUCKET as u64,
            buckets as u64,
            seeds[0],
            seeds[1],
        ];
        for (word, value) in words.iter().zip(header) {
            word.store(value, Ordering::Relaxed);
        }
        Self {
            words,
            buckets,
            seeds,
        }
    }

    /// Adopts a table from its words (for example a table a previous process left behind),
    /// after checking the header. Buckets left locked are cleared (see the module doc).
    pub fn from_words(words: Box<[AtomicU64]>) -> Result<Self, LayoutError> {
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
        let Some(buckets) = fits else {
            let words = words.len();
            return Err(LayoutError::Length { buckets, words });
        };
        let seeds = [at(AT_SEEDS), at(AT_SEEDS + 1)];
        let map = Self {
            words,
            buckets,
            seeds,
        };
        map.unlock_abandoned();
        Ok(map)
    }

    /// Zeroes and unlocks every bucket whose writer never finished.
    fn unlock_abandoned(&self) {
        for bucket in 0..self.buckets {
            let words = self.bucket_words(bucket);
            let version = words[0].load(Ordering::Acquire);
            if version & 1 == 1 {
                for word in &words[1..] {
                    word.store(0, Ordering::Relaxed);
                }
                words[0].store(version.wrapping_add(1), Ordering::Release);
            }
        }
    }
}

/// Two fresh random seeds, so that remote senders cannot aim flows at one bucket.
pub(super) fn random_seeds() -> [u64; 2] {
    use std::hash::{BuildHasher, Hasher};
    let state = std::collections::hash_map::RandomState::new();
    std::array::from_fn(|i| {
        let mut hasher = state.build_hasher();
        hasher.write_usize(i);
        hasher.finish()
    })
}
