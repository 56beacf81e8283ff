//! The embedded API server's write path over an in-memory [`ClusterState`]: admission
//! (validate, default, assign) of each applied object, deletion, and the controllers that react,
//! all synchronously. It does no I/O: [`crate::transaction`] loads the state under the lock,
//! drives an `ApiServer` and writes back what it touched; benchmarks and tests drive one
//! directly in memory.
//!
//! Invariants: a rejected object changes nothing; every object written in one `ApiServer`
//! session gets the same resourceVersion, the generation the session commits as; derived objects
//! (Endpoints, EndpointSlices) are brought up to date for every Service a change may affect
//! before [`ApiServer::finish`] returns.

mod alloc;
mod endpoints;
mod external_ips;
mod holdings;
mod meta;
mod namespace;
mod node;
mod pod;
mod policy;
mod service;
mod service_alloc;
pub mod service_cidr;
mod service_ips;
mod service_warnings;
mod topology;

use std::collections::BTreeSet;
use std::fmt;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use std::collections::BTreeMap;

use holdings::Holdings;

use crate::controllers::{Index, index::services_selecting, reconcile_service};
use crate::model::labels::Labels;
use crate::model::{Kind, Object, ObjectRef, StoredKind};
use crate::state::{ClusterState, SERVICE_NAME_LABEL};
use crate::validate::FieldError;

pub use namespace::{NAME_LABEL as NAMESPACE_NAME_LABEL, SYSTEM_NAMESPACES};
pub use service::EXTERNAL_TRAFFIC_ANNOTATION;

/// What an accepted apply did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Configured,
    Unchanged,
}

impl Outcome {
    /// The word kubectl prints (`service/store-be created`).
    pub fn verb(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Configured => "configured",
            Outcome::Unchanged => "unchanged",
        }
    }
}

/// An accepted object as stored.
#[derive(Clone, Debug)]
pub struct Applied {
    pub object: Object,
    pub outcome: Outcome,
}

/// A refused apply or delete: which object and which field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub object: ObjectRef,
    pub error: FieldError,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.object.name.is_empty() {
            write!(f, "{} (unnamed): {}", self.object.kind, self.error)
        } else {
            write!(f, "{}: {}", self.object, self.error)
        }
    }
}

/// One write session over a cluster state.
pub struct ApiServer {
    state: ClusterState,
    now: Time,
    resource_version: String,
    touched: BTreeSet<ObjectRef>,
    dirty_services: BTreeSet<ObjectRef>,
    /// Label sets (before and after) of changed pods, by namespace: the Services selecting
    /// any of them are reconciled at the end of the session.
    changed_pods: BTreeMap<String, Vec<Option<Labels>>>,
    holdings: Holdings,
    warnings: Vec<String>,
}

/// What a finished session leaves: the new state and the keys whose objects were written or
/// removed.
pub struct Finished {
    pub state: ClusterState,
    pub touched: BTreeSet<ObjectRef>,
    pub warnings: Vec<String>,
}

impl ApiServer {
    /// Starts a session; objects written get resourceVersion `state.generation() + 1`.
    /// `now` stamps created objects.
    pub fn new(state: ClusterState, now: jiff::Timestamp) -> ApiServer {
        let whole_seconds = jiff::Timestamp::from_second(now.as_second()).unwrap_or(now);
        let resource_version = (state.generation() + 1).to_string();
        let holdings = Holdings::build(&state);
        ApiServer {
            state,
            now: Time(whole_seconds),
            resource_version,
            touched: BTreeSet::new(),
            dirty_services: BTreeSet::new(),
            changed_pods: BTreeMap::new(),
            holdings,
            warnings: Vec::new(),
        }
    }

    pub fn state(&self) -> &ClusterState {
        &self.state
    }

    /// Validates, defaults and assigns like the API server, stores the object and runs the
    /// controllers it triggers. `namespace` is the command line's `-n`, if any.
    pub fn apply(
        &mut self,
        mut object: Object,
        namespace: Option<&str>,
    ) -> Result<Applied, Rejection> {
        let key = meta::prepare(&mut object, namespace)
            .map_err(|(object, error)| Rejection { object, error })?;
        let existing = self.state.object(&key).cloned();
        self.admit(&mut object, existing.as_ref(), &key)
            .map_err(|error| Rejection {
                object: key.clone(),
                error,
            })?;
        meta::set_identity(
            object.metadata_mut(),
            existing.as_ref().map(Object::metadata),
            &self.now,
        );
        if existing.as_ref() == Some(&object) {
            return Ok(Applied {
                object,
                outcome: Outcome::Unchanged,
            });
        }
        let outcome = if existing.is_some() {
            Outcome::Configured
        } else {
            Outcome::Created
        };
        object.metadata_mut().resource_version = Some(self.resource_version.clone());
        if let Object::Service(service) = &object {
            let warnings = service_warnings::warnings(service, self.state.settings());
            self.warnings
                .extend(warnings.into_iter().map(|w| format!("{key}: {w}")));
        }
        self.put(object.clone());
        self.after_change(&key, existing.as_ref(), Some(&object));
        Ok(Applied { object, outcome })
    }

