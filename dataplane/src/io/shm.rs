//! A table's words in a file, mapped shared: the memory outlives the process that writes it (a
//! SIGKILL included), and the next process maps the same file and adopts the table in place.
//! Meant for tmpfs (`/run`, `/dev/shm`), where the pages are memory and nothing goes to a disk.
//!
//! File layout, in 8-byte words of native byte order (the file never leaves its host):
//! - word 0: the magic `FPSHARE1`; words 1-2: the kind (e.g. `conntrack`), NUL-padded to 16
//!   bytes; words 3-4: the boot id of the kernel that wrote it; word 5: the table's length in
//!   words; words 6-7: zero. 64 bytes, so the table starts on a cache line;
//! - then the table's words.
//!
//! Invariants:
//! - The file is this process's own ([`owned`]): a symbolic link at the path is never
//!   followed, and a file of another user, one others may open, or one with other names is
//!   reported and replaced by a new file (mode 0600), never used.
//! - One writer per file: [`SharedFile::lock`] takes an exclusive flock, waiting at most
//!   [`LOCK_WAIT`], and fails naming the path when another process holds it; the [`Words`]
//!   made from the file keep the lock for as long as they live.
//! - A file is adopted only when its header names the same kind and boot, its length matches,
//!   and the caller's check accepts the table; anything else is formatted afresh (truncated to
//!   zero, grown to the new length with its pages allocated (a full tmpfs is an error here,
//!   not a SIGBUS later), header written with the magic last, so a crash while
//!   formatting leaves a file that is formatted again), never half-used. The file belongs to
//!   ferroplane: whatever else sits at the path is overwritten.
//! - Table times are CLOCK_MONOTONIC seconds, which mean nothing after a reboot: the boot id
//!   keeps a file kept on a disk from being adopted by the next boot.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::sys::{Mapping, context};
use super::words::Words;

const MAGIC: u64 = u64::from_be_bytes(*b"FPSHARE1");
const HEADER_WORDS: usize = 8;
const HEADER_BYTES: usize = HEADER_WORDS * 8;
const AT_KIND: usize = 1;
const AT_BOOT: usize = 3;
const AT_LEN: usize = 5;
const KIND_BYTES: usize = 16;
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";
/// How long [`SharedFile::lock`] waits for a lock held by another process.
pub const LOCK_WAIT: Duration = Duration::from_secs(1);
const LOCK_RETRY_PAUSE: Duration = Duration::from_millis(10);

mod owned;

/// A table file, opened and exclusively locked, not mapped yet.
#[derive(Debug)]
pub struct SharedFile {
    file: File,
    path: PathBuf,
    /// Why the entry found at the path was replaced by a new file, if it was.
    replaced: Option<String>,
}

/// What [`SharedFile::map`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The table in the file (a previous process's) was kept.
    Adopted,
    /// The file was new or empty: a fresh table.
    Created,
    /// The file held something else, now replaced by a fresh table; why it was not kept.
    Replaced(String),
}

impl SharedFile {
    /// Opens or creates `path` (mode 0600; see [`owned`] for what is refused and replaced)
    /// and locks it for this process. Fails with
    /// `WouldBlock`, naming the path, when another process holds the lock for longer than
    /// [`LOCK_WAIT`]: a shorter hold is a predecessor still exiting, or a child process between
    /// fork and exec with a copy of the holder's descriptor.
    pub fn lock(path: &Path) -> io::Result<Self> {
        let owned::Owned { file, replaced } = owned::open(path)?;
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            // SAFETY: flock(2) takes a descriptor and flags, no pointer; `file` keeps the
            // descriptor open for the whole call.
            let ret = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if ret == 0 {
                return Ok(Self {
                    file,
                    path: path.to_owned(),
                    replaced,
                });
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::WouldBlock {
                return Err(context(err, format_args!("flock {}", path.display())));
            }
            if Instant::now() >= deadline {
                let message = format!(
                    "{} is locked by another process (another ferroplane for this node?)",
                    path.display()
                );
                return Err(io::Error::new(io::ErrorKind::WouldBlock, message));
            }
            std::thread::sleep(LOCK_RETRY_PAUSE);
        }
    }

