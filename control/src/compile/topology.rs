//! Topology-aware routing as kube-proxy applies it (`pkg/proxy/topology.go`): EndpointSlice
//! hints narrow the endpoints a node sends cluster-policy traffic to.
//!
//! Per Service port and node: among the ready endpoints, if every one carries a node hint and
//! one is hinted for this node, only those hinted for this node are used (PreferSameNode);
//! else if every one carries a zone hint and one is hinted for this node's zone (its
//! `topology.kubernetes.io/zone` label), only those are used (PreferSameZone); otherwise the
//! hints are ignored and all endpoints are used. Serving-terminating endpoints are never
//! filtered (they are the fallback when nothing is ready, and then topology is off anyway).
//!
//! Invariant: the filter never removes the last ready endpoint (a mode is only chosen when an
//! endpoint is available under it), and, for a Service with a Local traffic policy, never a
//! node-local endpoint (kube-proxy's local set ignores topology; ferroplane keeps one list,
//! so a node-local endpoint hinted away from its own zone stays in the cluster set too).

use std::collections::HashMap;
use std::net::Ipv4Addr;

use dataplane::tables::services::Backend;
use k8s_openapi::api::discovery::v1::{EndpointHints, EndpointSlice};

/// Where the compiled node is.
#[derive(Clone, Copy, Debug)]
pub(super) struct Place<'a> {
    pub node: &'a str,
    pub zone: Option<&'a str>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    All,
    SameNode,
    SameZone,
}

fn hints_by_ip<'s>(slices: &[&'s EndpointSlice]) -> HashMap<Ipv4Addr, &'s EndpointHints> {
    let mut found = HashMap::new();
    for slice in slices.iter().filter(|s| s.address_type == "IPv4") {
        for endpoint in &slice.endpoints {
            let Some(hints) = endpoint.hints.as_ref() else {
                continue;
            };
            for address in &endpoint.addresses {
                if let Ok(ip) = address.parse::<Ipv4Addr>() {
                    found.insert(ip, hints);
                }
            }
        }
    }
    found
}

fn for_node(hints: Option<&EndpointHints>, node: &str) -> (bool, bool) {
    let names = hints.and_then(|h| h.for_nodes.as_ref());
    let any = names.is_some_and(|n| !n.is_empty());
    (any, names.is_some_and(|n| n.iter().any(|f| f.name == node)))
}

fn for_zone(hints: Option<&EndpointHints>, zone: Option<&str>) -> (bool, bool) {
    let names = hints.and_then(|h| h.for_zones.as_ref());
    let any = names.is_some_and(|n| !n.is_empty());
    let here = zone.is_some_and(|z| names.is_some_and(|n| n.iter().any(|f| f.name == z)));
    (any, here)
}

fn usable(backend: &Backend) -> bool {
    backend.serving && !backend.terminating
}

/// The endpoints this node uses: `backends` narrowed by the hints of `slices`.
pub(super) fn narrow(
    backends: Vec<Backend>,
    slices: &[&EndpointSlice],
    place: Place<'_>,
    keep_local: bool,
) -> Vec<Backend> {
    let hints = hints_by_ip(slices);
    if hints.is_empty() {
        return backends;
    }
    let of = |b: &Backend| hints.get(&b.ip).copied();
    let ready: Vec<&Backend> = backends.iter().filter(|b| usable(b)).collect();
    if ready.is_empty() {
        return backends;
    }
    let all_node = ready.iter().all(|b| for_node(of(b), place.node).0);
    let node_here = ready.iter().any(|b| for_node(of(b), place.node).1);
    let all_zone = ready.iter().all(|b| for_zone(of(b), place.zone).0);
    let zone_here = ready.iter().any(|b| for_zone(of(b), place.zone).1);
    let mode = if all_node && node_here {
        Mode::SameNode
    } else if all_zone && zone_here {
        Mode::SameZone
    } else {
        Mode::All
    };
    let available = |b: &Backend| match mode {
        Mode::All => true,
        Mode::SameNode => for_node(of(b), place.node).1,
        Mode::SameZone => for_zone(of(b), place.zone).1,
    };
    backends
        .into_iter()
        .filter(|b| !usable(b) || available(b) || (keep_local && b.node_local))
        .collect()
}
