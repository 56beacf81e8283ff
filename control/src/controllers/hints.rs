//! EndpointSlice `hints` from the Service's `spec.trafficDistribution`, as upstream's
//! EndpointSlice controller writes them (`k8s.io/endpointslice/trafficdist`):
//!
//! - `PreferClose` / `PreferSameZone`: every ready endpoint with a zone gets
//!   `forZones: [its zone]`; a ready endpoint without a zone gets no zone hint (kube-proxy
//!   then ignores the hints of the whole Service: all endpoints are used);
//! - `PreferSameNode`: as above, plus `forNodes: [its node]`;
//! - unset (or any other value): no hints at all.
//!
//! Not-ready endpoints keep no hints (upstream leaves them untouched; ours are built fresh).
//! The `service.kubernetes.io/topology-mode: Auto` annotation (the CPU-proportional
//! topology cache) is not implemented: apply warns about it (`apiserver::service_warnings`).
//!
//! Invariant: the hints depend only on the endpoint's zone, node and readiness.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointHints, ForNode, ForZone};

/// The `trafficDistribution` values that ask for same-zone hints.
pub const CLOSE_DISTRIBUTIONS: [&str; 3] = ["PreferClose", "PreferSameZone", "PreferSameNode"];

/// Which hints a Service's endpoints get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Heuristic {
    /// No hints.
    None,
    /// Zone hints.
    SameZone,
    /// Zone and node hints.
    SameNode,
}

/// The heuristic of a Service.
pub fn heuristic(service: &Service) -> Heuristic {
    let distribution = service
        .spec
        .as_ref()
        .and_then(|s| s.traffic_distribution.as_deref());
    match distribution {
        Some("PreferSameNode") => Heuristic::SameNode,
        Some(d) if CLOSE_DISTRIBUTIONS.contains(&d) => Heuristic::SameZone,
        _ => Heuristic::None,
    }
}

/// Sets (or clears) the hints of one endpoint.
pub fn set_hints(endpoint: &mut Endpoint, heuristic: Heuristic) {
    let ready = endpoint.conditions.as_ref().and_then(|c| c.ready) == Some(true);
    if heuristic == Heuristic::None || !ready {
        endpoint.hints = None;
        return;
    }
    let for_zones = endpoint
        .zone
        .as_ref()
        .map(|zone| vec![ForZone { name: zone.clone() }]);
    let for_nodes = endpoint
        .node_name
        .as_ref()
        .filter(|_| heuristic == Heuristic::SameNode)
        .map(|node| vec![ForNode { name: node.clone() }]);
    endpoint.hints = (for_zones.is_some() || for_nodes.is_some()).then_some(EndpointHints {
        for_zones,
        for_nodes,
    });
}