    fn admit(
        &self,
        object: &mut Object,
        existing: Option<&Object>,
        key: &ObjectRef,
    ) -> Result<(), FieldError> {
        let state = &self.state;
        let holdings = &self.holdings;
        match (object, existing) {
            (Object::Service(new), old) => {
                let old = old.and_then(|o| match o {
                    Object::Service(s) => Some(s.as_ref()),
                    _ => None,
                });
                service::validate_and_default(new)?;
                topology::admit_service(new)?;
                external_ips::admit(new, old, state)?;
                let ranges = service_cidr::ranges(state);
                let ctx = service_alloc::Allocating {
                    settings: state.settings(),
                    service_cidrs: &ranges,
                    holdings,
                    key,
                };
                service_alloc::allocate(new, old, &ctx)
            }
            (Object::Pod(new), old) => {
                let old = old.and_then(|o| match o {
                    Object::Pod(p) => Some(p.as_ref()),
                    _ => None,
                });
                pod::admit(new, old, state, holdings, key)
            }
            (Object::Node(new), old) => {
                let old = old.and_then(|o| match o {
                    Object::Node(n) => Some(n.as_ref()),
                    _ => None,
                });
                node::admit(new, old, state)
            }
            (Object::Namespace(new), _) => namespace::admit(new),
            (Object::NetworkPolicy(new), _) => policy::admit(new),
            (Object::Endpoints(new), _) => endpoints::admit_endpoints(new, state),
            (Object::ServiceCIDR(new), old) => {
                let old = old.and_then(|o| match o {
                    Object::ServiceCIDR(c) => Some(c.as_ref()),
                    _ => None,
                });
                service_cidr::admit(new, old, state)
            }
            (Object::EndpointSlice(new), _) => {
                endpoints::admit_endpoint_slice(new)?;
                topology::admit_slice_hints(new, state)
            }
        }
    }

    /// Deletes an object (a Namespace with everything in it) and runs the controllers the
    /// deletion triggers; returns the deleted object.
    pub fn delete(&mut self, key: &ObjectRef) -> Result<Object, Rejection> {
        let reject = |message: String| Rejection {
            object: key.clone(),
            error: FieldError::new("", message),
        };
        let Some(existing) = self.state.object(key).cloned() else {
            return Err(reject("not found".to_owned()));
        };
        if let Object::ServiceCIDR(range) = &existing {
            service_cidr::check_delete(range, &self.state).map_err(reject)?;
        }
        if key.kind == Kind::Namespace {
            if SYSTEM_NAMESPACES.contains(&key.name.as_str()) {
                return Err(reject(format!(
                    "namespace {:?} is a system namespace and may not be deleted",
                    key.name
                )));
            }
            let contents: Vec<ObjectRef> = Kind::ALL
                .into_iter()
                .filter(|kind| kind.is_namespaced())
                .flat_map(|kind| {
                    self.state
                        .objects_in(kind, &key.name)
                        .map(Object::object_ref)
                        .collect::<Vec<_>>()
                })
                .collect();
            for inner in contents {
                self.remove_with_effects(&inner);
            }
        }
        self.remove_with_effects(key);
        Ok(existing)
    }

    fn remove_with_effects(&mut self, key: &ObjectRef) {
        if let Some(old) = self.remove(key) {
            self.after_change(key, Some(&old), None);
        }
    }

    /// Re-runs every controller over the whole state: after a crash left a commit half-written.
    pub fn reconcile_everything(&mut self) {
        self.assign_pending_pods(None);
        let services: Vec<ObjectRef> = self
            .state
            .objects_of(Kind::Service)
            .map(Object::object_ref)
            .collect();
        self.dirty_services.extend(services);
    }

    /// Brings the derived objects of every affected Service up to date and ends the session.
    pub fn finish(mut self) -> Finished {
        let woken = services_selecting(&self.state, &self.changed_pods);
        self.dirty_services.extend(woken);
        let reconciled: Vec<_> = {
            let index = Index::build(&self.state);
            self.dirty_services
                .iter()
                .map(|key| reconcile_service(&self.state, &index, key))
                .collect()
        };
        for change in reconciled {
            for object in change.desired {
                self.put_derived(object);
            }
            for obsolete in change.obsolete {
                self.remove(&obsolete);
            }
        }
        if !self.touched.is_empty() {
            self.state.set_generation(self.state.generation() + 1);
        }
        Finished {
            state: self.state,
            touched: self.touched,
            warnings: self.warnings,
        }
    }

