//! The admin Unix socket as a file: created with its mode set explicitly (0600, or 0660 for
//! `admin.socketGroup`), never the umask's, and published in the state directory so that the
//! operator verbs (`ferroplane stats --node-name N`) find it wherever node.yaml put it.
//!
//! Invariants: the socket appears at its path only with its final mode and group (bound under
//! a temporary name, then renamed over the path), so no other user can connect in between;
//! only a socket nobody serves is replaced: any other file at the path is an error naming it,
//! never removed. The published path (`<stateDir>/sockets/<node>`) is written like every state
//! file (owner-only, see [`crate::store::access`]) and is a hint: a stale one leads to a
//! connection error naming the socket.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use super::config::{NodeSettings, SourceSettings};
use super::log;
use crate::store::durable;

/// The state directory's folder of published admin socket paths.
pub const SOCKETS_DIR: &str = "sockets";

/// Binds the admin socket at `path`: mode 0600, or 0660 with group `group`.
pub fn bind(path: &Path, group: Option<u32>) -> io::Result<UnixListener> {
    let named =
        |e: io::Error| io::Error::new(e.kind(), format!("admin.socket {}: {e}", path.display()));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(named)?;
    }
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(named(e)),
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(named(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way; not removing it",
            )));
        }
        Ok(_) if UnixStream::connect(path).is_ok() => {
            return Err(named(io::Error::new(
                io::ErrorKind::AddrInUse,
                "another process is serving it",
            )));
        }
        // A socket nobody serves is left over from a process that died: replaced below.
        Ok(_) => {}
    }
    let temporary = temporary_path(path);
    let _ = fs::remove_file(&temporary);
    let listener = UnixListener::bind(&temporary).map_err(named)?;
    let finish = || -> io::Result<()> {
        if let Some(group) = group {
            std::os::unix::fs::chown(&temporary, None, Some(group))?;
        }
        let mode = if group.is_some() { 0o660 } else { 0o600 };
        fs::set_permissions(&temporary, fs::Permissions::from_mode(mode))?;
        fs::rename(&temporary, path)
    };
    if let Err(e) = finish() {
        let _ = fs::remove_file(&temporary);
        return Err(named(e));
    }
    Ok(listener)
}

/// `.<name>.<pid>.tmp` next to `path`.
fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "admin.sock".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Writes the admin socket's absolute path to `<stateDir>/sockets/<node>` when the node
/// reads a state directory; a failure is a warning (the verbs still take `--socket`).
pub fn publish(settings: &NodeSettings) {
    let SourceSettings::State(state) = &settings.source else {
        return;
    };
    let socket = std::path::absolute(&settings.admin.socket)
        .unwrap_or_else(|_| settings.admin.socket.clone());
    let record = published_path(state, &settings.node_name);
    let mut text = socket.as_os_str().to_string_lossy().into_owned();
    text.push('\n');
    if let Err(e) = durable::write_atomic(&record, text.as_bytes()) {
        log::warn(format_args!(
            "publishing the admin socket in {}: {e}",
            record.display()
        ));
    }
}

/// Where the node `node` of state directory `state` publishes its admin socket's path.
pub fn published_path(state: &Path, node: &str) -> PathBuf {
    state.join(SOCKETS_DIR).join(node)
}
