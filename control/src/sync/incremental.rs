//! The incremental read of a sync: the state directory's change log names the objects touched
//! since the state the syncer holds, and only their files are read and applied to that state,
//! in place (no reload of every file, no copy of the whole state).
//!
//! Invariants:
//! - Everything is read under the shared lock, so whole transactions only.
//! - An object file that cannot be read keeps its last good version in the state and is
//!   reported (as a [`Problem`] until a later read of it succeeds, and under the
//!   `object_file` reason in [`InputHealth`]).
//! - When the log cannot serve the read (missing, starting after the held generation, or
//!   damaged: a [`crate::store::changelog::ChangeLogError`], reported under `change_log`), the
//!   answer is [`Delta::Reload`] and the caller loads the whole directory; the state held is
//!   left untouched.

use std::collections::BTreeMap;

use super::input_health::{self, InputHealth};
use super::trigger::TriggerTimes;
use crate::compile::Problem;
use crate::model::ObjectRef;
use crate::state::ClusterState;
use crate::store::changelog::{LogCursor, LogRead};
use crate::store::{StateDir, StoreError};

/// What a read did to the state.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Delta {
    /// These objects were re-read and applied (none when nothing changed).
    Applied(Vec<ObjectRef>),
    /// The change log cannot serve this read: load everything.
    Reload,
}

/// Where the last read stopped and which object files are unreadable.
#[derive(Debug, Default)]
pub(super) struct IncrementalReader {
    cursor: Option<LogCursor>,
    unreadable: BTreeMap<ObjectRef, Problem>,
}

impl IncrementalReader {
    /// Forgets the cursor and the unreadable files (after a full load, which reports its own).
    pub(super) fn reset(&mut self) {
        self.cursor = None;
        self.unreadable.clear();
    }

    /// The object files currently kept at their last good version.
    pub(super) fn problems(&self) -> impl Iterator<Item = &Problem> {
        self.unreadable.values()
    }

    /// Applies the changes since `state`'s generation to `state`.
    pub(super) fn read(
        &mut self,
        dir: &StateDir,
        state: &mut ClusterState,
        health: &mut InputHealth,
        triggers: &mut TriggerTimes,
    ) -> Result<Delta, StoreError> {
        let _lock = dir.lock_shared()?;
        let settings = dir.read_settings()?;
        let generation = dir.read_generation()?;
        if generation == state.generation() {
            state.set_settings(settings);
            return Ok(Delta::Applied(Vec::new()));
        }
        let log = dir.change_log();
        let keys = match log.read_since(state.generation(), generation, self.cursor.as_ref()) {
            Ok(LogRead::Changes(keys, cursor)) => {
                self.cursor = Some(cursor);
                keys
            }
            Ok(LogRead::Behind { .. }) => {
                self.cursor = None;
                return Ok(Delta::Reload);
            }
            Err(error) => {
                self.cursor = None;
                health.record(input_health::CHANGE_LOG, error.to_string());
                return Ok(Delta::Reload);
            }
        };
        let mut clean = true;
        for key in &keys {
            match dir.read_object_by_key(key) {
                Ok(Some(object)) => {
                    triggers.note(&object);
                    state.insert(object);
                    self.unreadable.remove(key);
                }
                Ok(None) => {
                    state.remove(key);
                    self.unreadable.remove(key);
                }
                Err(error) => {
                    clean = false;
                    health.record(input_health::OBJECT_FILE, error.to_string());
                    let what = if state.object(key).is_some() {
                        "keeping the last good version"
                    } else {
                        "skipped"
                    };
                    self.unreadable.insert(
                        key.clone(),
                        Problem::new(key.to_string(), format!("{}; {what}", error.message)),
                    );
                }
            }
        }
        if clean {
            health.clean_read();
        }
        state.set_generation(generation);
        state.set_settings(settings);
        Ok(Delta::Applied(keys))
    }
}
