//! A write transaction on the state directory: take the exclusive lock, load the state, let an
//! [`ApiServer`] apply and delete, then write back exactly the objects it touched and bump the
//! generation. Processes sharing the directory are serialised by the lock, so allocations made
//! in one transaction are always visible to the next.
//!
//! Crash safety: each file is replaced atomically; a marker file exists while a commit is being
//! written, and a transaction that finds it (the previous writer died mid-commit) first re-runs
//! every controller over the whole state, which repairs any derived object left stale.

use crate::apiserver::ApiServer;
use crate::model::Object;
use crate::state::ClusterState;
use crate::store::{StateDir, StateLock, StoreError, durable};

/// An open transaction; dropping it without [`Transaction::commit`] writes nothing.
pub struct Transaction {
    dir: StateDir,
    _lock: StateLock,
    server: ApiServer,
    recovering: bool,
}

/// The result of a commit.
pub struct Committed {
    /// The generation the state directory is at now.
    pub generation: u64,
    /// How many objects were written or removed.
    pub changed: usize,
    /// Things the controllers could not do (e.g. a node's podCIDR is full).
    pub warnings: Vec<String>,
    /// The state as committed.
    pub state: ClusterState,
}

impl Transaction {
    /// Waits for the exclusive lock and loads the state.
    pub fn begin(dir: &StateDir) -> Result<Transaction, StoreError> {
        let lock = dir.lock_exclusive()?;
        let state = ClusterState::read_locked(dir)?;
        let recovering = dir.marker_path().exists();
        let mut server = ApiServer::new(state, jiff::Timestamp::now());
        if recovering {
            server.reconcile_everything();
        }
        Ok(Transaction {
            dir: dir.clone(),
            _lock: lock,
            server,
            recovering,
        })
    }

    /// The API server to apply and delete through.
    pub fn server(&mut self) -> &mut ApiServer {
        &mut self.server
    }

    /// Runs the pending controllers, writes what changed and releases the lock.
    pub fn commit(self) -> Result<Committed, StoreError> {
        let finished = self.server.finish();
        let marker = self.dir.marker_path();
        let generation = finished.state.generation();
        if finished.touched.is_empty() {
            if self.recovering {
                durable::remove_all_durable(std::slice::from_ref(&marker))
                    .map_err(|e| StoreError::io(&marker, &e))?;
            }
            return Ok(Committed {
                generation,
                changed: 0,
                warnings: finished.warnings,
                state: finished.state,
            });
        }
        durable::write_atomic(&marker, b"").map_err(|e| StoreError::io(&marker, &e))?;
        let objects: Vec<_> = finished
            .touched
            .iter()
            .map(|key| {
                (
                    key.clone(),
                    finished.state.object(key).map(Object::to_json_bytes),
                )
            })
            .collect();
        self.dir.write_commit(generation, &objects)?;
        durable::remove_all_durable(std::slice::from_ref(&marker))
            .map_err(|e| StoreError::io(&marker, &e))?;
        let changed = finished.touched.len();
        Ok(Committed {
            generation,
            changed,
            warnings: finished.warnings,
            state: finished.state,
        })
    }
}
