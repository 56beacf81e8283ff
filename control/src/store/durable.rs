//! Crash-safe file operations: a file is replaced by writing a temporary sibling, syncing it,
//! renaming it over the target and syncing the directory, so a reader (or a restart after a
//! crash) sees either the old or the new contents, never a torn file.
//!
//! A [`GroupCommit`] replaces many files with one filesystem flush for all of them instead of
//! one fsync per file: the temporaries are written, one `syncfs(2)` makes their data durable,
//! then they are renamed and a second flush makes the renames durable; a file staged last (a
//! commit marker) is renamed only after that. Its cost is per batch,
//! not per file (it also flushes whatever else is dirty on that filesystem, which is the price
//! of a single flush).
//!
//! Invariant: temporary files start with '.', and readers skip dot-files, so a temporary left by
//! a crash is never read; the next write of the same object reuses (truncates) it. Every
//! directory and file created gets its mode (and group) from its parent per
//! [`super::access`], never from the umask. No file is renamed into place before its data is
//! durable, in both write paths.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::access::Access;

fn temp_path(path: &Path) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    Ok(path.with_file_name(format!(".{name}.tmp")))
}

fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or_else(|| Path::new("."))
}

/// Syncs a directory so renames and removals inside it survive a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` and any missing parents, syncing each parent that gained an entry.
pub fn create_dir_durable(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(up) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_durable(up)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {
            Access::of_parent(parent(dir)).apply_to_dir(dir)?;
            sync_dir(parent(dir))
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Replaces `path` with `bytes` atomically and durably.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_all_atomic(&[(path.to_path_buf(), bytes.to_vec())])
}

/// Replaces several files: every temporary is written and synced before the first rename, and
/// each directory is synced once at the end (one fsync per directory, not per file).
pub fn write_all_atomic(files: &[(PathBuf, Vec<u8>)]) -> io::Result<()> {
    let mut dirs = BTreeSet::new();
    let mut renames = Vec::with_capacity(files.len());
    for (path, bytes) in files {
        let dir = parent(path);
        create_dir_durable(dir)?;
        let temp = temp_path(path)?;
        let access = Access::of_parent(dir);
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(access.file_mode())
            .open(&temp)?;
        access.apply_to_file(&file)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        renames.push((temp, path));
        dirs.insert(dir.to_path_buf());
    }
    for (temp, path) in renames {
        fs::rename(temp, path)?;
    }
    dirs.iter().try_for_each(|dir| sync_dir(dir))
}

/// Flushes the filesystem holding `path` (every file's data and metadata on it): the one
/// flush of a [`GroupCommit`] step.
pub fn sync_filesystem(path: &Path) -> io::Result<()> {
    let dir = File::open(path)?;
    rustix::fs::syncfs(&dir).map_err(io::Error::from)
}

/// Writes the temporary of `path` without syncing it.
fn write_temp(path: &Path, bytes: &[u8]) -> io::Result<PathBuf> {
    let dir = parent(path);
    create_dir_durable(dir)?;
    let temp = temp_path(path)?;
    let access = Access::of_parent(dir);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(access.file_mode())
        .open(&temp)?;
    access.apply_to_file(&file)?;
    file.write_all(bytes)?;
    Ok(temp)
}

/// Many file replacements and removals made durable together, with one filesystem flush
/// before the renames and one after, whatever their number (group commit).
///
/// Use: [`GroupCommit::stage`] each file (temporaries written, nothing visible yet), then
/// [`GroupCommit::flush_data`] (one flush), then [`GroupCommit::publish`] (renames and
/// removals, one flush). Anything else written between `stage` and `flush_data` (an append to
/// a log) is made durable by the same flush.
pub struct GroupCommit {
    root: PathBuf,
    renames: Vec<(PathBuf, PathBuf)>,
    removals: Vec<PathBuf>,
    /// Renamed only once every other rename and removal is durable.
    last: Option<(PathBuf, PathBuf)>,
    data_flushed: bool,
}

impl GroupCommit {
    /// A commit on the filesystem holding `root`.
    pub fn new(root: &Path) -> GroupCommit {
        GroupCommit {
            root: root.to_path_buf(),
            renames: Vec::new(),
            removals: Vec::new(),
            last: None,
            data_flushed: false,
        }
    }

    /// Writes `bytes` into `path`'s temporary (not synced, not yet visible).
    pub fn stage(&mut self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let temp = write_temp(path, bytes)?;
        self.renames.push((temp, path.to_path_buf()));
        Ok(())
    }

    /// Like [`GroupCommit::stage`], but `path` is renamed into place only after every other
    /// change of the commit is durable, and then its directory is synced (a commit's marker,
    /// such as the state directory's `generation`).
    pub fn stage_last(&mut self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let temp = write_temp(path, bytes)?;
        self.last = Some((temp, path.to_path_buf()));
        Ok(())
    }

    /// Removes `path` at [`GroupCommit::publish`] (a missing file is fine).
    pub fn stage_removal(&mut self, path: &Path) {
        self.removals.push(path.to_path_buf());
    }

    /// Makes the staged data durable: one filesystem flush.
    pub fn flush_data(&mut self) -> io::Result<()> {
        sync_filesystem(&self.root)?;
        self.data_flushed = true;
        Ok(())
    }

    /// Renames the temporaries into place and removes the removals, then makes that durable
    /// with one filesystem flush. Flushes the data first if [`GroupCommit::flush_data`] was
    /// not called.
    pub fn publish(mut self) -> io::Result<()> {
        if !self.data_flushed && (!self.renames.is_empty() || self.last.is_some()) {
            self.flush_data()?;
        }
        for (temp, path) in &self.renames {
            fs::rename(temp, path)?;
        }
        for path in &self.removals {
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        if !self.renames.is_empty() || !self.removals.is_empty() {
            sync_filesystem(&self.root)?;
        }
        if let Some((temp, path)) = &self.last {
            fs::rename(temp, path)?;
            sync_dir(parent(path))?;
        }
        Ok(())
    }
}

/// Removes files (a missing one is fine), then syncs each directory once.
pub fn remove_all_durable(paths: &[PathBuf]) -> io::Result<()> {
    let mut dirs = BTreeSet::new();
    for path in paths {
        match fs::remove_file(path) {
            Ok(()) => {
                dirs.insert(parent(path).to_path_buf());
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    dirs.iter().try_for_each(|dir| sync_dir(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/obj.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["obj.json"]);
    }

    #[test]
    fn stale_temporary_is_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("obj.json");
        fs::write(
            dir.path().join(".obj.json.tmp"),
            b"garbage from a crash, longer",
        )
        .unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert!(!dir.path().join(".obj.json.tmp").exists());
    }

    #[test]
    fn group_commit_shows_nothing_before_publish_and_everything_after() {
        let dir = tempfile::tempdir().unwrap();
        let kept = dir.path().join("ns/kept.json");
        let replaced = dir.path().join("ns/replaced.json");
        let removed = dir.path().join("ns/removed.json");
        write_atomic(&replaced, b"old").unwrap();
        write_atomic(&removed, b"x").unwrap();
        let mut commit = GroupCommit::new(dir.path());
        commit.stage(&kept, b"new file").unwrap();
        commit.stage(&replaced, b"new").unwrap();
        commit.stage_removal(&removed);
        commit.stage_removal(&dir.path().join("ns/never-existed.json"));
        let marker = dir.path().join("generation");
        commit.stage_last(&marker, b"2\n").unwrap();
        assert!(!marker.exists());
        assert!(!kept.exists(), "a staged file is visible before publish");
        assert_eq!(fs::read(&replaced).unwrap(), b"old");
        assert!(removed.exists());
        commit.flush_data().unwrap();
        commit.publish().unwrap();
        assert_eq!(fs::read(&kept).unwrap(), b"new file");
        assert_eq!(fs::read(&replaced).unwrap(), b"new");
        assert!(!removed.exists());
        assert_eq!(fs::read(&marker).unwrap(), b"2\n");
        let mut names: Vec<_> = fs::read_dir(dir.path().join("ns"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["kept.json", "replaced.json"],
            "temporaries left behind"
        );
    }

    #[test]
    fn removal_tolerates_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        fs::write(&path, b"x").unwrap();
        remove_all_durable(&[path.clone(), dir.path().join("missing.json")]).unwrap();
        assert!(!path.exists());
    }
}
