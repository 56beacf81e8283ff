//! The state directory's change log, `DIR/changes`: which objects each committed generation
//! touched, so a node's sync reads only the object files that changed instead of the whole
//! directory.
//!
//! Format (text, one entry per line, the four fields separated by one TAB each, shown here
//! as `<TAB>`; a cluster-scoped object has an empty namespace):
//! ```text
//! ferroplane-changes v1 from 41
//! 42<TAB>services<TAB>default<TAB>web
//! 42<TAB>endpointslices<TAB>default<TAB>web-1
//! 43<TAB>nodes<TAB><TAB>n1
//! ```
//! The header's `from G` says the log lists every object touched by every generation above `G`.
//!
//! Invariants:
//! - Written only under the state directory's exclusive lock, after the objects and before the
//!   `generation` file ([`ChangeLog::append`]); readers read it under the shared lock, so a
//!   reader never sees a generation whose entries are not complete.
//! - Bounded: past [`MAX_LOG_BYTES`] the log is rewritten (atomically) keeping only the newest
//!   whole generations up to [`KEEP_LOG_BYTES`]; a reader further behind than the log's `from`
//!   gets [`LogRead::Behind`] and loads the whole directory once. A node catching up after
//!   downtime therefore reads at most `KEEP_LOG_BYTES..MAX_LOG_BYTES` of log plus the files it
//!   names, or the directory once.
//! - A log the writer cannot extend safely (missing, torn last line, header damaged, last
//!   generation not the previous one) is started afresh from the previous generation, never
//!   appended to, so it never claims to cover a generation it does not.
//! - A reader that finds the log damaged gets a named [`ChangeLogError`]; the sync then falls
//!   back to a full load (the tables stay as they were until that load succeeds).

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::durable;
use crate::model::{Kind, ObjectRef};

/// The log's file name in the state directory.
pub const CHANGE_LOG_FILE: &str = "changes";

/// Above this size the next commit compacts the log.
pub const MAX_LOG_BYTES: u64 = 4 << 20;

/// How much of the newest history a compaction keeps (whole generations).
pub const KEEP_LOG_BYTES: usize = 1 << 20;

const HEADER_PREFIX: &str = "ferroplane-changes v1 from ";

/// Why the change log cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeLogError {
    /// Reading it failed.
    Io { path: PathBuf, message: String },
    /// The first line is not `ferroplane-changes v1 from <generation>`.
    BadHeader { path: PathBuf, line: String },
    /// The file ends in the middle of a line (a torn append).
    TornLine { path: PathBuf, offset: u64 },
    /// A line is not `generation<TAB>plural<TAB>namespace<TAB>name`.
    Malformed {
        path: PathBuf,
        offset: u64,
        line: String,
    },
    /// Generations go backwards.
    OutOfOrder {
        path: PathBuf,
        offset: u64,
        generation: u64,
        after: u64,
    },
    /// The log ends before the state's generation: entries are missing (truncated log).
    Truncated {
        path: PathBuf,
        ends_at: u64,
        generation: u64,
    },
}

impl fmt::Display for ChangeLogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChangeLogError::Io { path, message } => {
                write!(f, "change log {}: {message}", path.display())
            }
            ChangeLogError::BadHeader { path, line } => write!(
                f,
                "change log {}: header {line:?} is not \"{HEADER_PREFIX}<generation>\"",
                path.display()
            ),
            ChangeLogError::TornLine { path, offset } => write!(
                f,
                "change log {}: torn line at byte {offset} (no newline)",
                path.display()
            ),
            ChangeLogError::Malformed { path, offset, line } => write!(
                f,
                "change log {}: line at byte {offset} {line:?} is not \
                 generation<TAB>kind<TAB>namespace<TAB>name",
                path.display()
            ),
            ChangeLogError::OutOfOrder {
                path,
                offset,
                generation,
                after,
            } => write!(
                f,
                "change log {}: generation {generation} at byte {offset} follows {after}",
                path.display()
            ),
            ChangeLogError::Truncated {
                path,
                ends_at,
                generation,
            } => write!(
                f,
                "change log {}: truncated, ends at generation {ends_at} but the state is at {generation}",
                path.display()
            ),
        }
    }
}

impl std::error::Error for ChangeLogError {}

/// Where a reader stopped, so the next read starts there instead of at the top.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogCursor {
    /// The header's `from` (a compaction or restart changes it, invalidating the cursor).
    from: u64,
    /// Byte offset just after the last entry read.
    offset: u64,
    /// The generation read up to.
    generation: u64,
}

