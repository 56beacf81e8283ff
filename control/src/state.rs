//! [`ClusterState`]: every stored object plus the cluster settings, as one consistent snapshot
//! with typed getters. This is what the dataplane compiler reads.
//!
//! Invariants: objects are keyed by their [`ObjectRef`] (kind, namespace, name) in one ordered
//! map, so the objects of a kind, or of a kind in one namespace, are contiguous ranges; a state
//! loaded from disk was read under the shared lock, so it reflects whole transactions only.

use std::collections::BTreeMap;
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
    problems: Vec<String>,
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

    /// Whether the namespace carries the seed's DefaultDeny ingress annotation.
    pub fn default_deny_ingress(&self, namespace: &str) -> bool {
        self.namespace(namespace)
            .is_some_and(crate::model::namespace::default_deny_ingress)
    }

    /// Stores an object under its own key, returning the one it replaces.
    pub fn insert(&mut self, object: Object) -> Option<Object> {
        self.objects.insert(object.object_ref(), object)
    }

    pub fn remove(&mut self, key: &ObjectRef) -> Option<Object> {
        self.objects.remove(key)
    }

    pub fn set_generation(&mut self, generation: u64) {
        self.generation = generation;
    }

    /// For sources that keep one state and change it in place (change log, watch events).
    pub fn set_settings(&mut self, settings: ClusterSettings) {
        self.settings = settings;
    }
}
