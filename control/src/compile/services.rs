//! One [`ServiceSpec`] per port of each proxied Service: front ends (clusterIPs, externalIPs,
//! LoadBalancer ingress IPs, nodePort), traffic policies, session affinity, source ranges,
//! scheduler, and the port's endpoints ([`super::backends`], narrowed by topology hints:
//! [`super::topology`]).
//!
//! Not proxied, and not reported since nothing is wrong with them: headless Services,
//! ExternalName Services, and Services labelled `service.kubernetes.io/service-proxy-name`
//! (another proxy owns them, user-needs B9). Reported and skipped: IPv6 or
//! malformed addresses (only that address is skipped, B8), unknown scheduler annotations (the
//! port falls back to Random).
//!
//! Invariant: spec names are `namespace/name:port` where `port` is the port's name, or its
//! number when unnamed, so every spec of one Service starts with `namespace/name:`.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use dataplane::flow::L4Proto;
use dataplane::tables::services::{Scheduler, ServiceSpec};
use k8s_openapi::api::core::v1::{Endpoints, Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::Problem;
use super::backends::{PortRef, backends};
use super::local::NodeLocal;
use super::node::to_v4;
use super::topology::{self, Place};
use crate::net::Cidr;

/// Label that hands a Service to another proxy implementation.
pub const SERVICE_PROXY_NAME_LABEL: &str = "service.kubernetes.io/service-proxy-name";
/// Annotation choosing the scheduler: `maglev` or `random` (the default).
pub const SCHEDULER_ANNOTATION: &str = "ferroplane.io/lb-scheduler";
/// kube-proxy's default ClientIP affinity timeout (3 h).
pub const DEFAULT_AFFINITY_TIMEOUT: u32 = 10800;

/// Whether this proxy programs the Service at all.
pub fn is_proxied(service: &Service) -> bool {
    let Some(spec) = service.spec.as_ref() else {
        return false;
    };
    let headless = spec.cluster_ip.as_deref() == Some("None");
    let external_name = spec.type_.as_deref() == Some("ExternalName");
    let foreign = service
        .metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(SERVICE_PROXY_NAME_LABEL));
    !headless && !external_name && !foreign
}

/// Everything one Service contributes, with the problems found on the way.
#[derive(Clone, Debug, Default)]
pub(super) struct ServiceOutput {
    pub specs: Vec<ServiceSpec>,
    pub problems: Vec<Problem>,
}

/// The Service's specs for `node`; `slices` are all its EndpointSlices.
pub(super) fn compile_service(
    service: &Service,
    slices: &[&EndpointSlice],
    endpoints: Option<&Endpoints>,
    place: Place<'_>,
    local: &NodeLocal,
) -> ServiceOutput {
    let node = place.node;
    let mut out = ServiceOutput::default();
    let Some(spec) = service.spec.as_ref().filter(|_| is_proxied(service)) else {
        return out;
    };
    let namespace = service.metadata.namespace.as_deref().unwrap_or_default();
    let name = service.metadata.name.as_deref().unwrap_or_default();
    let object = format!("Service {namespace}/{name}");
    let mut problem = |message: String| out.problems.push(Problem::new(object.clone(), message));
    let type_ = spec.type_.as_deref().unwrap_or("ClusterIP");
    let external_type = matches!(type_, "NodePort" | "LoadBalancer");

    let cluster_ips = match &spec.cluster_ips {
        Some(ips) if !ips.is_empty() => ips.clone(),
        _ => spec.cluster_ip.iter().cloned().collect(),
    };
    let cluster_ips = addresses("spec.clusterIPs", cluster_ips.iter(), &mut problem);
    let external_ips = if local.external_ips {
        addresses(
            "spec.externalIPs",
            spec.external_ips.iter().flatten(),
            &mut problem,
        )
    } else {
        Vec::new()
    };
    let lb_ips = if type_ == "LoadBalancer" {
        load_balancer_ips(service, &mut problem)
    } else {
        Vec::new()
    };
    let lb_source_ranges = if type_ == "LoadBalancer" {
        source_ranges(spec.load_balancer_source_ranges.as_deref(), &mut problem)
    } else {
        Vec::new()
    };
    let scheduler = scheduler(service, &mut problem);
    let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u32::try_from(t).ok())
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT)
    });
    let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
    let external_local = spec.external_traffic_policy.as_deref() == Some("Local");

    for port in spec.ports.iter().flatten() {
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        let proto = match protocol {
            "TCP" => L4Proto::Tcp,
            "UDP" => L4Proto::Udp,
            "SCTP" => L4Proto::Sctp,
            other => {
                problem(format!(
                    "port {}: protocol {other} is not supported; port skipped",
                    port.port
                ));
                continue;
            }
        };
        let Some(number) = u16::try_from(port.port).ok().filter(|&p| p != 0) else {
            problem(format!("port {} is out of range; port skipped", port.port));
            continue;
        };
        let port_name = port.name.as_deref().unwrap_or_default();
        let port_ref = PortRef {
            name: port_name,
            protocol,
            node,
        };
        out.specs.push(ServiceSpec {
            name: spec_name(namespace, name, port),
            proto,
            port: number,
            cluster_ips: cluster_ips.clone(),
            external_ips: external_ips.clone(),
            lb_ips: lb_ips.clone(),
            node_port: if external_type {
                port.node_port.and_then(|n| u16::try_from(n).ok())
            } else {
                None
            },
            backends: topology::narrow(
                backends(slices, endpoints, port_ref),
                slices,
                place,
                internal_local || (external_local && external_type),
            ),
            scheduler,
            affinity_timeout,
            internal_local,
            external_local,
            lb_source_ranges: lb_source_ranges.clone(),
        });
    }
    out
}

