//! Typed questions about a Service that several parts ask.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;

use crate::net::IpFamily;

/// The Service's `spec.ipFamilies` (primary first), or `None` when it names none (a Service
/// stored before families were defaulted, or an ExternalName Service).
pub fn ip_families(service: &Service) -> Option<Vec<IpFamily>> {
    let families: Vec<IpFamily> = service
        .spec
        .as_ref()?
        .ip_families
        .iter()
        .flatten()
        .filter_map(|f| IpFamily::parse(f))
        .collect();
    (!families.is_empty()).then_some(families)
}

/// The `status.loadBalancer.ingress[].ip` addresses of a Service.
pub fn load_balancer_ips(service: &Service) -> impl Iterator<Item = IpAddr> + '_ {
    service
        .status
        .iter()
        .filter_map(|s| s.load_balancer.as_ref())
        .flat_map(|lb| lb.ingress.iter().flatten())
        .filter_map(|ingress| ingress.ip.as_deref()?.parse().ok())
}
