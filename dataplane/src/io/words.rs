//! `Words`: the memory a flow table lives in, a slice of `AtomicU64` that is either on the heap
//! (it dies with the process) or a shared mapping of a file ([`super::shm::SharedFile`]), where it
//! outlives the process, a crash included, and the next process adopts it in place.
//!
//! A heap table of at least [`HUGE_PAGE`] bytes is an anonymous mapping on huge pages where the
//! host gives them (see [`super::hugepages`]); [`Words::pages`] says what backs any `Words`.
//!
//! This is the one type `tables` takes from `io`: an owner of memory, with no I/O and no
//! syscall after it is made, so a table on it stays free of `unsafe` and OS calls.
//!
//! Invariants:
//! - A `Words` derefs to the same words, of the same length, for its whole life; moving it
//!   moves no word (the heap slice and the mapping stay where they are).
//! - The words of [`Words::zeroed`] start on a cache line (64 bytes; mappings start on a page),
//!   so tables can lay out their buckets by cache line.
//! - A shared `Words` holds its file's exclusive lock for its whole life, so no other process
//!   maps that file as a writer meanwhile.

use std::fmt;
use std::ops::Deref;
use std::sync::atomic::AtomicU64;

use super::hugepages::{AnonWords, HUGE_PAGE, HugePages, Pages, pages_of};
use super::shm::MappedWords;

/// Words of a cache line.
const CACHE_LINE_WORDS: usize = 64 / size_of::<AtomicU64>();

/// Owned storage of `AtomicU64` words; see the module doc.
pub struct Words(Storage);

enum Storage {
    /// A heap slice and the range of it that holds the words handed out.
    Heap(Box<[AtomicU64]>, std::ops::Range<usize>),
    Anonymous(AnonWords),
    Shared(MappedWords),
}

impl Words {
    /// `len` zeroed words, private to the process: from [`HUGE_PAGE`] bytes up in an anonymous
    /// mapping on huge pages where the host gives them, else on the heap.
    pub fn zeroed(len: usize) -> Self {
        Self::zeroed_with(len, HugePages::Any)
    }

    /// [`Words::zeroed`] with a choice of huge pages (`Off`: base pages, the fallback).
    pub fn zeroed_with(len: usize, huge: HugePages) -> Self {
        if len.saturating_mul(8) >= HUGE_PAGE
            && let Ok(anon) = AnonWords::new(len, huge)
        {
            return Self(Storage::Anonymous(anon));
        }
        // A few words more than asked, so the words handed out can start on a cache line.
        let spare = CACHE_LINE_WORDS - 1;
        let words: Box<[AtomicU64]> = std::iter::repeat_with(|| AtomicU64::new(0))
            .take(len + spare)
            .collect();
        let misalign = (words.as_ptr() as usize / size_of::<AtomicU64>()) % CACHE_LINE_WORDS;
        let offset = (CACHE_LINE_WORDS - misalign) % CACHE_LINE_WORDS;
        Self(Storage::Heap(words, offset..offset + len))
    }

    pub(super) fn shared(mapped: MappedWords) -> Self {
        Self(Storage::Shared(mapped))
    }

    /// Whether the words live in a shared file mapping (and so outlive the process).
    pub fn is_shared(&self) -> bool {
        matches!(self.0, Storage::Shared(_))
    }

    /// What backs the words (reads `/proc/self/smaps`: for logs and stats, not per packet).
    /// Transparent huge pages come at first touch, so ask once the table was written.
    pub fn pages(&self) -> Pages {
        match &self.0 {
            Storage::Heap(words, _) if size_of_val(&**words) < HUGE_PAGE => {
                Pages::Base("smaller than a huge page")
            }
            Storage::Heap(words, _) => pages_of(words),
            Storage::Anonymous(anon) => anon.pages(),
            Storage::Shared(mapped) => pages_of(mapped.table()),
        }
    }
}

impl From<Box<[AtomicU64]>> for Words {
    fn from(words: Box<[AtomicU64]>) -> Self {
        let len = words.len();
        Self(Storage::Heap(words, 0..len))
    }
}

impl Deref for Words {
    type Target = [AtomicU64];

    fn deref(&self) -> &[AtomicU64] {
        match &self.0 {
            Storage::Heap(words, range) => &words[range.clone()],
            Storage::Anonymous(anon) => anon.words(),
            Storage::Shared(mapped) => mapped.table(),
        }
    }
}

impl fmt::Debug for Words {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.0 {
            Storage::Heap(..) => "heap",
            Storage::Anonymous(_) => "anonymous",
            Storage::Shared(_) => "shared",
        };
        write!(f, "Words({} words, {kind})", self.len())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

    #[test]
    fn heap_words_start_on_a_cache_line_and_have_the_length_asked() {
        for len in [1, 7, 8, 100, 4097] {
            let words = Words::zeroed_with(len, HugePages::Off);
            assert_eq!(words.len(), len);
            assert_eq!(words.as_ptr() as usize % 64, 0, "{len} words");
            assert!(words.iter().all(|w| w.load(Ordering::Relaxed) == 0));
        }
    }
}
