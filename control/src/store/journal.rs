//! The state directory's commit journal, `DIR/journal`: a write-ahead batch file that makes a
//! commit durable with one `fdatasync` instead of one per object file.
//!
//! A commit appends one record holding every object it writes (the bytes) or removes, syncs
//! the journal once, then replaces the object files, appends to the change log and writes
//! `generation` without syncing them (they reach the disk with the page cache). Format:
//! ```text
//! ferroplane-journal v1 boot <boot id>
//! commit<TAB>42
//! put 311 42<TAB>services<TAB>default<TAB>web        (then 311 bytes and a newline)
//! del 42<TAB>endpointslices<TAB>default<TAB>web-1
//! end<TAB>42
//! ```
//! (`put`/`del` carry a change log entry, [`super::changelog`].)
//!
//! Invariants:
//! - Written only under the exclusive lock. A record is complete only with its `end` line; the
//!   generation file is written after the journal is synced, so a record without `end` is a
//!   commit that never happened and is dropped.
//! - Recovery ([`recover`], run each time the exclusive lock is taken): when the journal was
//!   written in an earlier boot (the machine went down: unsynced files may be lost or empty),
//!   every complete record is replayed in order, durably, the change log is restarted after
//!   the last generation (readers behind it load the directory once) and the journal starts
//!   afresh. In the same boot the page cache holds every write, so only a last record newer
//!   than `generation` (a writer died mid-commit) is replayed, finishing that commit.
//! - Bounded: past [`MAX_JOURNAL_BYTES`] a commit seals the journal (renamed
//!   `journal.sealed-<n>`) and starts a fresh one; a checkpoint thread then syncs the file
//!   system (`syncfs`, off the lock: a flush slowed by other processes' writes holds up no
//!   commit and no reader) and removes the journals sealed before it began. Recovery reads
//!   the sealed journals not yet checkpointed plus the active one: about `MAX_JOURNAL_BYTES`
//!   per checkpoint still running.
//! - A damaged journal (bad header, a malformed line in the middle) is a named
//!   [`JournalError`]: recovery replays the complete records before the damage, syncs and
//!   starts afresh; nothing after the damage is trusted.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::changelog::{self, ChangeLog};
use super::{StateDir, StoreError, durable};
use crate::model::ObjectRef;

/// The journal's file name in the state directory.
pub const JOURNAL_FILE: &str = "journal";

/// Above this size the next commit syncs the file system and starts the journal afresh.
pub const MAX_JOURNAL_BYTES: u64 = 8 << 20;

const HEADER_PREFIX: &str = "ferroplane-journal v1 boot ";

/// Why (part of) the journal cannot be replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalError {
    /// The first line is not `ferroplane-journal v1 boot <id>`.
    BadHeader { path: PathBuf },
    /// A line inside a record is not what the format says.
    Malformed {
        path: PathBuf,
        offset: usize,
        line: String,
    },
    /// The file ends inside a record (a commit torn by a crash: it never happened).
    TornRecord {
        path: PathBuf,
        offset: usize,
        generation: u64,
    },
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalError::BadHeader { path } => write!(
                f,
                "journal {}: header is not \"{HEADER_PREFIX}<id>\"",
                path.display()
            ),
            JournalError::Malformed { path, offset, line } => write!(
                f,
                "journal {}: line at byte {offset} {line:?} is not part of a record",
                path.display()
            ),
            JournalError::TornRecord {
                path,
                offset,
                generation,
            } => write!(
                f,
                "journal {}: the record of generation {generation} at byte {offset} is torn \
                 (no end line); that commit never happened",
                path.display()
            ),
        }
    }
}

impl std::error::Error for JournalError {}

/// One committed generation: `(key, Some(bytes))` written, `(key, None)` removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub generation: u64,
    pub objects: Vec<(ObjectRef, Option<Vec<u8>>)>,
}

/// A parsed journal: its boot id, the complete records, and the damage that ended the read.
#[derive(Debug)]
pub struct Parsed {
    pub boot: Option<String>,
    pub records: Vec<Record>,
    pub damage: Option<JournalError>,
}

/// What [`recover`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Generations replayed.
    pub replayed: Vec<u64>,
    /// Damage found in the journal (the records before it were replayed).
    pub damage: Option<JournalError>,
}

/// This boot's identity; records from another boot may not be on the disk yet.
fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn path_of(dir: &StateDir) -> PathBuf {
    dir.root().join(JOURNAL_FILE)
}

