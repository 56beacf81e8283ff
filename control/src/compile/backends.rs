//! The endpoints of one Service port, from all of the Service's EndpointSlices (or, for a
//! Service nobody wrote slices for, its legacy Endpoints object).
//!
//! Rules (user-needs B2, B4, B5):
//! - A slice contributes to a Service port only through its own port entry with the same name
//!   and protocol, whose number is the target port of every endpoint in that slice: so a named
//!   targetPort resolves per endpoint, and pods may number the same name differently.
//! - Conditions follow kube-proxy: `ready` (default true) makes an endpoint usable; a not-ready
//!   endpoint that is `serving` (default: `ready`) and `terminating` is a fallback; anything
//!   else is never chosen.
//! - Slices are merged and de-duplicated by IP, keeping the best copy (usable, then fallback,
//!   then unusable; ties by pod name), so the result does not depend on slice order.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use dataplane::tables::services::Backend;
use k8s_openapi::api::core::v1::{EndpointAddress, Endpoints, ObjectReference};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};

/// One Service port as the slices name it.
#[derive(Clone, Copy, Debug)]
pub(super) struct PortRef<'a> {
    /// The Service port's name, empty when unnamed.
    pub name: &'a str,
    /// `TCP` or `UDP`.
    pub protocol: &'a str,
    /// The node being compiled (endpoints there are node-local).
    pub node: &'a str,
}

/// The merged, de-duplicated endpoints of one Service port, sorted by IP.
pub(super) fn backends(
    slices: &[&EndpointSlice],
    endpoints: Option<&Endpoints>,
    port: PortRef<'_>,
) -> Vec<Backend> {
    let mut found = Vec::new();
    if slices.is_empty() {
        if let Some(endpoints) = endpoints {
            from_endpoints(endpoints, port, &mut found);
        }
    } else {
        for slice in slices {
            from_slice(slice, port, &mut found);
        }
    }
    dedup_by_ip(found)
}

fn port_number(number: Option<i32>) -> Option<u16> {
    number
        .and_then(|n| u16::try_from(n).ok())
        .filter(|&n| n != 0)
}

fn pod_name(target: Option<&ObjectReference>) -> Option<Arc<str>> {
    let target = target.filter(|t| t.kind.as_deref() == Some("Pod"))?;
    Some(Arc::from(format!(
        "{}/{}",
        target.namespace.as_deref().unwrap_or_default(),
        target.name.as_deref().unwrap_or_default()
    )))
}

fn from_slice(slice: &EndpointSlice, port: PortRef<'_>, found: &mut Vec<Backend>) {
    if slice.address_type != "IPv4" {
        return;
    }
    let number = slice.ports.iter().flatten().find(|p| {
        p.name.as_deref().unwrap_or_default() == port.name
            && p.protocol.as_deref().unwrap_or("TCP") == port.protocol
    });
    let Some(number) = number.and_then(|p| port_number(p.port)) else {
        return;
    };
    for endpoint in &slice.endpoints {
        let (serving, terminating) = slice_conditions(endpoint);
        let node_local = endpoint.node_name.as_deref() == Some(port.node);
        let pod = pod_name(endpoint.target_ref.as_ref());
        for address in &endpoint.addresses {
            if let Ok(ip) = address.parse::<Ipv4Addr>() {
                found.push(Backend {
                    ip,
                    port: number,
                    node_local,
                    serving,
                    terminating,
                    pod: pod.clone(),
                });
            }
        }
    }
}

/// (serving, terminating) in the dataplane's terms: usable is `serving && !terminating`.
fn slice_conditions(endpoint: &Endpoint) -> (bool, bool) {
    let conditions = endpoint.conditions.as_ref();
    let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
    let serving = conditions.and_then(|c| c.serving).unwrap_or(ready);
    let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
    if ready {
        (true, false)
    } else {
        (serving && terminating, terminating)
    }
}

fn from_endpoints(endpoints: &Endpoints, port: PortRef<'_>, found: &mut Vec<Backend>) {
    for subset in endpoints.subsets.iter().flatten() {
        let number = subset.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or_default() == port.name
                && p.protocol.as_deref().unwrap_or("TCP") == port.protocol
        });
        let Some(number) = number.and_then(|p| port_number(Some(p.port))) else {
            continue;
        };
        let mut add = |address: &EndpointAddress, ready: bool| {
            if let Ok(ip) = address.ip.parse::<Ipv4Addr>() {
                found.push(Backend {
                    ip,
                    port: number,
                    node_local: address.node_name.as_deref() == Some(port.node),
                    serving: ready,
                    terminating: false,
                    pod: pod_name(address.target_ref.as_ref()),
                });
            }
        };
        for address in subset.addresses.iter().flatten() {
            add(address, true);
        }
        for address in subset.not_ready_addresses.iter().flatten() {
            add(address, false);
        }
    }
}

/// Lower is better: usable, then serving-terminating, then not serving.
fn rank(backend: &Backend) -> u8 {
    match (backend.serving, backend.terminating) {
        (true, false) => 0,
        (true, true) => 1,
        (false, _) => 2,
    }
}

fn dedup_by_ip(found: Vec<Backend>) -> Vec<Backend> {
    let mut best: BTreeMap<Ipv4Addr, Backend> = BTreeMap::new();
    for backend in found {
        match best.get(&backend.ip) {
            Some(kept) if (rank(kept), &kept.pod) <= (rank(&backend), &backend.pod) => {}
            _ => {
                best.insert(backend.ip, backend);
            }
        }
    }
    best.into_values().collect()
}
