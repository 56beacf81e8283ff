//! IPv6 Service frontends for the snapshot's IPv6 side ([`Service6`]): each IPv6 address of a
//! Service's `spec.clusterIPs` (or `spec.clusterIP`), per TCP/UDP port, with the ready endpoints
//! of the Service's EndpointSlices whose `addressType` is `IPv6`.
//!
//! Rules (a first cut of what the IPv4 side does in `services`/`backends`):
//! - A slice contributes to a Service port only through its own port entry with the same name
//!   and protocol, whose number is the target port of its endpoints.
//! - Only ready endpoints (`ready` defaults to true) are backends: no terminating fallback, no
//!   traffic policies, session affinity, NodePorts or LoadBalancer addresses in IPv6 yet.
//! - Headless and ExternalName Services, SCTP ports and frontends without ready endpoints get
//!   none (their traffic is dropped by name in the dataplane).
//! - Backends are sorted and de-duplicated, frontends sorted: the result does not depend on the
//!   order of the objects.

use std::net::Ipv6Addr;

use dataplane::tables::v6::Service6;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::state::ClusterState;

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

/// The IPv6 frontends of every Service in the cluster.
pub(super) fn frontends(state: &ClusterState) -> Vec<Service6> {
    let mut out = Vec::new();
    for svc in state.services() {
        frontends_of(state, svc, &mut out);
    }
    out.sort_by_key(|s| (s.ip, s.port, s.proto));
    out.dedup_by_key(|s| (s.ip, s.port, s.proto));
    out
}

fn frontends_of(state: &ClusterState, svc: &Service, out: &mut Vec<Service6>) {
    let Some(spec) = svc.spec.as_ref() else {
        return;
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return;
    }
    let ips: Vec<Ipv6Addr> = spec
        .cluster_ips
        .iter()
        .flatten()
        .chain(spec.cluster_ip.iter())
        .filter_map(|ip| ip.parse::<Ipv6Addr>().ok())
        .collect();
    if ips.is_empty() {
        return;
    }
    let (Some(namespace), Some(name)) = (
        svc.metadata.namespace.as_deref(),
        svc.metadata.name.as_deref(),
    ) else {
        return;
    };
    let slices: Vec<&EndpointSlice> = state
        .endpoint_slices_of(namespace, name)
        .filter(|s| s.address_type == "IPv6")
        .collect();
    for port in spec.ports.iter().flatten() {
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        let proto = match protocol {
            "TCP" => PROTO_TCP,
            "UDP" => PROTO_UDP,
            _ => continue,
        };
        let Ok(number) = u16::try_from(port.port) else {
            continue;
        };
        let port_name = port.name.as_deref().unwrap_or_default();
        let backends = backends(&slices, port_name, protocol);
        if backends.is_empty() {
            continue;
        }
        for &ip in &ips {
            out.push(Service6 {
                ip,
                port: number,
                proto,
                backends: backends.clone(),
            });
        }
    }
}

/// Ready IPv6 endpoints of one Service port, sorted and de-duplicated.
fn backends(slices: &[&EndpointSlice], port_name: &str, protocol: &str) -> Vec<(Ipv6Addr, u16)> {
    let mut found = Vec::new();
    for slice in slices {
        let entry = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or_default() == port_name
                && p.protocol.as_deref().unwrap_or("TCP") == protocol
        });
        let Some(target) = entry
            .and_then(|p| p.port)
            .and_then(|n| u16::try_from(n).ok())
            .filter(|&n| n != 0)
        else {
            continue;
        };
        for endpoint in &slice.endpoints {
            let ready = endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                .unwrap_or(true);
            if !ready {
                continue;
            }
            found.extend(
                endpoint
                    .addresses
                    .iter()
                    .filter_map(|a| a.parse::<Ipv6Addr>().ok())
                    .map(|ip| (ip, target)),
            );
        }
    }
    found.sort_unstable();
    found.dedup();
    found
}
