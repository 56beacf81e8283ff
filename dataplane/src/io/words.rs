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
//! - A shared `Words` holds its file's exclusive lock for its whole life, so no other process
//!   maps that file as a writer meanwhile.

use std::fmt;
use std::ops::Deref;
use std::sync::atomic::AtomicU64;

use super::hugepages::{AnonWords, HUGE_PAGE, HugePages, Pages, pages_of};
use super::shm::MappedWords;

/// Owned storage of `AtomicU64` words; see the module doc.
pub struct Words(Storage);

enum Storage {
    Heap(Box<[AtomicU64]>),
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
        Self(Storage::Heap(
            std::iter::repeat_with(|| AtomicU64::new(0))
                .take(len)
                .collect(),
        ))
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
            Storage::Heap(words) if size_of_val(&**words) < HUGE_PAGE => {
                Pages::Base("smaller than a huge page")
            }
            Storage::Heap(words) => pages_of(words),
            Storage::Anonymous(anon) => anon.pages(),
            Storage::Shared(mapped) => pages_of(mapped.table()),
        }
    }
}

impl From<Box<[AtomicU64]>> for Words {
    fn from(words: Box<[AtomicU64]>) -> Self {
        Self(Storage::Heap(words))
    }
}

impl Deref for Words {
    type Target = [AtomicU64];

    fn deref(&self) -> &[AtomicU64] {
        match &self.0 {
            Storage::Heap(words) => words,
            Storage::Anonymous(anon) => anon.words(),
            Storage::Shared(mapped) => mapped.table(),
        }
    }
}

impl fmt::Debug for Words {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.0 {
            Storage::Heap(_) => "heap",
            Storage::Anonymous(_) => "anonymous",
            Storage::Shared(_) => "shared",
        };
        write!(f, "Words({} words, {kind})", self.len())
    }
}