fn spec_name(namespace: &str, name: &str, port: &ServicePort) -> Arc<str> {
    match port.name.as_deref().filter(|n| !n.is_empty()) {
        Some(port_name) => Arc::from(format!("{namespace}/{name}:{port_name}")),
        None => Arc::from(format!("{namespace}/{name}:{}", port.port)),
    }
}

/// IPv4 addresses of a list; others are reported and skipped (B8).
fn addresses<'a>(
    field: &str,
    texts: impl Iterator<Item = &'a String>,
    problem: &mut impl FnMut(String),
) -> Vec<Ipv4Addr> {
    texts
        .filter(|text| !text.is_empty() && text.as_str() != "None")
        .filter_map(|text| match text.parse::<IpAddr>() {
            Ok(IpAddr::V4(v4)) => Some(v4),
            Ok(IpAddr::V6(_)) => {
                problem(format!("{field}: {text} is IPv6; skipped"));
                None
            }
            Err(_) => {
                problem(format!("{field}: {text:?} is not an IP address; skipped"));
                None
            }
        })
        .collect()
}

/// `status.loadBalancer.ingress[].ip`, except those with `ipMode: Proxy` (traffic to them must
/// reach the load balancer itself, user-needs D3).
fn load_balancer_ips(service: &Service, problem: &mut impl FnMut(String)) -> Vec<Ipv4Addr> {
    let ingress = service
        .status
        .iter()
        .filter_map(|s| s.load_balancer.as_ref())
        .flat_map(|lb| lb.ingress.iter().flatten())
        .filter(|i| i.ip_mode.as_deref() != Some("Proxy"))
        .filter_map(|i| i.ip.as_ref());
    addresses("status.loadBalancer.ingress", ingress, problem)
}

/// `loadBalancerSourceRanges` as IPv4 (network, prefix). IPv6 ranges cannot match an IPv4
/// client and are skipped; if none is left of a non-empty list, the list becomes
/// `0.0.0.0/32`, which no client has, so skipping never widens access.
fn source_ranges(
    ranges: Option<&[String]>,
    problem: &mut impl FnMut(String),
) -> Vec<(Ipv4Addr, u8)> {
    let ranges = ranges.unwrap_or_default();
    let compiled: Vec<(Ipv4Addr, u8)> = ranges
        .iter()
        .filter_map(|text| match Cidr::parse_lenient(text.trim()) {
            Ok(cidr) => {
                let v4 = to_v4(cidr.network()).map(|ip| (ip, cidr.prefix_len()));
                if v4.is_none() {
                    problem(format!(
                        "spec.loadBalancerSourceRanges: {text} is IPv6 and can match no client of this IPv4 cluster; skipped (a list of only IPv6 ranges admits no one)"
                    ));
                }
                v4
            }
            Err(message) => {
                problem(format!("spec.loadBalancerSourceRanges: {message}; skipped"));
                None
            }
        })
        .collect();
    if compiled.is_empty() && !ranges.is_empty() {
        return vec![(Ipv4Addr::UNSPECIFIED, 32)];
    }
    compiled
}

fn scheduler(service: &Service, problem: &mut impl FnMut(String)) -> Scheduler {
    let value = service
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SCHEDULER_ANNOTATION));
    match value.map(String::as_str) {
        None | Some("random") => Scheduler::Random,
        Some("maglev") => Scheduler::Maglev,
        Some(other) => {
            problem(format!(
                "annotation {SCHEDULER_ANNOTATION}: {other:?} is neither \"maglev\" nor \"random\"; using random"
            ));
            Scheduler::Random
        }
    }
}