    /// Stores an object; the only way objects enter the session's state.
    fn put(&mut self, object: Object) {
        let key = object.object_ref();
        if let Some(old) = self.state.object(&key) {
            self.holdings.remove(old);
        }
        self.holdings.add(&object);
        self.touched.insert(key);
        self.state.insert(object);
    }

    /// Removes an object; the only way objects leave the session's state.
    fn remove(&mut self, key: &ObjectRef) -> Option<Object> {
        let old = self.state.remove(key)?;
        self.touched.insert(key.clone());
        self.holdings.remove(&old);
        Some(old)
    }

    /// Writes a controller-built object unless the stored one already has that content.
    fn put_derived(&mut self, mut object: Object) {
        let existing = self
            .state
            .object(&object.object_ref())
            .map(|o| o.metadata().clone());
        meta::set_identity(object.metadata_mut(), existing.as_ref(), &self.now);
        if self.state.object(&object.object_ref()) == Some(&object) {
            return;
        }
        object.metadata_mut().resource_version = Some(self.resource_version.clone());
        self.put(object);
    }

    /// The controllers a change to `key` wakes up.
    fn after_change(&mut self, key: &ObjectRef, old: Option<&Object>, new: Option<&Object>) {
        match key.kind {
            Kind::Service => {
                self.dirty_services.insert(ObjectRef::new(
                    Kind::Service,
                    &key.namespace,
                    &key.name,
                ));
            }
            Kind::Pod => {
                for object in [old, new].into_iter().flatten() {
                    if let Object::Pod(pod) = object {
                        self.mark_services_selecting(pod);
                    }
                }
            }
            Kind::Node if new.is_some() => {
                if node_zone(old) != node_zone(new) {
                    // Endpoint zones (and their hints) follow the Node's zone label.
                    let services: Vec<ObjectRef> = self
                        .state
                        .objects_of(Kind::Service)
                        .map(Object::object_ref)
                        .collect();
                    self.dirty_services.extend(services);
                }
                self.assign_pending_pods(Some(&key.name));
            }
            Kind::Endpoints => {
                self.dirty_services.insert(ObjectRef::new(
                    Kind::Service,
                    &key.namespace,
                    &key.name,
                ));
            }
            Kind::EndpointSlice => {
                let labels = old.or(new).and_then(|o| o.metadata().labels.as_ref());
                if let Some(service) = labels.and_then(|l| l.get(SERVICE_NAME_LABEL)) {
                    self.dirty_services.insert(ObjectRef::new(
                        Kind::Service,
                        &key.namespace,
                        service,
                    ));
                }
            }
            Kind::Node | Kind::Namespace | Kind::NetworkPolicy | Kind::ServiceCIDR => {}
        }
    }

    fn mark_services_selecting(&mut self, pod: &Pod) {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        self.changed_pods
            .entry(namespace)
            .or_default()
            .push(pod.metadata.labels.clone());
    }

    /// Gives addresses to bound pods still waiting for one (on `node`, or on any node).
    fn assign_pending_pods(&mut self, node: Option<&str>) {
        let waiting: Vec<Pod> = self
            .state
            .pods()
            .filter(|p| crate::model::pod::pod_ip(p).is_none())
            .filter(|p| node.is_none_or(|n| crate::model::pod::node_name(p) == Some(n)))
            .cloned()
            .collect();
        for mut waiting_pod in waiting {
            let key = waiting_pod.clone().into_object().object_ref();
            match pod::assign_ip(&mut waiting_pod, &self.state, &self.holdings, &key) {
                Ok(true) => {
                    waiting_pod.metadata.resource_version = Some(self.resource_version.clone());
                    self.mark_services_selecting(&waiting_pod);
                    self.put(waiting_pod.into_object());
                }
                Ok(false) => {}
                Err(message) => self
                    .warnings
                    .push(format!("{key}: status.podIP: {message}")),
            }
        }
    }
}

/// The zone label of a Node object.
fn node_zone(object: Option<&Object>) -> Option<&String> {
    match object? {
        Object::Node(node) => node
            .metadata
            .labels
            .as_ref()?
            .get(crate::controllers::ZONE_LABEL),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_dual_stack;
#[cfg(test)]
mod tests_dual_stack_nodes;
#[cfg(test)]
mod tests_external_ips;
