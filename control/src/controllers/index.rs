//! Lookups the endpoints controllers make for every Service they reconcile, built once per
//! session so a session touching S Services over P pods costs about S + P, not S × P.
//!
//! Invariants: the index borrows the state it was built from, so it cannot outlive a change;
//! a pod is listed under every one of its labels, and a pod an equality selector selects
//! always carries the selector's first pair, so searching that pair's list finds all of them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::{node_zones, service_selects_pods, slices};
use crate::model::labels::{self, Labels};
use crate::model::{Kind, ObjectRef};
use crate::state::{ClusterState, SERVICE_NAME_LABEL};

type LabelKey<'a> = (&'a str, &'a str, &'a str);

/// Pods by label, slices by Service, node zones.
pub struct Index<'a> {
    pods_by_label: HashMap<LabelKey<'a>, Vec<&'a Pod>>,
    managed_slices: HashMap<(&'a str, &'a str), Vec<&'a EndpointSlice>>,
    foreign_slice_names: HashMap<&'a str, BTreeSet<String>>,
    zones: HashMap<String, String>,
}

fn namespace_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or_default()
}

impl<'a> Index<'a> {
    pub fn build(state: &'a ClusterState) -> Index<'a> {
        let mut pods_by_label: HashMap<LabelKey<'a>, Vec<&'a Pod>> = HashMap::new();
        for pod in state.pods() {
            let namespace = namespace_of(&pod.metadata);
            for (key, value) in pod.metadata.labels.iter().flatten() {
                pods_by_label
                    .entry((namespace, key, value))
                    .or_default()
                    .push(pod);
            }
        }
        let mut managed_slices: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
        let mut foreign_slice_names: HashMap<&str, BTreeSet<String>> = HashMap::new();
        for slice in state.endpoint_slices() {
            let namespace = namespace_of(&slice.metadata);
            let service = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL));
            match service {
                Some(service) if slices::is_managed(slice) => {
                    managed_slices
                        .entry((namespace, service))
                        .or_default()
                        .push(slice);
                }
                _ => {
                    let name = slice.metadata.name.clone().unwrap_or_default();
                    foreign_slice_names
                        .entry(namespace)
                        .or_default()
                        .insert(name);
                }
            }
        }
        Index {
            pods_by_label,
            managed_slices,
            foreign_slice_names,
            zones: node_zones(state),
        }
    }

    /// The pods of `namespace` that an equality selector selects.
    pub fn selected_pods<'s>(
        &'s self,
        namespace: &'s str,
        selector: &'s Labels,
    ) -> impl Iterator<Item = &'a Pod> + 's {
        let candidates = selector.iter().next().and_then(|(key, value)| {
            self.pods_by_label
                .get(&(namespace, key.as_str(), value.as_str()))
        });
        candidates
            .into_iter()
            .flatten()
            .copied()
            .filter(move |pod| {
                labels::equality_selector_matches(selector, pod.metadata.labels.as_ref())
            })
    }

    /// The slices this controller manages for a Service.
    pub fn managed_slices(&self, namespace: &str, service: &str) -> Vec<ObjectRef> {
        let slices = self.managed_slices.get(&(namespace, service));
        slices
            .into_iter()
            .flatten()
            .map(|slice| {
                ObjectRef::new(
                    Kind::EndpointSlice,
                    namespace,
                    slice.metadata.name.as_deref().unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Names of slices in a namespace that someone else manages.
    pub fn foreign_slice_names(&self, namespace: &str) -> BTreeSet<String> {
        self.foreign_slice_names
            .get(namespace)
            .cloned()
            .unwrap_or_default()
    }

    pub fn zones(&self) -> &HashMap<String, String> {
        &self.zones
    }
}

/// The Services whose selector selects any of the given pod label sets, per namespace: what a
/// pod change must wake up. Services are indexed by their selector's first pair.
pub fn services_selecting(
    state: &ClusterState,
    changed: &BTreeMap<String, Vec<Option<Labels>>>,
) -> BTreeSet<ObjectRef> {
    let mut woken = BTreeSet::new();
    for (namespace, label_sets) in changed {
        let mut by_first_pair: HashMap<(&str, &str), Vec<&Service>> = HashMap::new();
        for service in state
            .list_in::<Service>(namespace)
            .filter(|s| service_selects_pods(s))
        {
            let first = service
                .spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .and_then(|s| s.iter().next());
            if let Some((key, value)) = first {
                by_first_pair.entry((key, value)).or_default().push(service);
            }
        }
        for pod_labels in label_sets.iter().flatten() {
            for (key, value) in pod_labels {
                for service in by_first_pair
                    .get(&(key.as_str(), value.as_str()))
                    .into_iter()
                    .flatten()
                {
                    let selector = service.spec.as_ref().and_then(|s| s.selector.as_ref());
                    if selector
                        .is_some_and(|s| labels::equality_selector_matches(s, Some(pod_labels)))
                    {
                        let name = service.metadata.name.as_deref().unwrap_or_default();
                        woken.insert(ObjectRef::new(Kind::Service, namespace, name));
                    }
                }
            }
        }
    }
    woken
}