    /// Maps the table of `kind` the file holds if `fits` accepts its words, else formats the
    /// file with `fresh_len` zeroed words. The words keep the file's lock.
    pub fn map<E: fmt::Display>(
        self,
        kind: &str,
        fresh_len: usize,
        fits: impl FnOnce(&[AtomicU64]) -> Result<(), E>,
    ) -> io::Result<(Words, Origin)> {
        let kind = kind_words(kind)?;
        let boot = boot_id();
        let bytes = self.file.metadata()?.len();
        let origin = if let Some(why) = &self.replaced {
            Origin::Replaced(why.clone())
        } else if bytes == 0 {
            Origin::Created
        } else {
            let why = match self.existing(bytes, kind, boot)? {
                Ok(mapped) => match fits(mapped.table()) {
                    Ok(()) => return Ok((Words::shared(mapped), Origin::Adopted)),
                    Err(unfit) => unfit.to_string(),
                },
                Err(why) => why,
            };
            Origin::Replaced(why)
        };
        let mapped = self.format(kind, boot, fresh_len)?;
        Ok((Words::shared(mapped), origin))
    }

    /// The mapped file of `bytes` bytes if its header describes a table of `kind` from this
    /// boot; otherwise why not (the outer error is a failed syscall).
    fn existing(
        &self,
        bytes: u64,
        kind: [u64; 2],
        boot: [u64; 2],
    ) -> io::Result<Result<MappedWords, String>> {
        let usable = usize::try_from(bytes)
            .ok()
            .filter(|&b| b % 8 == 0 && b > HEADER_BYTES);
        let Some(bytes) = usable else {
            return Ok(Err(format!("{bytes} bytes is not a table file")));
        };
        // The header is read before anything is mapped: a foreign file is never faulted in.
        let mut header = [0u8; HEADER_BYTES];
        self.file.read_exact_at(&mut header, 0)?;
        let word = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&header[i * 8..i * 8 + 8]);
            u64::from_ne_bytes(b)
        };
        let why = if word(0) != MAGIC {
            "not a ferroplane table file"
        } else if [word(AT_KIND), word(AT_KIND + 1)] != kind {
            "it holds another kind of table"
        } else if [word(AT_BOOT), word(AT_BOOT + 1)] != boot {
            "it was written before the last reboot"
        } else if word(AT_LEN) != (bytes / 8 - HEADER_WORDS) as u64 {
            "its length does not match its header"
        } else {
            return self.mapped(bytes).map(Ok);
        };
        Ok(Err(why.to_owned()))
    }

    fn format(&self, kind: [u64; 2], boot: [u64; 2], len: usize) -> io::Result<MappedWords> {
        let bytes = len
            .checked_mul(8)
            .and_then(|b| b.checked_add(HEADER_BYTES))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "table too large"))?;
        let grow = |size: u64| {
            self.file
                .set_len(size)
                .map_err(|e| context(e, format_args!("sizing {}", self.path.display())))
        };
        grow(0)?;
        grow(bytes as u64)?;
        self.reserve(bytes)?;
        let mapped = self.mapped(bytes)?;
        let header = mapped.header();
        for (at, value) in [
            (AT_KIND, kind[0]),
            (AT_KIND + 1, kind[1]),
            (AT_BOOT, boot[0]),
            (AT_BOOT + 1, boot[1]),
            (AT_LEN, len as u64),
        ] {
            header[at].store(value, Ordering::Relaxed);
        }
        header[0].store(MAGIC, Ordering::Release);
        Ok(mapped)
    }

    /// Allocates the file's pages now: a sparse file on a full tmpfs would fault (SIGBUS) on
    /// first touch of the mapping instead of failing here with an error naming the file.
    fn reserve(&self, bytes: usize) -> io::Result<()> {
        let len = libc::off_t::try_from(bytes)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "table too large"))?;
        // SAFETY: posix_fallocate reads and writes no memory of ours; the descriptor is this
        // open file, which outlives the call.
        let ret = unsafe { libc::posix_fallocate(self.file.as_raw_fd(), 0, len) };
        if ret == 0 {
            return Ok(());
        }
        Err(context(
            io::Error::from_raw_os_error(ret),
            format_args!("reserving {bytes} bytes for {}", self.path.display()),
        ))
    }

    fn mapped(&self, bytes: usize) -> io::Result<MappedWords> {
        let what = format!("table file {}", self.path.display());
        let mapping = Mapping::shared(self.file.as_fd(), bytes, &what)?;
        // A second descriptor of the same open file: the lock lasts while either is open.
        let lock = self.file.try_clone()?;
        Ok(MappedWords {
            table_words: bytes / 8 - HEADER_WORDS,
            mapping,
            _lock: lock,
        })
    }
}

