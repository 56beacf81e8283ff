//! The endpoints of a headless Service as DNS publishes them: address and _hostname_.
//!
//! Rules (kubernetes/dns specification 2.1 and 2.4, user-needs L1 and L2):
//! - Endpoints come from the Service's EndpointSlices (`kubernetes.io/service-name`), or, for
//!   a Service nobody wrote slices for, from its legacy Endpoints object — the same choice the
//!   dataplane compiler makes.
//! - An endpoint is published when it is _ready_ (`conditions.ready`, absent meaning ready;
//!   `addresses` rather than `notReadyAddresses` in Endpoints), or whatever its state when the
//!   Service sets `publishNotReadyAddresses` or the legacy
//!   `service.alpha.kubernetes.io/tolerate-unready-endpoints: "true"` annotation.
//! - The _hostname_ is the endpoint's `hostname` when it is a valid DNS label, otherwise the
//!   system-assigned identifier: the address with dashes (`10-244-1-5`), unique per Service.
//! - IPv4 and IPv6 addresses are published (the IPv4 and IPv6 slices of a dual-stack
//!   Service); one address appears once per Service, keeping the hostname of its first
//!   appearance. A pod with a `hostname` listed in both slices gets one name with an A and an
//!   AAAA record; without one, each address gets its own dashed name (`fd00-10-244--5`).
//!
//! Invariant: the result is sorted by address, so the same state always yields the same
//! records in the same order.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Endpoints, Service};

use super::names::{dashed, is_label};
use crate::state::ClusterState;

/// The legacy annotation older StatefulSet charts use instead of `publishNotReadyAddresses`.
pub const TOLERATE_UNREADY_ANNOTATION: &str =
    "service.alpha.kubernetes.io/tolerate-unready-endpoints";

/// One published endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct DnsEndpoint {
    pub ip: IpAddr,
    /// The endpoint's DNS label under the Service name.
    pub hostname: String,
}

/// Whether the Service publishes endpoints that are not ready.
fn publishes_not_ready(service: &Service) -> bool {
    let by_spec = service
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        == Some(true);
    let by_annotation = service
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TOLERATE_UNREADY_ANNOTATION))
        .is_some_and(|v| v == "true");
    by_spec || by_annotation
}

/// The published endpoints of `service`, sorted by address.
pub(super) fn published(state: &ClusterState, service: &Service) -> Vec<DnsEndpoint> {
    let namespace = service.metadata.namespace.as_deref().unwrap_or_default();
    let name = service.metadata.name.as_deref().unwrap_or_default();
    let everything = publishes_not_ready(service);
    let mut found = BTreeMap::new();
    let mut add = |address: &str, hostname: Option<&str>| {
        if let Ok(ip) = address.parse::<IpAddr>() {
            let hostname = hostname
                .filter(|h| is_label(h))
                .map_or_else(|| dashed(ip), str::to_ascii_lowercase);
            found.entry(ip).or_insert(hostname);
        }
    };
    let mut slices = state.endpoint_slices_of(namespace, name).peekable();
    if slices.peek().is_some() {
        for slice in slices.filter(|s| matches!(s.address_type.as_str(), "IPv4" | "IPv6")) {
            for endpoint in &slice.endpoints {
                let ready = endpoint
                    .conditions
                    .as_ref()
                    .and_then(|c| c.ready)
                    .unwrap_or(true);
                if ready || everything {
                    for address in &endpoint.addresses {
                        add(address, endpoint.hostname.as_deref());
                    }
                }
            }
        }
    } else if let Some(endpoints) = state.get::<Endpoints>(namespace, name) {
        for subset in endpoints.subsets.iter().flatten() {
            let not_ready = subset.not_ready_addresses.iter().flatten();
            let unready = not_ready.filter(|_| everything);
            for address in subset.addresses.iter().flatten().chain(unready) {
                add(&address.ip, address.hostname.as_deref());
            }
        }
    }
    found
        .into_iter()
        .map(|(ip, hostname)| DnsEndpoint { ip, hostname })
        .collect()
}
