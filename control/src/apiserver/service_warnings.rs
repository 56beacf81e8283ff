//! Warnings `apply` prints for a Service that is accepted but holds something that will not
//! do what it says (the object is stored as written):
//!
//! - an IPv6 entry of `spec.loadBalancerSourceRanges` in an IPv4 cluster matches no client;
//! - the `service.kubernetes.io/topology-mode` annotation (upstream's CPU-proportional
//!   "Auto" hints) is not implemented: only `spec.trafficDistribution` writes hints.
//!
//! Invariant: every warning names the field it is about.

use k8s_openapi::api::core::v1::Service;

use crate::settings::ClusterSettings;

/// Upstream's annotation for the topology cache (and its predecessor).
const TOPOLOGY_ANNOTATIONS: [&str; 2] = [
    "service.kubernetes.io/topology-mode",
    "service.kubernetes.io/topology-aware-hints",
];

/// The warnings about `service`, each starting with the field.
pub fn warnings(service: &Service, settings: &ClusterSettings) -> Vec<String> {
    let mut found = Vec::new();
    let v4_cluster = settings.service_cidr.network().is_ipv4();
    let ranges = service
        .spec
        .as_ref()
        .and_then(|s| s.load_balancer_source_ranges.as_ref());
    for (i, range) in ranges.into_iter().flatten().enumerate() {
        if v4_cluster && range.contains(':') {
            found.push(format!(
                "spec.loadBalancerSourceRanges[{i}]: {range} is IPv6 and this cluster is IPv4: it matches no client"
            ));
        }
    }
    let annotations = service.metadata.annotations.as_ref();
    for name in TOPOLOGY_ANNOTATIONS {
        let value = annotations.and_then(|a| a.get(name));
        if let Some(value) = value.filter(|v| !v.is_empty() && v.as_str() != "Disabled") {
            found.push(format!(
                "metadata.annotations[{name}]: {value:?} is not implemented (no hints are written from it; use spec.trafficDistribution: PreferClose)"
            ));
        }
    }
    found
}