/// A mapped table file: its header and table words, and the descriptor holding its lock.
pub(super) struct MappedWords {
    mapping: Mapping,
    /// At least 1: `SharedFile` maps only files longer than the header.
    table_words: usize,
    _lock: File,
}

// SAFETY: the mapped memory is only ever reached through the `&[AtomicU64]` slices below, and
// atomics may be used from any number of threads at once; `Mapping` itself is not changed
// through a shared reference.
unsafe impl Sync for MappedWords {}

impl MappedWords {
    fn header(&self) -> &[AtomicU64] {
        // SAFETY: the mapping is page-aligned and at least `HEADER_BYTES + 8` long (see
        // `table_words`), so the first `HEADER_WORDS` words are in bounds and 8-aligned;
        // `AtomicU64` has the size, alignment and bit validity of `u64`, so any bytes are a
        // valid value; the memory stays mapped while `self` lives (unmapped only when the
        // `Mapping` drops), and it is only accessed through atomics, never through `&mut`.
        // Another process may write the file (the flock only keeps out ferroplane): it can
        // change values, which stay valid `u64`s; shrinking the file would fault (SIGBUS), a
        // crash rather than a wrong value.
        unsafe {
            std::slice::from_raw_parts(
                self.mapping.base().as_ptr().cast::<AtomicU64>(),
                HEADER_WORDS,
            )
        }
    }

    pub(super) fn table(&self) -> &[AtomicU64] {
        // SAFETY: as in `header`: the table's `table_words` words start `HEADER_BYTES` (a
        // multiple of 8) into the page-aligned mapping and end at its end, since the mapping
        // is `HEADER_BYTES + 8 * table_words` bytes long.
        unsafe {
            std::slice::from_raw_parts(
                self.mapping
                    .base()
                    .as_ptr()
                    .add(HEADER_BYTES)
                    .cast::<AtomicU64>(),
                self.table_words,
            )
        }
    }
}

/// A kind name as two header words.
fn kind_words(kind: &str) -> io::Result<[u64; 2]> {
    let bytes = kind.as_bytes();
    if bytes.is_empty() || bytes.len() > KIND_BYTES || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("table kind {kind:?} must be 1 to {KIND_BYTES} bytes without NUL"),
        ));
    }
    let mut padded = [0u8; KIND_BYTES];
    padded[..bytes.len()].copy_from_slice(bytes);
    let (first, second) = padded.split_at(8);
    let word = |half: &[u8]| {
        let mut b = [0u8; 8];
        b.copy_from_slice(half);
        u64::from_ne_bytes(b)
    };
    Ok([word(first), word(second)])
}

/// The running kernel's boot id (a UUID) as two words; zeros where it cannot be read.
fn boot_id() -> [u64; 2] {
    let text = std::fs::read_to_string(BOOT_ID).unwrap_or_default();
    let digits: Vec<u64> = text
        .chars()
        .filter_map(|c| c.to_digit(16).map(u64::from))
        .collect();
    if digits.len() != 32 {
        return [0, 0];
    }
    let fold = |half: &[u64]| half.iter().fold(0u64, |acc, &d| acc << 4 | d);
    [fold(&digits[..16]), fold(&digits[16..])]
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_owned;