/// Encodes one commit's record.
pub fn encode(generation: u64, objects: &[(ObjectRef, Option<Vec<u8>>)]) -> Vec<u8> {
    let mut out = format!("commit\t{generation}\n").into_bytes();
    for (key, bytes) in objects {
        let entry = changelog::entry_line(generation, key);
        match bytes {
            Some(bytes) => {
                out.extend_from_slice(format!("put {} {entry}", bytes.len()).as_bytes());
                out.extend_from_slice(bytes);
                out.push(b'\n');
            }
            None => out.extend_from_slice(format!("del {entry}").as_bytes()),
        }
    }
    out.extend_from_slice(format!("end\t{generation}\n").as_bytes());
    out
}

/// Parses a journal's bytes (never fails: damage ends the read and is reported).
pub fn parse(path: &Path, bytes: &[u8]) -> Parsed {
    let mut parsed = Parsed {
        boot: None,
        records: Vec::new(),
        damage: None,
    };
    let mut at = 0;
    let Some(header) = next_line(bytes, &mut at) else {
        parsed.damage = Some(JournalError::BadHeader {
            path: path.to_path_buf(),
        });
        return parsed;
    };
    match header.strip_prefix(HEADER_PREFIX) {
        Some(boot) if !boot.is_empty() => parsed.boot = Some(boot.to_owned()),
        _ => {
            parsed.damage = Some(JournalError::BadHeader {
                path: path.to_path_buf(),
            });
            return parsed;
        }
    }
    while at < bytes.len() {
        match parse_record(path, bytes, &mut at) {
            Ok(record) => parsed.records.push(record),
            Err(damage) => {
                parsed.damage = Some(damage);
                break;
            }
        }
    }
    parsed
}

/// The next `\n`-terminated line as text, or `None` at a torn end.
fn next_line<'a>(bytes: &'a [u8], at: &mut usize) -> Option<&'a str> {
    let rest = bytes.get(*at..)?;
    let end = rest.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&rest[..end]).ok()?;
    *at += end + 1;
    Some(line)
}

fn parse_record(path: &Path, bytes: &[u8], at: &mut usize) -> Result<Record, JournalError> {
    let start = *at;
    let malformed = |offset: usize, line: &str| JournalError::Malformed {
        path: path.to_path_buf(),
        offset,
        line: line.chars().take(120).collect(),
    };
    let torn = |generation| JournalError::TornRecord {
        path: path.to_path_buf(),
        offset: start,
        generation,
    };
    let first = next_line(bytes, at).ok_or_else(|| torn(0))?;
    let generation: u64 = first
        .strip_prefix("commit\t")
        .and_then(|g| g.parse().ok())
        .ok_or_else(|| malformed(start, first))?;
    let mut objects = Vec::new();
    loop {
        let line_at = *at;
        let line = next_line(bytes, at).ok_or_else(|| torn(generation))?;
        if let Some(end) = line.strip_prefix("end\t") {
            return if end.parse() == Ok(generation) {
                Ok(Record {
                    generation,
                    objects,
                })
            } else {
                Err(malformed(line_at, line))
            };
        }
        let entry_of = |text: &str| {
            changelog::parse_entry(text)
                .filter(|(g, _)| *g == generation)
                .map(|(_, key)| key)
        };
        if let Some(entry) = line.strip_prefix("del ") {
            let key = entry_of(entry).ok_or_else(|| malformed(line_at, line))?;
            objects.push((key, None));
        } else if let Some(rest) = line.strip_prefix("put ") {
            let (len, entry) = rest
                .split_once(' ')
                .ok_or_else(|| malformed(line_at, line))?;
            let len: usize = len.parse().map_err(|_| malformed(line_at, line))?;
            let key = entry_of(entry).ok_or_else(|| malformed(line_at, line))?;
            let body_end = at.saturating_add(len);
            if body_end >= bytes.len() {
                return Err(torn(generation));
            }
            if bytes[body_end] != b'\n' {
                return Err(malformed(line_at, line));
            }
            objects.push((key, Some(bytes[*at..body_end].to_vec())));
            *at = body_end + 1;
        } else {
            return Err(malformed(line_at, line));
        }
    }
}

/// Starts the journal afresh (empty, this boot), durably.
fn reset(dir: &StateDir) -> io::Result<()> {
    durable::write_atomic(
        &path_of(dir),
        format!("{HEADER_PREFIX}{}\n", boot_id()).as_bytes(),
    )
}

