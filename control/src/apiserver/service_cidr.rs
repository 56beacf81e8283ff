//! networking.k8s.io/v1 `ServiceCIDR` objects: further ranges ClusterIPs are allocated from,
//! beside the default one of the cluster settings (`serviceCIDR`, upstream's `kubernetes`
//! ServiceCIDR built from `--service-cluster-ip-range`).
//!
//! Admission: `spec.cidrs` holds one IPv4 CIDR (this cluster is IPv4 only), written without
//! host bits, and is immutable; it may not overlap the cluster (pod) CIDR, the default range
//! or another ServiceCIDR (upstream tolerates overlaps and allocates from the most specific
//! range; ferroplane refuses them, so every ClusterIP belongs to exactly one range). A
//! ServiceCIDR equal to the default range (a mirror of upstream's `kubernetes` object) is
//! accepted. Deleting one that still holds a Service's ClusterIP is refused, naming the
//! Service (upstream keeps it terminating behind a finalizer until the IPs are gone).
//!
//! Invariant: [`ranges`] lists the default range first, then the ServiceCIDRs by name, each
//! once; errors name the field (`spec.cidrs[0]`).

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::ServiceCIDR;

use crate::net::Cidr;
use crate::state::ClusterState;
use crate::validate::{FieldError, Validation};

/// The one CIDR of a stored ServiceCIDR (IPv4 after admission).
pub fn cidr_of(object: &ServiceCIDR) -> Option<Cidr> {
    let spec = object.spec.as_ref()?;
    let first = spec.cidrs.as_ref()?.first()?;
    Cidr::parse_canonical(first).ok()
}

/// Every Service range: the default one, then each ServiceCIDR's (by name), without repeats.
pub fn ranges(state: &ClusterState) -> Vec<Cidr> {
    let mut all = vec![state.settings().service_cidr];
    for object in state.list::<ServiceCIDR>() {
        if let Some(cidr) = cidr_of(object).filter(|c| !all.contains(c)) {
            all.push(cidr);
        }
    }
    all
}

fn name_of(object: &ServiceCIDR) -> &str {
    object.metadata.name.as_deref().unwrap_or_default()
}

/// Validates a ServiceCIDR being created (`old` is `None`) or updated.
pub fn admit(new: &ServiceCIDR, old: Option<&ServiceCIDR>, state: &ClusterState) -> Validation {
    let cidrs = new
        .spec
        .as_ref()
        .and_then(|s| s.cidrs.as_ref())
        .filter(|c| !c.is_empty())
        .ok_or_else(|| FieldError::new("spec.cidrs", "required: one IPv4 CIDR"))?;
    if cidrs.len() > 1 {
        return Err(FieldError::new(
            "spec.cidrs",
            format!(
                "{} entries: this cluster is IPv4 only, so a ServiceCIDR holds exactly one CIDR",
                cidrs.len()
            ),
        ));
    }
    let field = "spec.cidrs[0]";
    let cidr = Cidr::parse_canonical(&cidrs[0]).map_err(|e| FieldError::new(field, e))?;
    if !cidr.is_ipv4() {
        return Err(FieldError::new(
            field,
            format!("{cidr} is IPv6; this cluster is IPv4 only"),
        ));
    }
    if cidr.prefix_len() > 30 {
        return Err(FieldError::new(
            field,
            format!(
                "{cidr} is too small: at most /30 (it needs room besides network and broadcast)"
            ),
        ));
    }
    if let Some(old) = old {
        let before = old.spec.as_ref().and_then(|s| s.cidrs.clone());
        if before.as_ref() != Some(cidrs) {
            return Err(FieldError::new(
                "spec.cidrs",
                format!("field is immutable: {before:?} cannot change to {cidrs:?}"),
            ));
        }
    }
    let settings = state.settings();
    if cidr.overlaps(&settings.cluster_cidr) {
        return Err(FieldError::new(
            field,
            format!(
                "{cidr} overlaps the cluster (pod) CIDR {}",
                settings.cluster_cidr
            ),
        ));
    }
    if cidr != settings.service_cidr && cidr.overlaps(&settings.service_cidr) {
        return Err(FieldError::new(
            field,
            format!(
                "{cidr} overlaps the default service CIDR {} (overlapping ServiceCIDRs are refused)",
                settings.service_cidr
            ),
        ));
    }
    for other in state.list::<ServiceCIDR>() {
        if name_of(other) == name_of(new) {
            continue;
        }
        if let Some(theirs) = cidr_of(other).filter(|c| c.overlaps(&cidr)) {
            return Err(FieldError::new(
                field,
                format!(
                    "{cidr} overlaps ServiceCIDR {} ({theirs}) (overlapping ServiceCIDRs are refused)",
                    name_of(other)
                ),
            ));
        }
    }
    Ok(())
}

/// The ClusterIPs of a Service.
fn cluster_ips(service: &Service) -> impl Iterator<Item = IpAddr> + '_ {
    let spec = service.spec.as_ref();
    spec.and_then(|s| s.cluster_ips.as_ref())
        .into_iter()
        .flatten()
        .chain(spec.and_then(|s| s.cluster_ip.as_ref()))
        .filter_map(|ip| ip.parse().ok())
}

/// Whether the ServiceCIDR may go: no Service holds a ClusterIP that only it covers.
pub fn check_delete(object: &ServiceCIDR, state: &ClusterState) -> Result<(), String> {
    let Some(cidr) = cidr_of(object) else {
        return Ok(());
    };
    let others: Vec<Cidr> = ranges(state).into_iter().filter(|c| *c != cidr).collect();
    for service in state.services() {
        let held = cluster_ips(service)
            .find(|ip| cidr.contains(*ip) && !others.iter().any(|o| o.contains(*ip)));
        if let Some(ip) = held {
            return Err(format!(
                "ServiceCIDR {} ({cidr}) still holds ClusterIP {ip} of Service {}/{}: delete that Service first",
                name_of(object),
                service.metadata.namespace.as_deref().unwrap_or_default(),
                service.metadata.name.as_deref().unwrap_or_default()
            ));
        }
    }
    Ok(())
}
