//! Huge pages for a flow table on the heap side: a private anonymous mapping backed by
//! reserved huge pages (MAP_HUGETLB) when the host has a pool, else by transparent huge pages
//! (madvise MADV_HUGEPAGE on a 2 MiB-aligned range), else by base pages. At a million flows the
//! table is over 100 MiB: with 4 KiB pages nearly every lookup also misses the TLB; with 2 MiB
//! pages the table needs a few dozen TLB entries.
//!
//! Also says what backs any table's memory ([`Pages`], read from `/proc/self/smaps`), for the
//! node's log and the benchmarks; a shared table file on tmpfs gets huge pages only from a
//! mount with `huge=within_size` or `huge=always`.
//!
//! Invariants:
//! - [`AnonWords`] derefs to `len` zeroed words that start on a 2 MiB boundary and stay mapped,
//!   at the same address, until it drops.
//! - Asking for huge pages never fails a table: every refusal falls back to the next option,
//!   and the outcome is reported by [`AnonWords::pages`], not by an error.

use std::fmt;
use std::io;
use std::sync::atomic::AtomicU64;

use super::sys::Mapping;

/// The huge page size asked for (x86_64 and aarch64 with 4 KiB base pages).
pub const HUGE_PAGE: usize = 2 << 20;

/// Which kinds of huge pages an anonymous table may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HugePages {
    /// Reserved huge pages, else transparent ones, else base pages.
    Any,
    /// Base pages only (the fallback; also what tables below [`HUGE_PAGE`] get).
    Off,
}

/// What backs a table's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pages {
    /// Reserved huge pages (MAP_HUGETLB) throughout.
    Hugetlb,
    /// Transparent huge pages back `huge_bytes` of the table's `bytes`.
    Transparent { huge_bytes: usize, bytes: usize },
    /// Base pages only, and why.
    Base(&'static str),
}

impl Pages {
    /// Whether any huge page backs the table.
    pub fn is_huge(&self) -> bool {
        !matches!(self, Self::Base(_))
    }
}

impl fmt::Display for Pages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hugetlb => write!(f, "reserved 2 MiB huge pages"),
            Self::Transparent { huge_bytes, bytes } => write!(
                f,
                "transparent huge pages for {} of {} MiB",
                huge_bytes >> 20,
                bytes.div_ceil(1 << 20)
            ),
            Self::Base(why) => write!(f, "4 KiB pages ({why})"),
        }
    }
}

/// Zeroed words in a private anonymous mapping, on huge pages where the host gives them.
pub(super) struct AnonWords {
    mapping: Mapping,
    /// Where the words start in the mapping: the first 2 MiB boundary.
    offset: usize,
    len: usize,
    hugetlb: bool,
    advised: bool,
}

// SAFETY: the mapped words are only reached through the `&[AtomicU64]` slice of `words`, and
// atomics may be used from any number of threads at once; the `Mapping` itself is never changed
// through a shared reference.
unsafe impl Sync for AnonWords {}

impl AnonWords {
    /// `len` zeroed words, not yet faulted in (the first write to each page does that).
    pub(super) fn new(len: usize, huge: HugePages) -> io::Result<Self> {
        let bytes = len
            .checked_mul(8)
            .and_then(|b| b.checked_next_multiple_of(HUGE_PAGE))
            .filter(|&b| b > 0)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "table size"))?;
        if huge == HugePages::Any
            && let Ok(mapping) = Mapping::anonymous(bytes, true)
        {
            return Ok(Self {
                mapping,
                offset: 0,
                len,
                hugetlb: true,
                advised: false,
            });
        }
        // One huge page more, so that a 2 MiB-aligned range of `bytes` fits inside.
        let padded = bytes
            .checked_add(HUGE_PAGE)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "table size"))?;
        let mapping = Mapping::anonymous(padded, false)?;
        let base = mapping.base().as_ptr() as usize;
        let offset = base.next_multiple_of(HUGE_PAGE) - base;
        let advised = huge == HugePages::Any && mapping.advise_huge_pages(offset, bytes).is_ok();
        Ok(Self {
            mapping,
            offset,
            len,
            hugetlb: false,
            advised,
        })
    }

    pub(super) fn words(&self) -> &[AtomicU64] {
        // SAFETY: `offset + 8 * len` is at most `offset + bytes <= mapping.len()` (see `new`),
        // and `offset` is a multiple of 2 MiB from a page-aligned base, so the words are in
        // bounds and 8-aligned; anonymous memory starts zeroed and `AtomicU64` has the size,
        // alignment and bit validity of `u64`; the memory stays mapped while `self` lives
        // and is only accessed through atomics, never through `&mut`.
        unsafe {
            std::slice::from_raw_parts(
                self.mapping
                    .base()
                    .as_ptr()
                    .add(self.offset)
                    .cast::<AtomicU64>(),
                self.len,
            )
        }
    }

    /// What backs the words now (transparent huge pages come at first touch, so ask after
    /// the table was written).
    pub(super) fn pages(&self) -> Pages {
        if self.hugetlb {
            return Pages::Hugetlb;
        }
        if !self.advised {
            return Pages::Base("huge pages not requested or refused by madvise");
        }
        pages_of(self.words())
    }
}