/// Appends one commit's record and syncs it: from here on the commit survives a crash.
/// Past [`MAX_JOURNAL_BYTES`] the file system is synced first and the journal restarted.
pub fn append(dir: &StateDir, record: &[u8]) -> Result<(), StoreError> {
    let path = path_of(dir);
    let err = |e: io::Error| StoreError::io(&path, &e);
    let size = match fs::metadata(&path) {
        Ok(meta) => Some(meta.len()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(err(e)),
    };
    match size {
        None => reset(dir).map_err(err)?,
        Some(size) if size > MAX_JOURNAL_BYTES => {
            // Sealed, it waits for a checkpoint off the lock; a fresh one takes this commit.
            let sealed = dir
                .root()
                .join(format!("{SEALED_PREFIX}{:020}", now_nanos()));
            fs::rename(&path, &sealed).map_err(err)?;
            reset(dir).map_err(err)?;
            start_checkpoint(dir.root());
        }
        Some(_) => {}
    }
    let mut file = OpenOptions::new().append(true).open(&path).map_err(err)?;
    file.write_all(record).map_err(err)?;
    file.sync_data().map_err(err)
}

/// A sealed journal's name: this prefix and a zero-padded number that sorts by sealing time.
const SEALED_PREFIX: &str = "journal.sealed-";

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// The sealed journals, oldest first.
fn sealed_segments(root: &Path) -> io::Result<Vec<PathBuf>> {
    let mut sealed: Vec<PathBuf> = fs::read_dir(root)?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(SEALED_PREFIX))
        .map(|e| e.path())
        .collect();
    sealed.sort();
    Ok(sealed)
}

/// Syncs the file system, then removes the journals sealed before the sync began: every
/// write they record is on the disk. Runs on its own thread, without the lock, so a slow
/// flush (other processes' dirty data included) never holds up a commit or a reader. A
/// process that exits first leaves its sealed journals to the next checkpoint or recovery.
fn start_checkpoint(root: &Path) {
    let root = root.to_path_buf();
    let checkpoint = move || -> io::Result<()> {
        let sealed = sealed_segments(&root)?;
        sync_file_system(&root)?;
        sealed
            .iter()
            .try_for_each(|path| match fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            })
    };
    let spawned = std::thread::Builder::new()
        .name("state-checkpoint".to_owned())
        .spawn(move || {
            if let Err(error) = checkpoint() {
                crate::node::log::warn(format_args!("state journal checkpoint: {error}"));
            }
        });
    if let Err(error) = spawned {
        crate::node::log::warn(format_args!(
            "state journal checkpoint not started: {error}"
        ));
    }
}

/// Makes every write to the file system holding `root` durable (one `syncfs`).
fn sync_file_system(root: &Path) -> io::Result<()> {
    let dir = File::open(root)?;
    rustix::fs::syncfs(&dir).map_err(io::Error::from)
}

/// Replays what the journal holds that may not be in the object files (see the module doc).
/// Call under the exclusive lock, before reading the generation for a new commit.
pub fn recover(dir: &StateDir) -> Result<Recovered, StoreError> {
    let path = path_of(dir);
    let err = |e: io::Error| StoreError::io(&path, &e);
    let mut file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // Only a crash between sealing and starting afresh leaves sealed journals alone.
            let sealed = sealed_segments(dir.root()).map_err(err)?;
            if sealed.is_empty() {
                return Ok(Recovered::default());
            }
            return recover_everything(dir, &sealed);
        }
        Err(e) => return Err(err(e)),
    };
    let size = file.metadata().map_err(err)?.len();
    let header = format!("{HEADER_PREFIX}{}\n", boot_id());
    let mut head = vec![0; header.len()];
    let head_len = read_at(&mut file, 0, &mut head).map_err(err)?;
    let same_boot = head[..head_len] == *header.as_bytes();
    if !same_boot {
        let mut segments = sealed_segments(dir.root()).map_err(err)?;
        segments.push(path.clone());
        return recover_everything(dir, &segments);
    }
    {
        // Cheap when nothing is pending: only the tail is read.
        let mut tail = vec![0; size.min(64) as usize];
        let tail_len = read_at(&mut file, size - tail.len() as u64, &mut tail).map_err(err)?;
        let current = dir.read_generation()?;
        if tail_generation(&tail[..tail_len]).is_some_and(|g| g <= current)
            || size == header.len() as u64
        {
            return Ok(Recovered::default());
        }
    }
    let bytes = fs::read(&path).map_err(err)?;
    recover_same_boot(dir, &path, &bytes)
}

