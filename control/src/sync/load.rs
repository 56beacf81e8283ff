//! Loading the state for a sync: object files that cannot be read keep their last good
//! version, and the objects that differ from the last good state are listed for the
//! incremental compiler.
//!
//! Invariants: an unreadable file never removes or changes an object that was programmed
//! before (user-needs B8: a half-broken store keeps the rest working); at the first load
//! (no last good state) an unreadable file is an error, never skipped: skipping a
//! NetworkPolicy would open what it isolates (fail closed); the change list names
//! every object added, removed or modified between the two states, so
//! [`crate::compile::Compiler::update`] sees all of them.

use std::cmp::Ordering;
use std::path::Path;

use crate::compile::Problem;
use crate::model::{Kind, Object, ObjectRef};
use crate::state::ClusterState;
use crate::store::{StateDir, StoreError};

/// The object an object file path stands for: `objects/<plural>/[<namespace>/]<name>.json`.
fn object_of_path(dir: &StateDir, path: &Path) -> Option<ObjectRef> {
    let relative = path.strip_prefix(dir.root().join("objects")).ok()?;
    let parts: Vec<&str> = relative.iter().filter_map(|p| p.to_str()).collect();
    let kind = Kind::ALL
        .into_iter()
        .find(|k| Some(&k.plural()) == parts.first())?;
    let (namespace, file) = match (kind.is_namespaced(), parts.as_slice()) {
        (true, [_, namespace, file]) => (*namespace, *file),
        (false, [_, file]) => ("", *file),
        _ => return None,
    };
    Some(ObjectRef::new(kind, namespace, file.strip_suffix(".json")?))
}

/// Loads the state; unreadable object files are replaced by their version in `last_good`
/// (when it has one) and reported. Without a last good state (the first load), an unreadable
/// object file is an error naming it.
pub(super) fn load(
    dir: &StateDir,
    last_good: Option<&ClusterState>,
) -> Result<(ClusterState, Vec<Problem>), StoreError> {
    let (mut state, unreadable) = ClusterState::load_with_unreadable(dir.root())?;
    if last_good.is_none()
        && let Some(first) = unreadable.first()
    {
        return Err(StoreError {
            path: first.path.clone(),
            message: format!(
                "{}; not starting without it (a skipped NetworkPolicy would open what it \
                 isolates): fix or delete the file{}",
                first.message,
                match unreadable.len() {
                    1 => String::new(),
                    n => format!(" ({} more unreadable files)", n - 1),
                }
            ),
        });
    }
    let mut problems = Vec::new();
    for error in unreadable {
        let key = object_of_path(dir, &error.path);
        let previous = key
            .as_ref()
            .and_then(|k| last_good.and_then(|s| s.object(k)));
        let object = key
            .as_ref()
            .map_or_else(|| error.path.display().to_string(), ToString::to_string);
        match previous {
            Some(previous) => {
                state.insert(previous.clone());
                problems.push(Problem::new(
                    object,
                    format!("{}; keeping the last good version", error.message),
                ));
            }
            None => problems.push(Problem::new(object, format!("{}; skipped", error.message))),
        }
    }
    Ok((state, problems))
}

/// `(namespace, name)` of an object, borrowed, ordered as the state orders its keys.
fn sort_key(object: &Object) -> (&str, &str) {
    let meta = object.metadata();
    let namespace = if object.kind().is_namespaced() {
        meta.namespace.as_deref().unwrap_or_default()
    } else {
        ""
    };
    (namespace, meta.name.as_deref().unwrap_or_default())
}

/// Whether two versions of one object differ: by resourceVersion when both have one,
/// otherwise by content.
fn differs(old: &Object, new: &Object) -> bool {
    let version = |o: &Object| {
        o.metadata()
            .resource_version
            .clone()
            .filter(|v| !v.is_empty())
    };
    match (version(old), version(new)) {
        (Some(a), Some(b)) => a != b,
        _ => old != new,
    }
}

/// The keys of the objects added, removed or modified from `old` to `new`.
pub(super) fn changed_objects(old: &ClusterState, new: &ClusterState) -> Vec<ObjectRef> {
    let mut changed = Vec::new();
    for kind in Kind::ALL {
        let mut before = old.objects_of(kind).peekable();
        let mut after = new.objects_of(kind).peekable();
        loop {
            let order = match (before.peek(), after.peek()) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(a), Some(b)) => sort_key(a).cmp(&sort_key(b)),
            };
            let (gone, came) = match order {
                Ordering::Less => (before.next(), None),
                Ordering::Greater => (None, after.next()),
                Ordering::Equal => (before.next(), after.next()),
            };
            match (gone, came) {
                (Some(a), Some(b)) if !differs(a, b) => {}
                (Some(object), _) | (None, Some(object)) => changed.push(object.object_ref()),
                (None, None) => break,
            }
        }
    }
    changed
}
