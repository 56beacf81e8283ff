//! Maglev lookup tables (Eisenbud et al., "Maglev", NSDI 2016, §3.4).
//!
//! Each candidate backend gets a permutation of the table slots from two hashes of its
//! identity (ip, port): `offset = h1 % M`, `skip = h2 % (M - 1) + 1`. The table is filled
//! round-robin, each backend taking the next free slot of its permutation, so every backend
//! owns `floor(M/N)` or `ceil(M/N)` slots and removing one backend moves few other slots.
//!
//! Invariants:
//! - The table size `M` is prime and at least the candidate count, so every `skip` is coprime
//!   with `M`, every permutation visits every slot, and the fill terminates.
//! - The table depends only on the candidates' (index, identity) pairs in the order given and
//!   on `M`; the builder passes them sorted by identity, so the table is the same on every node
//!   that sees the same backends.
//! - Table size per candidate set is `min(configured M, smallest ladder prime >= 100 * N)`:
//!   the configured M is an upper bound. This keeps 10k Maglev services with 10 backends each
//!   at about 40 MiB instead of 650 MiB; the price is that a set crossing a ladder step
//!   (for example 10 -> 11 backends) gets a fresh table instead of a minimal change.

use crate::flow::mix64;

/// Slots per candidate the size ladder aims for; the paper keeps `M` well above `100 * N`.
pub(super) const SLOTS_PER_BACKEND: usize = 100;

/// Table sizes used below the configured maximum: the largest prime under each power of two.
const SIZE_LADDER: [usize; 13] = [
    251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071, 262139, 524287, 1048573,
];

const OFFSET_SEED: u64 = 0x6d61_676c_6576_6f66;
const SKIP_SEED: u64 = 0x6d61_676c_6576_736b;

/// Marks a slot not yet filled while populating.
const EMPTY: u32 = u32::MAX;

/// Trial division; `m` is a configuration value checked once per build.
pub(super) fn is_prime(m: usize) -> bool {
    if m < 2 {
        return false;
    }
    let mut divisor = 2usize;
    while divisor.saturating_mul(divisor) <= m {
        if m.is_multiple_of(divisor) {
            return false;
        }
        divisor += 1;
    }
    true
}

/// The table size for `candidates` backends when the configured size is `max_m`.
pub(super) fn table_size(candidates: usize, max_m: usize) -> usize {
    let wanted = candidates.saturating_mul(SLOTS_PER_BACKEND);
    SIZE_LADDER
        .iter()
        .copied()
        .find(|&size| size >= wanted)
        .map_or(max_m, |size| size.min(max_m))
}

/// The identity a backend's permutation is derived from.
pub(super) fn identity(ip: std::net::Ipv4Addr, port: u16) -> u64 {
    (u64::from(u32::from(ip)) << 16) | u64::from(port)
}

/// Fills a table of `size` slots with the indices of `candidates` (backend index, identity).
/// Precondition (checked by the builder): `size` is prime and `>= candidates.len()`.
/// Returns an empty table when there are no candidates.
pub(super) fn populate(candidates: &[(u32, u64)], size: usize) -> Box<[u32]> {
    if candidates.is_empty() || size < candidates.len() {
        return Box::default();
    }
    let modulus = size as u64;
    let mut cursors: Vec<(usize, usize)> = candidates
        .iter()
        .map(|&(_, id)| {
            let offset = mix64(id, OFFSET_SEED) % modulus;
            let skip = mix64(id.rotate_left(32), SKIP_SEED) % (modulus - 1).max(1) + 1;
            (offset as usize, skip as usize)
        })
        .collect();
    let mut table = vec![EMPTY; size];
    let mut filled = 0;
    'fill: loop {
        for ((position, skip), &(index, _)) in cursors.iter_mut().zip(candidates) {
            while table[*position] != EMPTY {
                *position += *skip;
                if *position >= size {
                    *position -= size;
                }
            }
            table[*position] = index;
            filled += 1;
            if filled == size {
                break 'fill;
            }
        }
    }
    table.into_boxed_slice()
}