/// Another boot wrote `segments` (sealed journals oldest first, then the active one): every
/// complete record is replayed in order, durably, up to the first damage; the change log
/// restarts after the last generation and the journal starts afresh.
fn recover_everything(dir: &StateDir, segments: &[PathBuf]) -> Result<Recovered, StoreError> {
    let path = path_of(dir);
    let mut recovered = Recovered::default();
    let mut last = None;
    for segment in segments {
        let bytes = match fs::read(segment) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(StoreError::io(segment, &e)),
        };
        let parsed = parse(segment, &bytes);
        for record in &parsed.records {
            replay(dir, record, true)?;
            recovered.replayed.push(record.generation);
            last = Some(record.generation);
        }
        if parsed.damage.is_some() {
            recovered.damage = parsed.damage;
            break;
        }
    }
    if let Some(last) = last {
        let current = dir.read_generation()?;
        let generation = current.max(last);
        ChangeLog::new(dir.root())
            .restart(generation)
            .map_err(|e| StoreError::io(&path, &e))?;
        let gen_path = dir.generation_path();
        durable::write_atomic(&gen_path, format!("{generation}\n").as_bytes())
            .map_err(|e| StoreError::io(&gen_path, &e))?;
    }
    sync_file_system(dir.root()).map_err(|e| StoreError::io(&path, &e))?;
    reset(dir).map_err(|e| StoreError::io(&path, &e))?;
    for segment in segments.iter().filter(|s| **s != path) {
        durable::remove_all(std::slice::from_ref(segment))
            .map_err(|e| StoreError::io(segment, &e))?;
    }
    Ok(recovered)
}

/// Same boot: the page cache has every write; only a last record newer than `generation`
/// (the writer died after syncing it) needs finishing, and a torn tail cutting off.
fn recover_same_boot(dir: &StateDir, path: &Path, bytes: &[u8]) -> Result<Recovered, StoreError> {
    let current = dir.read_generation()?;
    let parsed = parse(path, bytes);
    let mut recovered = Recovered {
        damage: parsed.damage.clone(),
        ..Recovered::default()
    };
    if let Some(record) = parsed.records.last().filter(|r| r.generation > current) {
        replay(dir, record, false)?;
        dir.change_log()
            .append_unsynced(current, record.generation, &keys_of(record))
            .map_err(|e| StoreError::io(path, &e))?;
        let gen_path = dir.generation_path();
        durable::replace_all(&[(gen_path.clone(), format!("{}\n", record.generation).into())])
            .map_err(|e| StoreError::io(&gen_path, &e))?;
        recovered.replayed.push(record.generation);
    }
    if parsed.damage.is_some() {
        // A torn or damaged tail: keep what is whole, durably, and start afresh so the next
        // append does not follow the damage.
        sync_file_system(dir.root()).map_err(|e| StoreError::io(path, &e))?;
        reset(dir).map_err(|e| StoreError::io(path, &e))?;
    }
    Ok(recovered)
}

/// Reads up to `buf.len()` bytes at `offset`.
fn read_at(file: &mut File, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
    file.seek(SeekFrom::Start(offset))?;
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// The generation of the journal's last `end` line, when the file ends with one.
fn tail_generation(bytes: &[u8]) -> Option<u64> {
    let body = bytes.strip_suffix(b"\n")?;
    let start = body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    std::str::from_utf8(&body[start..])
        .ok()?
        .strip_prefix("end\t")?
        .parse()
        .ok()
}

fn keys_of(record: &Record) -> Vec<ObjectRef> {
    record.objects.iter().map(|(key, _)| key.clone()).collect()
}

/// Writes a record's objects (durably when the machine went down since it was journaled).
fn replay(dir: &StateDir, record: &Record, durably: bool) -> Result<(), StoreError> {
    let mut writes = Vec::new();
    let mut removals = Vec::new();
    for (key, bytes) in &record.objects {
        let path = dir.object_path(key);
        match bytes {
            Some(bytes) => writes.push((path, bytes.clone())),
            None => removals.push(path),
        }
    }
    let root = dir.root();
    if durably {
        durable::write_all_atomic(&writes).map_err(|e| StoreError::io(root, &e))?;
        durable::remove_all_durable(&removals).map_err(|e| StoreError::io(root, &e))
    } else {
        durable::replace_all(&writes).map_err(|e| StoreError::io(root, &e))?;
        durable::remove_all(&removals).map_err(|e| StoreError::io(root, &e))
    }
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
