//! [`ClusterState`]: every stored object plus the cluster settings, as one consistent snapshot
//! with typed getters. This is what the dataplane compiler reads.
//!
//! Invariants: objects are keyed by their [`ObjectRef`] (kind, namespace, name) in one ordered
//! map, so the objects of a kind, or of a kind in one namespace, are contiguous ranges; a state
//! loaded from disk was read under the shared lock, so it reflects whole transactions only;
//! the pods-by-node index names exactly the stored Pods bound to each node (kept by
//! [`ClusterState::insert`] and [`ClusterState::remove`], the only ways in and out), so a
//! node's pods are found without a scan of every Pod.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;

use crate::model::{Kind, Object, ObjectRef, StoredKind};
use crate::settings::ClusterSettings;
use crate::store::{StateDir, StoreError};

/// Label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A snapshot of the cluster.
#[derive(Clone, Debug, Default)]
pub struct ClusterState {
    settings: ClusterSettings,
    generation: u64,
    objects: BTreeMap<ObjectRef, Object>,
    /// `spec.nodeName` -> the Pods bound to it.
    pods_by_node: BTreeMap<String, BTreeSet<ObjectRef>>,
    /// Set to a fresh process-wide number by every insert or removal of a Service, so per-sync
    /// consumers of the Services (the health-check listeners) skip the walk of every Service
    /// when none changed: two states share a version only if one is a copy of the other with
    /// the same Services (or neither has any).
    services_version: u64,
    problems: Vec<String>,
}

/// A number no state used before ([`ClusterState::services_version`]).
fn next_services_version() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The node a stored Pod object is bound to.
fn bound_node(object: &Object) -> Option<&str> {
    Pod::from_object(object).and_then(crate::model::pod::node_name)
}

impl ClusterState {
    /// An empty cluster with these settings (generation 0), for building state in memory.
    pub fn new(settings: ClusterSettings) -> ClusterState {
        ClusterState {
            settings,
            ..ClusterState::default()
        }
    }

    /// Loads the state directory under its shared lock. A directory that does not exist yet is
    /// an empty cluster with default settings. Unreadable object files are skipped and listed in
    /// [`ClusterState::problems`].
    pub fn load(dir: impl AsRef<Path>) -> Result<ClusterState, StoreError> {
        let dir = StateDir::new(dir.as_ref());
        let _lock = dir.lock_shared()?;
        ClusterState::read_locked(&dir)
    }

    /// Like [`ClusterState::load`], and also returns the unreadable object files with their
    /// paths (so a caller can keep the last good version of each).
    pub fn load_with_unreadable(
        dir: impl AsRef<Path>,
    ) -> Result<(ClusterState, Vec<StoreError>), StoreError> {
        let dir = StateDir::new(dir.as_ref());
        let _lock = dir.lock_shared()?;
        ClusterState::read_locked_with_unreadable(&dir)
    }

    /// Loads while the caller already holds a lock on `dir`.
    pub(crate) fn read_locked(dir: &StateDir) -> Result<ClusterState, StoreError> {
        ClusterState::read_locked_with_unreadable(dir).map(|(state, _)| state)
    }

    fn read_locked_with_unreadable(
        dir: &StateDir,
    ) -> Result<(ClusterState, Vec<StoreError>), StoreError> {
        let mut state = ClusterState::new(dir.read_settings()?);
        state.generation = dir.read_generation()?;
        let (objects, problems) = dir.read_objects()?;
        state.problems = problems.iter().map(ToString::to_string).collect();
        for object in objects {
            state.insert(object);
        }
        Ok((state, problems))
    }

    pub fn settings(&self) -> &ClusterSettings {
        &self.settings
    }

    /// Tests change settings under a live state (e.g. an allow-list that shrank).
    #[cfg(test)]
    pub(crate) fn settings_mut(&mut self) -> &mut ClusterSettings {
        &mut self.settings
    }