/// What a read found.
#[derive(Debug, PartialEq, Eq)]
pub enum LogRead {
    /// The objects touched after the reader's generation up to the current one (each key
    /// once, in log order), and where to continue next time.
    Changes(Vec<ObjectRef>, LogCursor),
    /// The log starts after the reader's generation (or does not exist): load everything.
    Behind { from: Option<u64> },
}

/// The change log of one state directory.
#[derive(Clone, Debug)]
pub struct ChangeLog {
    path: PathBuf,
}

fn kind_of_plural(plural: &str) -> Option<Kind> {
    Kind::ALL.into_iter().find(|k| k.plural() == plural)
}

fn parse_header(line: &str) -> Option<u64> {
    line.strip_prefix(HEADER_PREFIX)?.trim_end().parse().ok()
}

/// One entry: `(generation, key)`.
pub(super) fn parse_entry(line: &str) -> Option<(u64, ObjectRef)> {
    let mut fields = line.split('\t');
    let generation = fields.next()?.parse().ok()?;
    let kind = kind_of_plural(fields.next()?)?;
    let namespace = fields.next()?;
    let name = fields.next()?;
    let unsafe_in_path = |s: &str| s.contains('/') || s == "." || s == "..";
    if fields.next().is_some()
        || name.is_empty()
        || kind.is_namespaced() == namespace.is_empty()
        || unsafe_in_path(name)
        || unsafe_in_path(namespace)
    {
        return None;
    }
    Some((generation, ObjectRef::new(kind, namespace, name)))
}

pub(super) fn entry_line(generation: u64, key: &ObjectRef) -> String {
    format!(
        "{generation}\t{}\t{}\t{}\n",
        key.kind.plural(),
        key.namespace,
        key.name
    )
}

