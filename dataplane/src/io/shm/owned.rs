//! Opening a table file as this process's own, safely in a shared directory such as
//! `/dev/shm` or `/run`: a symbolic link at the path is never followed, and a file another
//! user owns, that others (group included) may open, with other names (hard links) or that
//! is not a regular file is never used. Such an entry is reported and replaced: unlinked (the
//! link itself, never its target) and created anew, exclusively, mode 0600. A directory at the
//! path is an error naming it.
//!
//! Invariants: the file returned is a regular file with one name, owned by this process's
//! effective user, mode 0600 or stricter, and it is the inode at `path` when it was checked
//! (`fstat` on the open descriptor, so a swap between the check and the open is an error,
//! never a file used by mistake).

use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use super::super::sys::context;

/// An open table file, and why the entry that was at its path was replaced, if it was.
pub(super) struct Owned {
    pub file: File,
    pub replaced: Option<String>,
}

/// Opens (or creates) the table file at `path` as described in the module doc.
pub(super) fn open(path: &Path) -> io::Result<Owned> {
    let euid = effective_uid();
    let replaced = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(context(e, path.display())),
        Ok(meta) => match unfit(&meta, euid) {
            None => {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(path)
                    .map_err(|e| context(e, path.display()))?;
                let opened = file.metadata()?;
                if opened.dev() != meta.dev() || opened.ino() != meta.ino() {
                    return Err(io::Error::other(format!(
                        "{} was replaced while being opened; refusing it",
                        path.display()
                    )));
                }
                return Ok(Owned {
                    file,
                    replaced: None,
                });
            }
            Some(why) => {
                if meta.is_dir() {
                    return Err(io::Error::other(format!(
                        "{} is a directory, not a table file",
                        path.display()
                    )));
                }
                // Unlinks the entry itself: a symbolic link's target is left alone.
                fs::remove_file(path).map_err(|e| {
                    context(e, format_args!("replacing {} ({why})", path.display()))
                })?;
                Some(why)
            }
        },
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| context(e, format_args!("creating {}", path.display())))?;
    Ok(Owned { file, replaced })
}

/// Why an existing entry cannot be used as this process's table file.
fn unfit(meta: &Metadata, euid: u32) -> Option<String> {
    let file_type = meta.file_type();
    if file_type.is_symlink() {
        return Some("it is a symbolic link, which is never followed".to_owned());
    }
    if !file_type.is_file() {
        return Some("it is not a regular file".to_owned());
    }
    if meta.uid() != euid {
        return Some(format!("it is owned by uid {}, not {euid}", meta.uid()));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o7077 != 0 {
        return Some(format!(
            "its mode {mode:04o} lets others open it (0600 expected)"
        ));
    }
    if meta.nlink() != 1 {
        return Some(format!("it has {} names (hard links)", meta.nlink()));
    }
    None
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid(2) takes no arguments, touches no memory of ours and cannot fail.
    unsafe { libc::geteuid() }
}
