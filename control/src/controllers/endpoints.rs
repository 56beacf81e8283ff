//! The desired v1 Endpoints of a Service, as the Kubernetes endpoints controller builds them:
//! pods grouped into subsets by the ports they serve, ready ones in `addresses` and the others
//! in `notReadyAddresses`; terminating pods are left out unless the Service publishes
//! not-ready addresses (then every pod is in `addresses`).
//!
//! Invariant: addresses within a subset are sorted by IP (then pod name) and subsets by their
//! port lists, so the same state always yields the same object.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{Backend, HEADLESS_LABEL, ResolvedPort, serves_something};
use crate::model::pod;

/// The address entry of a pod, pointing back at it.
pub fn address(backend: &Backend<'_>, ip: IpAddr, service_name: &str) -> EndpointAddress {
    let meta = &backend.pod.metadata;
    let spec = backend.pod.spec.as_ref();
    let hostname = spec
        .filter(|s| s.subdomain.as_deref() == Some(service_name))
        .and_then(|s| s.hostname.clone());
    EndpointAddress {
        ip: ip.to_string(),
        hostname,
        node_name: pod::node_name(backend.pod).map(str::to_owned),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".to_owned()),
            namespace: meta.namespace.clone(),
            name: meta.name.clone(),
            uid: meta.uid.clone(),
            ..ObjectReference::default()
        }),
    }
}

/// Labels of derived objects: the Service's own, plus the headless marker.
pub fn derived_labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    if service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None") {
        labels.insert(HEADLESS_LABEL.to_owned(), String::new());
    }
    labels
}

pub fn desired(service: &Service, backends: &[Backend<'_>]) -> Endpoints {
    let name = service.metadata.name.clone().unwrap_or_default();
    let publish_not_ready = service
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        == Some(true);
    let mut groups: BTreeMap<&[ResolvedPort], (Vec<EndpointAddress>, Vec<EndpointAddress>)> =
        BTreeMap::new();
    for backend in backends {
        if (backend.terminating && !publish_not_ready) || !serves_something(service, &backend.ports)
        {
            continue;
        }
        let Some(ip) = backend.endpoints_ip(service) else {
            continue;
        };
        let (ready, not_ready) = groups.entry(&backend.ports).or_default();
        if publish_not_ready || backend.ready {
            ready.push(address(backend, ip, &name));
        } else {
            not_ready.push(address(backend, ip, &name));
        }
    }
    let subsets: Vec<EndpointSubset> = groups
        .into_iter()
        .map(|(ports, (ready, not_ready))| EndpointSubset {
            addresses: (!ready.is_empty()).then_some(ready),
            not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
            ports: (!ports.is_empty()).then(|| {
                ports
                    .iter()
                    .map(|p| EndpointPort {
                        name: p.name.clone(),
                        port: p.port,
                        protocol: Some(p.protocol.clone()),
                        app_protocol: p.app_protocol.clone(),
                    })
                    .collect()
            }),
        })
        .collect();
    Endpoints {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: service.metadata.namespace.clone(),
            labels: Some(derived_labels(service)).filter(|l| !l.is_empty()),
            ..ObjectMeta::default()
        },
        subsets: (!subsets.is_empty()).then_some(subsets),
    }
}
