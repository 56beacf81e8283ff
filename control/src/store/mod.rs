//! The state directory: the embedded API server's storage, shared by every `ferroplane` process
//! on the machine (one per simulated node, plus the CLI).
//!
//! Layout:
//! ```text
//! DIR/cluster.json                      cluster settings (defaults when absent)
//! DIR/generation                        change counter, bumped once per committed transaction
//! DIR/lock                              flock(2) target: exclusive for writers, shared for readers
//! DIR/transaction-in-progress           present only while a commit is being written
//! DIR/changes                           which objects each recent generation touched
//! DIR/journal                           the commits since the last file-system sync
//! DIR/objects/<plural>/<name>.json              cluster-scoped objects (namespaces, nodes)
//! DIR/objects/<plural>/<namespace>/<name>.json  namespaced objects
//! ```
//! Access: owner-only (0700 directories, 0600 files), or shared with the directory's group
//! when it is made so (`chmod 2770`); see [`access`]. Taking the lock waits at most the
//! directory's lock timeout ([`DEFAULT_LOCK_TIMEOUT`]), then fails naming who holds it.
//!
//! Invariants: every write happens under the exclusive lock; each object file is replaced
//! atomically ([`durable`]); a commit is durable once its journal record is synced (one
//! `fdatasync` per commit, [`journal`]: the files, change log and generation are written
//! without syncing, and recovery replays the journal when the lock is taken after a crash);
//! `generation` is written last in a commit, so a watcher that sees a
//! new generation and then loads under the shared lock sees the whole commit. Names used in paths
//! have been validated as DNS names first, so they cannot contain `/` or be `.`/`..`.

pub mod access;
pub mod changelog;
pub mod durable;
pub mod journal;
mod lock_holder;
mod lock_wait;

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use access::Access;

use crate::model::{Kind, Object, ObjectRef};
use crate::settings::ClusterSettings;

/// The default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/ferroplane";

/// How long taking the lock waits for another holder before failing.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// An error reading or writing the state directory, with the path involved.
#[derive(Debug)]
pub struct StoreError {
    pub path: PathBuf,
    pub message: String,
}

