//! IPv6 Service frontends for the snapshot's IPv6 side ([`Service6`]), per TCP/UDP port, with
//! the ready endpoints of the Service's EndpointSlices whose `addressType` is `IPv6`:
//! - each IPv6 address of `spec.clusterIPs` (or `spec.clusterIP`);
//! - NodePort and LoadBalancer Services: `nodePort` on each of this node's IPv6 addresses;
//! - LoadBalancer Services: each IPv6 `status.loadBalancer.ingress[].ip` (except `ipMode:
//!   Proxy`), with the IPv6 entries of `loadBalancerSourceRanges` (a list of only IPv4 ranges
//!   admits no IPv6 client: skipping never widens access);
//! - each IPv6 `spec.externalIPs` entry, where the node-local settings allow externalIPs.
//!
//! Rules (what the IPv4 side does in `services`/`backends`, a first cut):
//! - A slice contributes to a Service port only through its own port entry with the same name
//!   and protocol, whose number is the target port of its endpoints.
//! - Only ready endpoints (`ready` defaults to true) are backends: no terminating fallback,
//!   internalTrafficPolicy, topology hints or session affinity in IPv6 yet.
//!   `externalTrafficPolicy: Local` is carried on NodePort and external frontends (the dataplane
//!   then sends outside clients to this node's endpoints only). The health-check node port is
//!   one number per Service, served by the node's health server, not per family.
//! - Headless, ExternalName and foreign-proxy Services and SCTP ports get no frontend. A port
//!   without ready endpoints keeps its frontends (the dataplane rejects their traffic, as
//!   kube-proxy does).
//! - Backends are sorted and de-duplicated, frontends sorted: the result does not depend on the
//!   order of the objects.

use std::net::{IpAddr, Ipv6Addr};

use dataplane::cidr6::Cidr6;
use dataplane::tables::v6::{Kind6, Service6};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::net::Cidr;
use crate::state::ClusterState;

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

/// Where the frontends are compiled: this node's IPv6 addresses (NodePorts) and whether the
/// node-local settings allow externalIPs.
#[derive(Clone, Copy, Debug)]
pub(super) struct Place6<'a> {
    pub node_ips: &'a [Ipv6Addr],
    pub external_ips: bool,
}

/// The IPv6 frontends of every Service in the cluster.
pub(super) fn frontends(state: &ClusterState, place: Place6<'_>) -> Vec<Service6> {
    let mut out = Vec::new();
    for svc in state.services() {
        frontends_of(state, svc, place, &mut out);
    }
    out.sort_by_key(|s| (s.ip, s.port, s.proto));
    out.dedup_by_key(|s| (s.ip, s.port, s.proto));
    out
}

/// The IPv6 addresses of a list of address texts (the IPv4 ones are the IPv4 side's).
fn ipv6_of<'a>(texts: impl Iterator<Item = &'a String>) -> Vec<Ipv6Addr> {
    texts.filter_map(|t| t.parse::<Ipv6Addr>().ok()).collect()
}

fn frontends_of(state: &ClusterState, svc: &Service, place: Place6<'_>, out: &mut Vec<Service6>) {
    let Some(spec) = svc
        .spec
        .as_ref()
        .filter(|_| super::services::is_proxied(svc))
    else {
        return;
    };
    let ips = ipv6_of(
        spec.cluster_ips
            .iter()
            .flatten()
            .chain(spec.cluster_ip.iter()),
    );
    if ips.is_empty() {
        return;
    }
    let (Some(namespace), Some(name)) = (
        svc.metadata.namespace.as_deref(),
        svc.metadata.name.as_deref(),
    ) else {
        return;
    };
    let type_ = spec.type_.as_deref().unwrap_or("ClusterIP");
    let load_balancer = type_ == "LoadBalancer";
    let external_type = load_balancer || type_ == "NodePort";
    let external_local = spec.external_traffic_policy.as_deref() == Some("Local");
    let lb_ips = if load_balancer {
        let ingress = svc
            .status
            .iter()
            .filter_map(|s| s.load_balancer.as_ref())
            .flat_map(|lb| lb.ingress.iter().flatten())
            .filter(|i| i.ip_mode.as_deref() != Some("Proxy"))
            .filter_map(|i| i.ip.as_ref());
        ipv6_of(ingress)
    } else {
        Vec::new()
    };
    let external_ips = if place.external_ips {
        ipv6_of(spec.external_ips.iter().flatten())
    } else {
        Vec::new()
    };
    let source_ranges = if load_balancer {
        source_ranges6(spec.load_balancer_source_ranges.as_deref())
    } else {
        None
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
        let Some(number) = u16::try_from(port.port).ok().filter(|&p| p != 0) else {
            continue;
        };
        let port_name = port.name.as_deref().unwrap_or_default();
        let backends = backends(&slices, port_name, protocol);
        let frontend = |ip, port, kind| Service6 {
            ip,
            port,
            proto,
            backends: backends.clone(),
            kind,
            external_local: external_local && kind != Kind6::ClusterIp,
            source_ranges: None,
        };
        for &ip in &ips {
            out.push(frontend(ip, number, Kind6::ClusterIp));
        }
        let node_port = port
            .node_port
            .and_then(|n| u16::try_from(n).ok())
            .filter(|&n| n != 0 && external_type);
        if let Some(node_port) = node_port {
            for &ip in place.node_ips {
                out.push(frontend(ip, node_port, Kind6::NodePort));
            }
        }
        for &ip in &lb_ips {
            out.push(Service6 {
                source_ranges: source_ranges.clone(),
                ..frontend(ip, number, Kind6::External)
            });
        }
        for &ip in &external_ips {
            out.push(frontend(ip, number, Kind6::External));
        }
    }
}

/// The IPv6 entries of `loadBalancerSourceRanges`; `None` when the list is empty (everyone).
/// Unreadable entries are the IPv4 side's to report; they admit no one here.
fn source_ranges6(ranges: Option<&[String]>) -> Option<Vec<Cidr6>> {
    let ranges = ranges.filter(|r| !r.is_empty())?;
    Some(
        ranges
            .iter()
            .filter_map(|text| Cidr::parse_lenient(text.trim()).ok())
            .filter_map(|c| match c.network() {
                IpAddr::V6(net) => Cidr6::new(net, c.prefix_len()).ok(),
                IpAddr::V4(_) => None,
            })
            .collect(),
    )
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
