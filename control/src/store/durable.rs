//! Crash-safe file operations: a file is replaced by writing a temporary sibling, syncing it,
//! renaming it over the target and syncing the directory, so a reader (or a restart after a
//! crash) sees either the old or the new contents, never a torn file.
//!
//! Invariant: temporary files start with '.', and readers skip dot-files, so a temporary left by
//! a crash is never read; the next write of the same object reuses (truncates) it. Every
//! directory and file created gets its mode (and group) from its parent per
//! [`super::access`], never from the umask.

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
    write_all_replacing(files, true)
}

/// Replaces several files atomically (temporary + rename: a reader sees old or new, never a
/// torn file) without syncing: for writes a journal makes durable ([`super::journal`]).
pub fn replace_all(files: &[(PathBuf, Vec<u8>)]) -> io::Result<()> {
    write_all_replacing(files, false)
}

fn write_all_replacing(files: &[(PathBuf, Vec<u8>)], sync: bool) -> io::Result<()> {
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
        if sync {
            file.sync_all()?;
        }
        renames.push((temp, path));
        dirs.insert(dir.to_path_buf());
    }
    for (temp, path) in renames {
        fs::rename(temp, path)?;
    }
    if !sync {
        return Ok(());
    }
    dirs.iter().try_for_each(|dir| sync_dir(dir))
}

/// Removes files (a missing one is fine) without syncing (journaled commits).
pub fn remove_all(paths: &[PathBuf]) -> io::Result<()> {
    for path in paths {
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
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
    fn removal_tolerates_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        fs::write(&path, b"x").unwrap();
        remove_all_durable(&[path.clone(), dir.path().join("missing.json")]).unwrap();
        assert!(!path.exists());
    }
}
