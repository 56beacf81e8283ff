//! Who may read and write the state directory: its owner (root, normally) only, or its owner
//! and one group when the directory is given one (`chgrp ops DIR && chmod 2770 DIR`).
//!
//! Rules: a directory or file created in the state directory is owner-only (0700, 0600),
//! unless its parent is shared with a group and closed to others (group rwx, others none, as
//! `chmod 2770` makes it): then it is shared with the parent's group (2770, 0660, the
//! parent's group). The state directory itself is created owner-only (its parent, such as
//! `/var/lib` or `/tmp`, is never such a shared directory). The mode is set explicitly,
//! whatever the umask. Others never get anything: the root directory is made owner-only
//! when a writer opens it (unless shared as above), and the lock file is put back to its mode
//! when opened, so a directory made world-readable by an older version is closed (no other
//! local user can open the lock file, so none can hold the lock).
//!
//! Invariant: nothing here widens access; it only removes bits or copies the parent's group.

use std::fs::{self, File, Permissions};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt, fchown};
use std::path::Path;

/// The access of entries created in a directory: owner only, or owner and the directory's
/// group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    group: Option<u32>,
}

impl Access {
    /// The access of entries created in `dir` (owner only when `dir` cannot be read).
    pub fn of_parent(dir: &Path) -> Access {
        match fs::metadata(dir) {
            Ok(meta) if meta.mode() & 0o077 == 0o070 => Access {
                group: Some(meta.gid()),
            },
            _ => Access { group: None },
        }
    }

    pub fn file_mode(self) -> u32 {
        if self.group.is_some() { 0o660 } else { 0o600 }
    }

    pub fn dir_mode(self) -> u32 {
        if self.group.is_some() { 0o2770 } else { 0o700 }
    }

    /// Gives the open `file` this access: its mode, and the group when shared.
    pub fn apply_to_file(self, file: &File) -> io::Result<()> {
        if let Some(group) = self.group
            && file.metadata()?.gid() != group
        {
            fchown(file, None, Some(group))?;
        }
        let mode = self.file_mode();
        if file.metadata()?.mode() & 0o7777 != mode {
            file.set_permissions(Permissions::from_mode(mode))?;
        }
        Ok(())
    }

    /// Gives the directory `dir` (just created) this access.
    pub fn apply_to_dir(self, dir: &Path) -> io::Result<()> {
        if let Some(group) = self.group {
            std::os::unix::fs::chown(dir, None, Some(group))?;
        }
        fs::set_permissions(dir, Permissions::from_mode(self.dir_mode()))
    }
}

/// Makes the state directory `root` owner-only unless it is shared with its group as
/// [`Access`] describes (group rwx, others nothing), which is kept.
pub fn restrict_root(root: &Path) -> io::Result<()> {
    let mode = fs::metadata(root)?.mode() & 0o7777;
    if mode & 0o077 != 0 && mode & 0o077 != 0o070 {
        fs::set_permissions(root, Permissions::from_mode(mode & !0o077))?;
    }
    Ok(())
}