impl ChangeLog {
    pub fn new(root: &Path) -> ChangeLog {
        ChangeLog {
            path: root.join(CHANGE_LOG_FILE),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io_error(&self, error: &io::Error) -> ChangeLogError {
        ChangeLogError::Io {
            path: self.path.clone(),
            message: error.to_string(),
        }
    }

    /// Records that `generation` (= `previous + 1`) touched `keys`. Call under the exclusive
    /// lock, before the generation file is written.
    pub fn append(&self, previous: u64, generation: u64, keys: &[ObjectRef]) -> io::Result<()> {
        self.append_with(previous, generation, keys, true)
    }

    /// Like [`ChangeLog::append`], leaving the write in the page cache: for commits the
    /// journal ([`super::journal`]) makes durable (its recovery restarts this log).
    pub fn append_unsynced(
        &self,
        previous: u64,
        generation: u64,
        keys: &[ObjectRef],
    ) -> io::Result<()> {
        self.append_with(previous, generation, keys, false)
    }

    /// Starts the log afresh after `generation` (durably): readers behind it load the whole
    /// directory once.
    pub fn restart(&self, generation: u64) -> io::Result<()> {
        durable::write_atomic(
            &self.path,
            format!("{HEADER_PREFIX}{generation}\n").as_bytes(),
        )
    }

    fn append_with(
        &self,
        previous: u64,
        generation: u64,
        keys: &[ObjectRef],
        sync: bool,
    ) -> io::Result<()> {
        let lines: String = keys.iter().map(|k| entry_line(generation, k)).collect();
        let size = match fs::metadata(&self.path) {
            Ok(meta) => Some(meta.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let extendable = match size {
            Some(size) if size <= MAX_LOG_BYTES => self.ends_at(size)? == Some(previous),
            _ => false,
        };
        if extendable {
            let mut file = OpenOptions::new().append(true).open(&self.path)?;
            file.write_all(lines.as_bytes())?;
            return if sync { file.sync_data() } else { Ok(()) };
        }
        let kept = match size {
            Some(size) if size > MAX_LOG_BYTES => self.newest_entries(previous)?,
            _ => None,
        };
        let (from, body) = kept.unwrap_or((previous, String::new()));
        let text = format!("{HEADER_PREFIX}{from}\n{body}{lines}");
        if sync {
            durable::write_atomic(&self.path, text.as_bytes())
        } else {
            durable::replace_all(&[(self.path.clone(), text.into_bytes())])
        }
    }

    /// The generation the log covers up to, if it is sound at its ends: a header that parses
    /// and a last line that is whole.
    fn ends_at(&self, size: u64) -> io::Result<Option<u64>> {
        let mut file = File::open(&self.path)?;
        let mut head = vec![0; HEADER_PREFIX.len() + 24];
        let n = read_up_to(&mut file, &mut head)?;
        let head = String::from_utf8_lossy(&head[..n]);
        let Some(from) = head.split('\n').next().and_then(parse_header) else {
            return Ok(None);
        };
        let tail_len = size.min(4096);
        file.seek(SeekFrom::Start(size - tail_len))?;
        let mut tail = Vec::new();
        file.take(tail_len).read_to_end(&mut tail)?;
        if tail.last() != Some(&b'\n') {
            return Ok(None);
        }
        let tail = String::from_utf8_lossy(&tail[..tail.len() - 1]);
        let last = tail.rsplit('\n').next().unwrap_or_default();
        if last.starts_with(HEADER_PREFIX) {
            return Ok(Some(from));
        }
        Ok(parse_entry(last).map(|(generation, _)| generation))
    }

    /// For a compaction: the newest whole generations within [`KEEP_LOG_BYTES`], as
    /// `(from, lines)`; `None` when the log is damaged (then it starts afresh).
    fn newest_entries(&self, previous: u64) -> io::Result<Option<(u64, String)>> {
        let text = fs::read_to_string(&self.path)?;
        let Some((header, body)) = text.split_once('\n') else {
            return Ok(None);
        };
        if parse_header(header).is_none() || !body.ends_with('\n') {
            return Ok(None);
        }
        let mut start = body.len().saturating_sub(KEEP_LOG_BYTES);
        // Move to the start of a line, then past the rest of that line's generation.
        start = body[..start].rfind('\n').map_or(0, |i| i + 1);
        let Some(first) = body[start..].lines().next().and_then(parse_entry) else {
            return Ok(None);
        };
        let split_generation = first.0;
        let mut from = split_generation;
        let mut offset = start;
        for line in body[start..].lines() {
            match parse_entry(line) {
                Some((g, _)) if g == split_generation => offset += line.len() + 1,
                Some(_) => break,
                None => return Ok(None),
            }
        }
        if offset >= body.len() {
            from = previous;
        }
        Ok(Some((from, body[offset..].to_owned())))
    }

    /// The objects touched after `seen` up to `current`, continuing at `cursor` when it
    /// still applies. Call under the shared lock.
    pub fn read_since(
        &self,
        seen: u64,
        current: u64,
        cursor: Option<&LogCursor>,
    ) -> Result<LogRead, ChangeLogError> {
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(LogRead::Behind { from: None });
            }
            Err(e) => return Err(self.io_error(&e)),
        };
        let mut head = vec![0; HEADER_PREFIX.len() + 24];
        let n = read_up_to(&mut file, &mut head).map_err(|e| self.io_error(&e))?;
        let head_text = String::from_utf8_lossy(&head[..n]);
        let header_line = head_text.split('\n').next().unwrap_or_default();
        let Some(from) = parse_header(header_line).filter(|_| head_text.contains('\n')) else {
            return Err(ChangeLogError::BadHeader {
                path: self.path.clone(),
                line: header_line.to_owned(),
            });
        };
        if seen < from {
            return Ok(LogRead::Behind { from: Some(from) });
        }
        let header_end = header_line.len() as u64 + 1;
        let start = match cursor {
            Some(c) if c.from == from && c.generation == seen => c.offset,
            _ => header_end,
        };
        file.seek(SeekFrom::Start(start))
            .map_err(|e| self.io_error(&e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| self.io_error(&e))?;
        let text = String::from_utf8_lossy(&bytes);
        let mut keys = Vec::new();
        let mut seen_keys = std::collections::HashSet::new();
        let mut offset = start;
        let mut end = start;
        let mut last = if start == header_end { from } else { seen };
        for line in text.split_inclusive('\n') {
            let Some(line_text) = line.strip_suffix('\n') else {
                return Err(ChangeLogError::TornLine {
                    path: self.path.clone(),
                    offset,
                });
            };
            let Some((generation, key)) = parse_entry(line_text) else {
                return Err(ChangeLogError::Malformed {
                    path: self.path.clone(),
                    offset,
                    line: line_text.to_owned(),
                });
            };
            if generation < last {
                return Err(ChangeLogError::OutOfOrder {
                    path: self.path.clone(),
                    offset,
                    generation,
                    after: last,
                });
            }
            offset += line.len() as u64;
            if generation > current {
                // Written by a commit that died before its generation: not part of the state.
                break;
            }
            last = generation;
            end = offset;
            if generation > seen && seen_keys.insert(key.clone()) {
                keys.push(key);
            }
        }
        if current > seen && last < current {
            return Err(ChangeLogError::Truncated {
                path: self.path.clone(),
                ends_at: last,
                generation: current,
            });
        }
        Ok(LogRead::Changes(
            keys,
            LogCursor {
                from,
                offset: end,
                generation: current,
            },
        ))
    }
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            read => n += read,
        }
    }
    Ok(n)
}

#[cfg(test)]
#[path = "changelog_tests.rs"]
mod tests;
