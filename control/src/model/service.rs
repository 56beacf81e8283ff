//! Typed questions about a Service that several parts ask.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;

/// The `status.loadBalancer.ingress[].ip` addresses of a Service.
pub fn load_balancer_ips(service: &Service) -> impl Iterator<Item = IpAddr> + '_ {
    service
        .status
        .iter()
        .filter_map(|s| s.load_balancer.as_ref())
        .flat_map(|lb| lb.ingress.iter().flatten())
        .filter_map(|ingress| ingress.ip.as_deref()?.parse().ok())
}