/// What backs `words` (any mapping: heap, anonymous, a shared file), from `/proc/self/smaps`.
pub fn pages_of(words: &[AtomicU64]) -> Pages {
    let start = words.as_ptr() as usize;
    let bytes = size_of_val(words);
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return Pages::Base("/proc/self/smaps unreadable");
    };
    match huge_bytes_in(&smaps, start, start + bytes) {
        Some(Huge::Hugetlb) => Pages::Hugetlb,
        Some(Huge::Transparent(huge_bytes)) if huge_bytes > 0 => Pages::Transparent {
            huge_bytes: huge_bytes.min(bytes),
            bytes,
        },
        Some(Huge::Transparent(_)) => Pages::Base("the kernel gave no transparent huge pages"),
        None => Pages::Base("mapping not found in /proc/self/smaps"),
    }
}

/// What smaps says about the mappings that overlap `start..end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Huge {
    Hugetlb,
    /// Bytes mapped by PMD-sized transparent pages (anonymous, shmem or file).
    Transparent(usize),
}

/// Sums the huge-page fields of every smaps entry overlapping `start..end`; `None` if none does.
fn huge_bytes_in(smaps: &str, start: usize, end: usize) -> Option<Huge> {
    let mut found = None;
    let mut inside = false;
    for line in smaps.lines() {
        if let Some((lo, hi)) = range_of(line) {
            inside = lo < end && start < hi;
            if inside && found.is_none() {
                found = Some(Huge::Transparent(0));
            }
            continue;
        }
        if !inside {
            continue;
        }
        let Some((field, rest)) = line.split_once(':') else {
            continue;
        };
        let kib = || {
            rest.trim()
                .strip_suffix("kB")
                .and_then(|n| n.trim().parse::<usize>().ok())
                .unwrap_or(0)
        };
        match (field, found) {
            ("KernelPageSize", _) if kib() >= HUGE_PAGE >> 10 => found = Some(Huge::Hugetlb),
            ("AnonHugePages" | "ShmemPmdMapped" | "FilePmdMapped", Some(Huge::Transparent(n))) => {
                found = Some(Huge::Transparent(n + kib() * 1024));
            }
            _ => {}
        }
    }
    found
}

/// The address range of an smaps entry's first line (`start-end perms offset dev inode path`).
fn range_of(line: &str) -> Option<(usize, usize)> {
    let (range, _) = line.split_once(' ')?;
    let (lo, hi) = range.split_once('-')?;
    let parse = |s: &str| usize::from_str_radix(s, 16).ok();
    Some((parse(lo)?, parse(hi)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
7f0000000000-7f0000400000 rw-p 00000000 00:00 0
Size:               4096 kB
KernelPageSize:        4 kB
AnonHugePages:      2048 kB
ShmemPmdMapped:        0 kB
FilePmdMapped:         0 kB
7f0000400000-7f0000600000 rw-s 00000000 00:17 12 /dev/hugepages/x
KernelPageSize:     2048 kB
AnonHugePages:         0 kB
7f0000600000-7f0000800000 rw-p 00000000 00:00 0
KernelPageSize:        4 kB
AnonHugePages:         0 kB
";

    #[test]
    fn smaps_fields_are_read_for_the_overlapping_entries_only() {
        let base = 0x7f00_0000_0000;
        let thp = huge_bytes_in(SMAPS, base + 4096, base + 0x40_0000);
        assert_eq!(thp, Some(Huge::Transparent(2 << 20)));
        let hugetlb = huge_bytes_in(SMAPS, base + 0x40_0000, base + 0x50_0000);
        assert_eq!(hugetlb, Some(Huge::Hugetlb));
        let small = huge_bytes_in(SMAPS, base + 0x60_0000, base + 0x60_1000);
        assert_eq!(small, Some(Huge::Transparent(0)));
        assert_eq!(huge_bytes_in(SMAPS, 0x1000, 0x2000), None);
    }

    #[test]
    fn base_pages_fallback_gives_usable_zeroed_words_and_says_so() {
        let len = 3 * HUGE_PAGE / 8 + 5;
        let anon = AnonWords::new(len, HugePages::Off).expect("anonymous mapping");
        let words = anon.words();
        assert_eq!(words.len(), len);
        assert_eq!(words.as_ptr() as usize % HUGE_PAGE, 0);
        assert!(
            words
                .iter()
                .all(|w| w.load(std::sync::atomic::Ordering::Relaxed) == 0)
        );
        for (i, w) in words.iter().enumerate() {
            w.store(i as u64, std::sync::atomic::Ordering::Relaxed);
        }
        assert_eq!(
            words[len - 1].load(std::sync::atomic::Ordering::Relaxed),
            len as u64 - 1
        );
        assert!(matches!(anon.pages(), Pages::Base(_)), "{}", anon.pages());
    }

    /// Whatever this host offers, asking for huge pages yields a usable table, and the report
    /// agrees with what the kernel allows.
    #[test]
    fn huge_page_request_falls_back_to_what_the_host_allows() {
        let len = 4 * HUGE_PAGE / 8;
        let anon = AnonWords::new(len, HugePages::Any).expect("anonymous mapping");
        for w in anon.words() {
            w.store(1, std::sync::atomic::Ordering::Relaxed);
        }
        let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .unwrap_or_default();
        let pool = std::fs::read_to_string("/proc/sys/vm/nr_hugepages").unwrap_or_default();
        let pages = anon.pages();
        match pages {
            Pages::Hugetlb => assert_ne!(pool.trim(), "0", "hugetlb without a pool"),
            Pages::Transparent { huge_bytes, bytes } => {
                assert!(!thp.contains("[never]"), "THP used while disabled");
                assert!(huge_bytes > 0 && huge_bytes <= bytes);
            }
            Pages::Base(_) => {}
        }
        assert_eq!(pages.is_huge(), !matches!(pages, Pages::Base(_)));
    }
}
