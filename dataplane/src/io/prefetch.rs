//! Software prefetch: asks the CPU to start loading a cache line that a later instruction
//! will read, so that the load overlaps other work instead of stalling it. The batch driver
//! uses it to fetch the conntrack buckets of the packets a few places ahead (see
//! `tables::flowmap`'s prefetch hints).
//!
//! Invariants:
//! - A prefetch is only a hint: it never faults, never changes memory or program results,
//!   and may be dropped by the CPU. Taking a reference as the address keeps callers inside
//!   memory they may read anyway.
//! - On targets without a prefetch instruction wired up here it compiles to nothing.

use std::sync::atomic::AtomicU64;

/// Starts loading the cache line holding `word` into all cache levels (x86 `prefetcht0`).
#[inline(always)]
pub fn prefetch(word: &AtomicU64) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: `prefetcht0` (SSE, part of the x86_64 baseline) reads no memory
        // architecturally and cannot fault, whatever the address; the pointer comes from a
        // live reference anyway.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(word).cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = word;
}

/// Starts loading the cache lines of `words`, a record of at most 8 words (64 bytes): the
/// lines of its first and its last word (the same line when it does not cross one; a second
/// prefetch of a line is cheaper than a branch on the address).
#[inline(always)]
pub fn prefetch_record(words: &[AtomicU64]) {
    if let (Some(first), Some(last)) = (words.first(), words.last()) {
        prefetch(first);
        prefetch(last);
    }
}