    /// The change counter this snapshot was taken at (see `store::StateDir::read_generation`
    /// to poll for a newer one without loading).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Object files that could not be read, one message each.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    pub fn object(&self, key: &ObjectRef) -> Option<&Object> {
        self.objects.get(key)
    }

    /// All objects of one kind, ordered by namespace then name.
    pub fn objects_of(&self, kind: Kind) -> impl Iterator<Item = &Object> {
        self.objects
            .range(ObjectRef::new(kind, "", "")..)
            .take_while(move |(key, _)| key.kind == kind)
            .map(|(_, object)| object)
    }

    /// All objects of one kind in one namespace, ordered by name.
    pub fn objects_in(&self, kind: Kind, namespace: &str) -> impl Iterator<Item = &Object> {
        let start = ObjectRef::new(kind, namespace, "");
        let namespace = start.namespace.clone();
        self.objects
            .range(start..)
            .take_while(move |(key, _)| key.kind == kind && key.namespace == namespace)
            .map(|(_, object)| object)
    }

    /// A typed object by namespace (ignored for cluster-scoped kinds) and name.
    pub fn get<T: StoredKind>(&self, namespace: &str, name: &str) -> Option<&T> {
        self.objects
            .get(&ObjectRef::new(T::KIND, namespace, name))
            .and_then(T::from_object)
    }

    /// Every object of a type.
    pub fn list<'a, T: StoredKind + 'a>(&'a self) -> impl Iterator<Item = &'a T> {
        self.objects_of(T::KIND).filter_map(T::from_object)
    }

    /// Every object of a type in one namespace.
    pub fn list_in<'a, T: StoredKind + 'a>(
        &'a self,
        namespace: &str,
    ) -> impl Iterator<Item = &'a T> {
        self.objects_in(T::KIND, namespace)
            .filter_map(T::from_object)
    }

    pub fn namespaces(&self) -> impl Iterator<Item = &Namespace> {
        self.list()
    }

    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.list()
    }

    pub fn pods(&self) -> impl Iterator<Item = &Pod> {
        self.list()
    }

    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.list()
    }

    pub fn endpoints(&self) -> impl Iterator<Item = &Endpoints> {
        self.list()
    }

    pub fn endpoint_slices(&self) -> impl Iterator<Item = &EndpointSlice> {
        self.list()
    }

    pub fn network_policies(&self) -> impl Iterator<Item = &NetworkPolicy> {
        self.list()
    }

    pub fn namespace(&self, name: &str) -> Option<&Namespace> {
        self.get("", name)
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.get("", name)
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<&Pod> {
        self.get(namespace, name)
    }

    pub fn service(&self, namespace: &str, name: &str) -> Option<&Service> {
        self.get(namespace, name)
    }

    /// The EndpointSlices of a Service (by the `kubernetes.io/service-name` label), whoever
    /// manages them.
    pub fn endpoint_slices_of<'a>(
        &'a self,
        namespace: &str,
        service: &'a str,
    ) -> impl Iterator<Item = &'a EndpointSlice> {
        self.list_in::<EndpointSlice>(namespace)
            .filter(move |slice| {
                slice
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(SERVICE_NAME_LABEL))
                    .is_some_and(|name| name == service)
            })
    }

    /// The Pods bound to `node` (`spec.nodeName`), ordered by namespace then name.
    pub fn pods_on_node<'a>(&'a self, node: &str) -> impl Iterator<Item = &'a Pod> {
        self.pods_by_node
            .get(node)
            .into_iter()
            .flatten()
            .filter_map(|key| self.objects.get(key).and_then(Pod::from_object))
    }

    /// Whether the namespace carries the seed's DefaultDeny ingress annotation.
    pub fn default_deny_ingress(&self, namespace: &str) -> bool {
        self.namespace(namespace)
            .is_some_and(crate::model::namespace::default_deny_ingress)
    }

    /// Stores an object under its own key, returning the one it replaces.
    pub fn insert(&mut self, object: Object) -> Option<Object> {
        let key = object.object_ref();
        if key.kind == Kind::Service {
            self.services_version = next_services_version();
        }
        let new_node = bound_node(&object).map(str::to_owned);
        if let Some(node) = &new_node {
            self.pods_by_node
                .entry(node.clone())
                .or_default()
                .insert(key.clone());
        }
        let old = self.objects.insert(key, object);
        if let Some(old) = &old {
            self.unindex_moved(old, new_node.as_deref());
        }
        old
    }

    /// Changes whenever a Service is inserted, replaced or removed (never otherwise); unique
    /// across states (see the field).
    pub fn services_version(&self) -> u64 {
        self.services_version
    }

    pub fn remove(&mut self, key: &ObjectRef) -> Option<Object> {
        let old = self.objects.remove(key)?;
        if key.kind == Kind::Service {
            self.services_version = next_services_version();
        }
        self.unindex_moved(&old, None);
        Some(old)
    }

    /// Drops `old` (a Pod replaced or removed) from its node's index entry unless it stays on
    /// that node (`now_on`).
    fn unindex_moved(&mut self, old: &Object, now_on: Option<&str>) {
        let Some(node) = bound_node(old).filter(|&node| Some(node) != now_on) else {
            return;
        };
        if let Some(pods) = self.pods_by_node.get_mut(node) {
            pods.remove(&old.object_ref());
            if pods.is_empty() {
                self.pods_by_node.remove(node);
            }
        }
    }

    pub fn set_generation(&mut self, generation: u64) {
        self.generation = generation;
    }

    /// For sources that keep one state and change it in place (change log, watch events).
    pub fn set_settings(&mut self, settings: ClusterSettings) {
        self.settings = settings;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(namespace: &str, name: &str, node: Option<&str>) -> Object {
        let spec = node.map_or(
            serde_json::json!({}),
            |n| serde_json::json!({"nodeName": n}),
        );
        let json = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"namespace": namespace, "name": name},
            "spec": spec,
        });
        Object::from_json_slice(Kind::Pod, json.to_string().as_bytes()).unwrap()
    }

    fn names_on(state: &ClusterState, node: &str) -> Vec<String> {
        state
            .pods_on_node(node)
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect()
    }

    #[test]
    fn pods_by_node_follows_binding_moves_and_removals() {
        let mut state = ClusterState::default();
        state.insert(pod("b", "web", Some("n1")));
        state.insert(pod("a", "db", Some("n1")));
        state.insert(pod("a", "pending", None));
        state.insert(pod("a", "other", Some("n2")));
        assert_eq!(
            names_on(&state, "n1"),
            ["db", "web"],
            "namespace/name order"
        );
        // Bound later (the scheduler), then moved, then deleted.
        state.insert(pod("a", "pending", Some("n2")));
        assert_eq!(names_on(&state, "n2"), ["other", "pending"]);
        state.insert(pod("b", "web", Some("n2")));
        assert_eq!(names_on(&state, "n1"), ["db"]);
        assert_eq!(names_on(&state, "n2"), ["other", "pending", "web"]);
        state.insert(pod("a", "db", Some("n1")));
        assert_eq!(
            names_on(&state, "n1"),
            ["db"],
            "a re-insert on the same node"
        );
        state.remove(&ObjectRef::new(Kind::Pod, "a", "db"));
        assert!(names_on(&state, "n1").is_empty());
        assert!(
            !state.pods_by_node.contains_key("n1"),
            "empty entries are dropped"
        );
        state.insert(pod("a", "other", None));
        assert_eq!(names_on(&state, "n2"), ["pending", "web"]);
    }
}