impl StoreError {
    pub fn io(path: &Path, error: &io::Error) -> StoreError {
        StoreError {
            path: path.to_path_buf(),
            message: error.to_string(),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "state {}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for StoreError {}

/// A held flock on the state directory; released when dropped.
pub struct StateLock {
    _file: File,
}

/// A state directory by path. Cheap to construct; nothing is touched until used.
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
    lock_timeout: Duration,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> StateDir {
        StateDir {
            root: root.into(),
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
        }
    }

    /// The same directory, waiting at most `timeout` for the lock.
    pub fn with_lock_timeout(mut self, timeout: Duration) -> StateDir {
        self.lock_timeout = timeout;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn settings_path(&self) -> PathBuf {
        self.root.join("cluster.json")
    }

    pub fn generation_path(&self) -> PathBuf {
        self.root.join("generation")
    }

    fn lock_path(&self) -> PathBuf {
        self.root.join("lock")
    }

    pub(crate) fn marker_path(&self) -> PathBuf {
        self.root.join("transaction-in-progress")
    }

    fn objects_dir(&self) -> PathBuf {
        self.root.join("objects")
    }

    /// Where an object lives. The caller has validated the name and namespace.
    pub fn object_path(&self, key: &ObjectRef) -> PathBuf {
        let mut path = self.objects_dir().join(key.kind.plural());
        if key.kind.is_namespaced() {
            path.push(&key.namespace);
        }
        path.push(format!("{}.json", key.name));
        path
    }

    /// Creates the directory (and its parents) if missing, owner-only; makes an existing one
    /// owner-only unless it is shared with its group ([`access`]).
    pub fn ensure_exists(&self) -> Result<(), StoreError> {
        durable::create_dir_durable(&self.objects_dir())
            .map_err(|e| StoreError::io(&self.objects_dir(), &e))?;
        access::restrict_root(&self.root).map_err(|e| StoreError::io(&self.root, &e))
    }

    fn lock(&self, exclusive: bool) -> Result<StateLock, StoreError> {
        let path = self.lock_path();
        let access = Access::of_parent(&self.root);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(access.file_mode())
            .open(&path)
            .map_err(|e| StoreError::io(&path, &e))?;
        // A lock file left readable by others (an older version) is closed to them; the
        // owner may fail to (root-owned file, user process): that is no reason not to lock.
        let _ = access.apply_to_file(&file);
        let tried = if exclusive {
            file.try_lock()
        } else {
            file.try_lock_shared()
        };
        match tried {
            Ok(()) => return Ok(StateLock { _file: file }),
            Err(fs::TryLockError::Error(e)) => return Err(StoreError::io(&path, &e)),
            Err(fs::TryLockError::WouldBlock) => {}
        }
        match lock_wait::wait(&file, exclusive, self.lock_timeout) {
            Ok(()) => Ok(StateLock { _file: file }),
            Err(lock_wait::WaitError::Io(e)) => Err(StoreError::io(&path, &e)),
            Err(lock_wait::WaitError::TimedOut) => {
                let holder =
                    lock_holder::describe(&file).unwrap_or_else(|| "another process".to_owned());
                Err(StoreError {
                    path,
                    message: format!(
                        "still locked after {:?}: held by {holder}",
                        self.lock_timeout
                    ),
                })
            }
        }
    }

    /// Waits until no other process holds the lock (at most the lock timeout), then holds it
    /// exclusively. Finishes (replays) what the journal holds of commits a crash interrupted first.
    pub fn lock_exclusive(&self) -> Result<StateLock, StoreError> {
        self.ensure_exists()?;
        let lock = self.lock(true)?;
        let recovered = journal::recover(self)?;
        if let Some(damage) = &recovered.damage {
            crate::node::log::warn(format_args!("state {}: {damage}", self.root.display()));
        }
        Ok(lock)
    }

    /// Waits until no writer holds the lock (at most the lock timeout); readers share it.
    /// `None` when the directory does not exist yet (then there is nothing to read).
    pub fn lock_shared(&self) -> Result<Option<StateLock>, StoreError> {
        if !self.root.is_dir() {
            return Ok(None);
        }
        self.lock(false).map(Some)
    }

    /// The settings, or the defaults when the file is absent.
    pub fn read_settings(&self) -> Result<ClusterSettings, StoreError> {
        let path = self.settings_path();
        match fs::read(&path) {
            Ok(bytes) => {
                ClusterSettings::from_json(&bytes).map_err(|message| StoreError { path, message })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(ClusterSettings::default()),
            Err(e) => Err(StoreError::io(&path, &e)),
        }
    }

    pub fn write_settings(&self, settings: &ClusterSettings) -> Result<(), StoreError> {
        self.ensure_exists()?;
        let path = self.settings_path();
        durable::write_atomic(&path, &settings.to_json()).map_err(|e| StoreError::io(&path, &e))
    }

    /// The change counter: 0 for a fresh directory. Cheap enough to poll.
    pub fn read_generation(&self) -> Result<u64, StoreError> {
        let path = self.generation_path();
        match fs::read_to_string(&path) {
            Ok(text) => text.trim().parse().map_err(|_| StoreError {
                path,
                message: format!("generation {:?} is not a number", text.trim()),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(StoreError::io(&path, &e)),
        }
    }

    /// Reads every stored object. Files that cannot be decoded, or whose contents do not match
    /// their path, are returned as problems instead of failing the load.
    pub fn read_objects(&self) -> Result<(Vec<Object>, Vec<StoreError>), StoreError> {
        let mut objects = Vec::new();
        let mut problems = Vec::new();
        for kind in Kind::ALL {
            let dir = self.objects_dir().join(kind.plural());
            let files = if kind.is_namespaced() {
                let mut files = Vec::new();
                for namespace_dir in list_entries(&dir)? {
                    if namespace_dir.is_dir() {
                        files.extend(list_entries(&namespace_dir)?);
                    }
                }
                files
            } else {
                list_entries(&dir)?
            };
            for path in files
                .into_iter()
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
            {
                match self.read_object(kind, &path) {
                    Ok(object) => objects.push(object),
                    Err(problem) => problems.push(problem),
                }
            }
        }
        Ok((objects, problems))
    }

    /// Writes one commit under the exclusive lock the caller holds: its journal record
    /// (synced: the commit is durable from here), each object's file (`None` removes it), the
    /// change log entry, then `generation` (last, so a reader that sees the new generation sees
    /// the whole commit). Only the journal is synced ([`journal`]).
    pub fn write_commit(
        &self,
        generation: u64,
        objects: &[(ObjectRef, Option<Vec<u8>>)],
    ) -> Result<(), StoreError> {
        journal::append(self, &journal::encode(generation, objects))?;
        let mut writes = Vec::new();
        let mut removals = Vec::new();
        for (key, bytes) in objects {
            let path = self.object_path(key);
            match bytes {
                Some(bytes) => writes.push((path, bytes.clone())),
                None => removals.push(path),
            }
        }
        durable::replace_all(&writes).map_err(|e| StoreError::io(&self.root, &e))?;
        durable::remove_all(&removals).map_err(|e| StoreError::io(&self.root, &e))?;
        let keys: Vec<ObjectRef> = objects.iter().map(|(key, _)| key.clone()).collect();
        let log = self.change_log();
        log.append_unsynced(generation.saturating_sub(1), generation, &keys)
            .map_err(|e| StoreError::io(log.path(), &e))?;
        let path = self.generation_path();
        durable::replace_all(&[(path.clone(), format!("{generation}\n").into_bytes())])
            .map_err(|e| StoreError::io(&path, &e))
    }

    /// The change log ([`changelog`]).
    pub fn change_log(&self) -> changelog::ChangeLog {
        changelog::ChangeLog::new(&self.root)
    }

    /// One object by key: `None` when its file does not exist.
    pub fn read_object_by_key(&self, key: &ObjectRef) -> Result<Option<Object>, StoreError> {
        let path = self.object_path(key);
        if !path.exists() {
            return Ok(None);
        }
        self.read_object(key.kind, &path).map(Some)
    }

    fn read_object(&self, kind: Kind, path: &Path) -> Result<Object, StoreError> {
        let bytes = fs::read(path).map_err(|e| StoreError::io(path, &e))?;
        let object = Object::from_json_slice(kind, &bytes).map_err(|e| StoreError {
            path: path.to_path_buf(),
            message: format!("not a valid {kind}: {e}"),
        })?;
        if self.object_path(&object.object_ref()) != path {
            return Err(StoreError {
                path: path.to_path_buf(),
                message: format!("holds {}, which belongs elsewhere", object.object_ref()),
            });
        }
        Ok(object)
    }
}

/// Entries of a directory, dot-files (temporaries) skipped; a missing directory is empty.
fn list_entries(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io(dir, &e)),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(dir, &e))?;
        if !entry.file_name().to_string_lossy().starts_with('.') {
            paths.push(entry.path());
        }
    }
    paths.sort();
    Ok(paths)
}
