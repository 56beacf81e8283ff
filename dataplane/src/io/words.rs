//! `Words`: the memory a flow table lives in, a slice of `AtomicU64` that is either on the heap
//! (it dies with the process) or a shared mapping of a file ([`super::shm::SharedFile`]), where it
//! outlives the process, a crash included, and the next process adopts it in place.
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

use super::shm::MappedWords;

/// Owned storage of `AtomicU64` words; see the module doc.
pub struct Words(Storage);

enum Storage {
    Heap(Box<[AtomicU64]>),
    Shared(MappedWords),
}

impl Words {
    /// `len` zeroed words on the heap.
    pub fn zeroed(len: usize) -> Self {
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
            Storage::Shared(mapped) => mapped.table(),
        }
    }
}

impl fmt::Debug for Words {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.is_shared() { "shared" } else { "heap" };
        write!(f, "Words({} words, {kind})", self.len())
    }
}
