//! Resolving NetworkPolicy peers to pods: the pod and namespace index, and a cache so a
//! selector shared by many rules is resolved once per compile.
//!
//! Semantics (user-needs K3, K8): `podSelector` alone selects pods of the policy's namespace;
//! `namespaceSelector` alone all pods of the selected namespaces; both together the pods that
//! match both (AND). Only pods with their own network namespace and an IPv4 address count:
//! hostNetwork and finished pods never match. A selected dual-stack pod adds its IPv6 address
//! (`status.podIPs`) to the set too. A namespace without a Namespace object is seen
//! with the label the API server would give it, `kubernetes.io/metadata.name`.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use dataplane::tables::policy::PodSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::apiserver::NAMESPACE_NAME_LABEL;
use crate::compile::ports::pod_network_ip;
use crate::model::labels::{Labels, label_selector_matches};
use crate::state::ClusterState;

/// A pod a selector may match.
#[derive(Clone, Copy, Debug)]
pub(super) struct NetPod<'a> {
    pub pod: &'a Pod,
    pub ip: Ipv4Addr,
    /// The pod's IPv6 address in a dual-stack cluster.
    pub ip6: Option<Ipv6Addr>,
}

impl NetPod<'_> {
    pub fn labels(&self) -> Option<&Labels> {
        self.pod.metadata.labels.as_ref()
    }
}

/// The pods one peer selected: as an IP set for the table, and as pods for named ports.
#[derive(Clone, Debug)]
pub(super) struct Selected<'a> {
    pub set: Arc<PodSet>,
    pub pods: Arc<[NetPod<'a>]>,
}

/// Pods by namespace, namespace labels, and the selections made so far.
pub(super) struct Resolver<'a> {
    pods_by_namespace: BTreeMap<&'a str, Vec<NetPod<'a>>>,
    namespace_labels: BTreeMap<&'a str, Labels>,
    cache: HashMap<String, Selected<'a>>,
}

impl<'a> Resolver<'a> {
    pub fn new(state: &'a ClusterState) -> Resolver<'a> {
        let mut pods_by_namespace: BTreeMap<&str, Vec<NetPod<'_>>> = BTreeMap::new();
        for pod in state.pods() {
            if let Some(ip) = pod_network_ip(pod) {
                let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
                pods_by_namespace
                    .entry(namespace)
                    .or_default()
                    .push(NetPod {
                        pod,
                        ip,
                        ip6: crate::compile::v6::pod_ip6(pod),
                    });
            }
        }
        let mut namespace_labels: BTreeMap<&str, Labels> = BTreeMap::new();
        for namespace in state.namespaces() {
            let name = namespace.metadata.name.as_deref().unwrap_or_default();
            let mut labels = namespace.metadata.labels.clone().unwrap_or_default();
            labels
                .entry(NAMESPACE_NAME_LABEL.to_owned())
                .or_insert_with(|| name.to_owned());
            namespace_labels.insert(name, labels);
        }
        for name in pods_by_namespace.keys() {
            namespace_labels.entry(name).or_insert_with(|| {
                Labels::from([(NAMESPACE_NAME_LABEL.to_owned(), (*name).to_owned())])
            });
        }
        Resolver {
            pods_by_namespace,
            namespace_labels,
            cache: HashMap::new(),
        }
    }

    /// Every pod of the cluster that selectors may match (the destinations of a rule without
    /// peers, for named ports).
    pub fn all_pods(&mut self) -> Selected<'a> {
        let everything = LabelSelector::default();
        self.select("", None, Some(&everything))
    }

    /// The pods a peer's selectors pick, seen from a policy in `namespace`.
    pub fn select(
        &mut self,
        namespace: &str,
        pod_selector: Option<&LabelSelector>,
        namespace_selector: Option<&LabelSelector>,
    ) -> Selected<'a> {
        let key = cache_key(namespace, pod_selector, namespace_selector);
        if let Some(found) = self.cache.get(&key) {
            return found.clone();
        }
        let pods: Vec<NetPod<'a>> = match namespace_selector {
            None => self
                .pods_by_namespace
                .get(namespace)
                .into_iter()
                .flatten()
                .filter(|p| pod_selector.is_none_or(|s| label_selector_matches(s, p.labels())))
                .copied()
                .collect(),
            Some(ns_selector) => self
                .namespace_labels
                .iter()
                .filter(|(_, labels)| label_selector_matches(ns_selector, Some(labels)))
                .filter_map(|(name, _)| self.pods_by_namespace.get(name))
                .flatten()
                .filter(|p| pod_selector.is_none_or(|s| label_selector_matches(s, p.labels())))
                .copied()
                .collect(),
        };
        let selected = Selected {
            set: Arc::new(
                pods.iter()
                    .map(|p| p.ip)
                    .collect::<PodSet>()
                    .with_ipv6(pods.iter().filter_map(|p| p.ip6)),
            ),
            pods: pods.into(),
        };
        self.cache.insert(key, selected.clone());
        selected
    }
}

fn cache_key(
    namespace: &str,
    pod_selector: Option<&LabelSelector>,
    namespace_selector: Option<&LabelSelector>,
) -> String {
    let text = |s: Option<&LabelSelector>| {
        s.map_or_else(String::new, |s| {
            serde_json::to_string(s).unwrap_or_default()
        })
    };
    // A namespace selector makes the policy's own namespace irrelevant.
    let scope = if namespace_selector.is_some() {
        ""
    } else {
        namespace
    };
    format!(
        "{scope}\u{0}{}\u{0}{}",
        text(pod_selector),
        text(namespace_selector)
    )
}
