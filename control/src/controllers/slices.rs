//! The desired discovery.k8s.io/v1 EndpointSlices of a Service, as the Kubernetes
//! EndpointSlice controller builds them: one group per (address family, resolved port list),
//! the families being the Service's `ipFamilies` (a dual-stack Service gets an IPv4 and an
//! IPv6 slice, each pod listed in each with its address of that family; a pod without an
//! address of a family is missing from that family's slice),
//! at most [`MAX_ENDPOINTS_PER_SLICE`] endpoints per slice, conditions
//! `serving` = pod Ready, `terminating` = deletion started, `ready` = serving and not
//! terminating (always true with publishNotReadyAddresses). Terminating pods stay in the slices,
//! so the dataplane can fall back to them when nothing else serves. Ready endpoints carry
//! topology hints when the Service asks for them ([`super::hints`]).
//!
//! Invariants: slice names are `<service>-<n>` with n counting from 1 in group order, skipping
//! names held by slices somebody else manages; a Service with no endpoints keeps one empty
//! placeholder slice; the same state always yields the same slices.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::endpoints::{address, derived_labels};
use super::hints;
use super::{Backend, MANAGED_BY_CONTROLLER, MANAGED_BY_LABEL, ResolvedPort, serves_something};
use crate::model::service::ip_families;
use crate::net::IpFamily;
use crate::state::SERVICE_NAME_LABEL;

/// The Kubernetes default (`--max-endpoints-per-slice`).
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// Whether this controller manages the slice.
pub fn is_managed(slice: &EndpointSlice) -> bool {
    slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .map(String::as_str)
        == Some(MANAGED_BY_CONTROLLER)
}

fn endpoint(
    service: &Service,
    backend: &Backend<'_>,
    ip: IpAddr,
    zones: &HashMap<String, String>,
) -> Endpoint {
    let name = service.metadata.name.as_deref().unwrap_or_default();
    let publish_not_ready = service
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        == Some(true);
    let serving = backend.ready;
    let terminating = backend.terminating;
    let legacy = address(backend, ip, name);
    let mut endpoint = Endpoint {
        addresses: vec![legacy.ip],
        conditions: Some(EndpointConditions {
            ready: Some(publish_not_ready || (serving && !terminating)),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: legacy.hostname,
        zone: legacy
            .node_name
            .as_ref()
            .and_then(|n| zones.get(n).cloned()),
        node_name: legacy.node_name,
        target_ref: legacy.target_ref,
        ..Endpoint::default()
    };
    hints::set_hints(&mut endpoint, hints::heuristic(service));
    endpoint
}

fn ports(resolved: &[ResolvedPort]) -> Option<Vec<EndpointPort>> {
    Some(
        resolved
            .iter()
            .map(|p| EndpointPort {
                name: Some(p.name.clone().unwrap_or_default()),
                port: Some(p.port),
                protocol: Some(p.protocol.clone()),
                app_protocol: p.app_protocol.clone(),
            })
            .collect(),
    )
}

/// Address family, ports and endpoints of one slice.
type SliceContent<'a> = (&'a str, Option<Vec<EndpointPort>>, Vec<Endpoint>);

/// The slices the Service should have. `taken_names` are slice names in the namespace that
/// another manager holds.
pub fn desired(
    service: &Service,
    backends: &[Backend<'_>],
    zones: &HashMap<String, String>,
    taken_names: &BTreeSet<String>,
) -> Vec<EndpointSlice> {
    let families = ip_families(service);
    let mut groups: BTreeMap<(IpFamily, &[ResolvedPort]), Vec<Endpoint>> = BTreeMap::new();
    for backend in backends
        .iter()
        .filter(|b| serves_something(service, &b.ports))
    {
        let addresses: Vec<IpAddr> = match &families {
            Some(families) => families.iter().filter_map(|f| backend.ip_of(*f)).collect(),
            None => vec![backend.ip],
        };
        for ip in addresses {
            groups
                .entry((IpFamily::of(ip), &backend.ports))
                .or_default()
                .push(endpoint(service, backend, ip, zones));
        }
    }
    let mut contents: Vec<SliceContent<'_>> = Vec::new();
    for ((family, resolved), endpoints) in groups {
        for chunk in endpoints.chunks(MAX_ENDPOINTS_PER_SLICE) {
            contents.push((family.as_str(), ports(resolved), chunk.to_vec()));
        }
    }
    if contents.is_empty() {
        let primary = families.as_ref().map_or(IpFamily::IPv4, |f| f[0]);
        contents.push((primary.as_str(), Some(Vec::new()), Vec::new()));
    }
    let service_name = service.metadata.name.clone().unwrap_or_default();
    let mut names = (1..)
        .map(|n| format!("{service_name}-{n}"))
        .filter(|n| !taken_names.contains(n));
    let mut labels = derived_labels(service);
    labels.insert(SERVICE_NAME_LABEL.to_owned(), service_name.clone());
    labels.insert(
        MANAGED_BY_LABEL.to_owned(),
        MANAGED_BY_CONTROLLER.to_owned(),
    );
    let owner = OwnerReference {
        api_version: "v1".to_owned(),
        kind: "Service".to_owned(),
        name: service_name.clone(),
        uid: service.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    contents
        .into_iter()
        .map(|(family, ports, endpoints)| EndpointSlice {
            metadata: ObjectMeta {
                name: names.next(),
                namespace: service.metadata.namespace.clone(),
                labels: Some(labels.clone()),
                owner_references: Some(vec![owner.clone()]),
                ..ObjectMeta::default()
            },
            address_type: family.to_owned(),
            endpoints,
            ports,
        })
        .collect()
}
