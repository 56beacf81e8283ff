//! The per-event feed of an incremental source ([`super::KubeSource::connect_incremental`]):
//! the watcher thread pushes what each watch event did, the sync loop takes the queue and
//! applies it to the one [`ClusterState`] it keeps ([`apply_changes`]), so a sync costs the
//! events since the last one, never a copy of every object.
//!
//! Invariants:
//! - Events of one kind are queued in the order the watch delivered them; a re-list arrives
//!   as one [`WatchChange::Relisted`] with the whole list, queued at `InitDone` (never a half
//!   list), and replaces that kind's objects in one step.
//! - An event is queued before the generation that counts it is bumped, so a sync that read
//!   the generation and then took the queue has everything that generation counts.
//! - [`apply_changes`] drops an update whose resourceVersion is older than the stored one's
//!   (an out-of-order event), reporting it under `out_of_order_event`; the object keeps its
//!   newer version.

use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};

use crate::model::{Kind, Object, ObjectRef};
use crate::state::ClusterState;
use crate::sync::input_health::{self, InputHealth};
use crate::sync::trigger::TriggerTimes;

/// What one watch event did.
#[derive(Clone, Debug, PartialEq)]
pub enum WatchChange {
    /// An object was added or modified.
    Applied(Object),
    /// An object was deleted.
    Deleted(ObjectRef),
    /// A (re-)list of a kind completed: these are all its objects now.
    Relisted(Kind, Vec<Object>),
}

/// Changes queued by the watcher thread, taken by the sync loop.
#[derive(Debug, Default)]
pub struct ChangeQueue {
    changes: Mutex<Vec<WatchChange>>,
}

impl ChangeQueue {
    pub fn push(&self, change: WatchChange) {
        self.changes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(change);
    }

    /// Everything queued so far, in order.
    pub fn take(&self) -> Vec<WatchChange> {
        std::mem::take(&mut *self.changes.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// A resourceVersion as a number, when it is one (etcd revisions are; the API calls them
/// opaque, so anything else is never compared).
fn version(object: &Object) -> Option<u64> {
    object.metadata().resource_version.as_deref()?.parse().ok()
}

/// Applies `changes` to `state`; returns the keys of the objects that changed (each once).
pub fn apply_changes(
    state: &mut ClusterState,
    changes: Vec<WatchChange>,
    health: &mut InputHealth,
    triggers: &mut TriggerTimes,
) -> Vec<ObjectRef> {
    let mut changed = BTreeSet::new();
    for change in changes {
        match change {
            WatchChange::Applied(object) => {
                let key = object.object_ref();
                let stored = state.object(&key).and_then(version);
                if let (Some(stored), Some(incoming)) = (stored, version(&object))
                    && incoming < stored
                {
                    health.record(
                        input_health::OUT_OF_ORDER,
                        format!(
                            "watch event for {key}: resourceVersion {incoming} after {stored}; \
                             ignored, keeping the newer version"
                        ),
                    );
                    continue;
                }
                triggers.note(&object);
                state.insert(object);
                changed.insert(key);
            }
            WatchChange::Deleted(key) => {
                if state.remove(&key).is_some() {
                    changed.insert(key);
                }
            }
            WatchChange::Relisted(kind, objects) => {
                let listed: BTreeSet<ObjectRef> = objects.iter().map(Object::object_ref).collect();
                let gone: Vec<ObjectRef> = state
                    .objects_of(kind)
                    .map(Object::object_ref)
                    .filter(|key| !listed.contains(key))
                    .collect();
                for key in gone {
                    state.remove(&key);
                    changed.insert(key);
                }
                for object in objects {
                    let key = object.object_ref();
                    if state.object(&key) != Some(&object) {
                        triggers.note(&object);
                        state.insert(object);
                        changed.insert(key);
                    }
                }
            }
        }
    }
    changed.into_iter().collect()
}

#[cfg(test)]
#[path = "changes_tests.rs"]
mod tests;
