//! Warnings `apply` prints for a Service that is accepted but holds something that will not
//! do what it says (the object is stored as written):
//!
//! - an entry of `spec.loadBalancerSourceRanges` of a family the Service has no address of
//!   (IPv6 in an IPv4-only Service) matches no client;
//! - the `service.kubernetes.io/topology-mode` annotation (upstream's CPU-proportional
//!   "Auto" hints) is not implemented: only `spec.trafficDistribution` writes hints.
//!
//! Invariant: every warning names the field it is about.

use k8s_openapi::api::core::v1::Service;

use crate::net::IpFamily;
use crate::settings::ClusterSettings;

/// Upstream's annotation for the topology cache (and its predecessor).
const TOPOLOGY_ANNOTATIONS: [&str; 2] = [
    "service.kubernetes.io/topology-mode",
    "service.kubernetes.io/topology-aware-hints",
];

/// The warnings about `service`, each starting with the field.
pub fn warnings(service: &Service, settings: &ClusterSettings) -> Vec<String> {
    let mut found = Vec::new();
    let families = crate::model::service::ip_families(service)
        .unwrap_or_else(|| vec![settings.primary_family()]);
    let ranges = service
        .spec
        .as_ref()
        .and_then(|s| s.load_balancer_source_ranges.as_ref());
    for (i, range) in ranges.into_iter().flatten().enumerate() {
        let family = if range.contains(':') {
            IpFamily::IPv6
        } else {
            IpFamily::IPv4
        };
        if !families.contains(&family) {
            found.push(format!(
                "spec.loadBalancerSourceRanges[{i}]: {range} is {family} and this Service is not: it matches no client"
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
