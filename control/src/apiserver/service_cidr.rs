//! networking.k8s.io/v1 `ServiceCIDR` objects: further ranges ClusterIPs are allocated from,
//! beside the default one of the cluster settings (`serviceCIDR`, upstream's `kubernetes`
//! ServiceCIDR built from `--service-cluster-ip-range`).
//!
//! Admission: `spec.cidrs` holds one CIDR per IP family, each of a family the cluster has a
//! default Service range of, written without host bits, and is immutable; it may not overlap the cluster (pod) CIDR, the default range
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

use crate::net::{Cidr, IpFamily};
use crate::state::ClusterState;
use crate::validate::{FieldError, Validation};

/// The CIDRs of a stored ServiceCIDR (one per family after admission).
pub fn cidrs_of(object: &ServiceCIDR) -> Vec<Cidr> {
    let listed = object.spec.as_ref().and_then(|s| s.cidrs.as_ref());
    listed
        .into_iter()
        .flatten()
        .filter_map(|text| Cidr::parse_canonical(text).ok())
        .collect()
}

/// Every Service range: the default ones (primary first), then each ServiceCIDR's (by name),
/// without repeats.
pub fn ranges(state: &ClusterState) -> Vec<Cidr> {
    let mut all = state.settings().service_cidrs();
    for object in state.list::<ServiceCIDR>() {
        for cidr in cidrs_of(object) {
            if !all.contains(&cidr) {
                all.push(cidr);
            }
        }
    }
    all
}

fn name_of(object: &ServiceCIDR) -> &str {
    object.metadata.name.as_deref().unwrap_or_default()
}

/// Validates a ServiceCIDR being created (`old` is `None`) or updated.
pub fn admit(new: &ServiceCIDR, old: Option<&ServiceCIDR>, state: &ClusterState) -> Validation {
    let settings = state.settings();
    let families = settings.families();
    let cidrs = new
        .spec
        .as_ref()
        .and_then(|s| s.cidrs.as_ref())
        .filter(|c| !c.is_empty())
        .ok_or_else(|| FieldError::new("spec.cidrs", "required: one CIDR per IP family"))?;
    if cidrs.len() > 2 {
        return Err(FieldError::new(
            "spec.cidrs",
            format!(
                "{} entries: a ServiceCIDR holds exactly one CIDR per IP family (at most 2)",
                cidrs.len()
            ),
        ));
    }
    let mut parsed: Vec<Cidr> = Vec::new();
    for (i, text) in cidrs.iter().enumerate() {
        let field = format!("spec.cidrs[{i}]");
        let cidr = Cidr::parse_canonical(text).map_err(|e| FieldError::new(&field, e))?;
        let family = IpFamily::of_cidr(&cidr);
        if parsed.iter().any(|p| IpFamily::of_cidr(p) == family) {
            return Err(FieldError::new(
                "spec.cidrs",
                format!("{family} twice: a ServiceCIDR holds exactly one CIDR per IP family"),
            ));
        }
        if !families.contains(&family) {
            let names: Vec<&str> = families.iter().map(|f| f.as_str()).collect();
            return Err(FieldError::new(
                field,
                format!(
                    "{cidr} is {family}; this cluster has no {family} Service range (it is {})",
                    names.join(",")
                ),
            ));
        }
        let max = if cidr.is_ipv4() { 30 } else { 126 };
        if cidr.prefix_len() > max {
            return Err(FieldError::new(
                field,
                format!(
                    "{cidr} is too small: at most /{max} (it needs room besides network and broadcast)"
                ),
            ));
        }
        parsed.push(cidr);
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
    for (i, cidr) in parsed.iter().enumerate() {
        overlaps(&format!("spec.cidrs[{i}]"), *cidr, new, state)?;
    }
    Ok(())
}

fn overlaps(field: &str, cidr: Cidr, new: &ServiceCIDR, state: &ClusterState) -> Validation {
    let settings = state.settings();
    if let Some(pods) = settings
        .cluster_cidrs()
        .into_iter()
        .find(|c| c.overlaps(&cidr))
    {
        return Err(FieldError::new(
            field,
            format!("{cidr} overlaps the cluster (pod) CIDR {pods}"),
        ));
    }
    let default = settings.service_cidrs();
    if !default.contains(&cidr)
        && let Some(range) = default.iter().find(|c| c.overlaps(&cidr))
    {
        return Err(FieldError::new(
            field,
            format!(
                "{cidr} overlaps the default service CIDR {range} (overlapping ServiceCIDRs are refused)"
            ),
        ));
    }
    for other in state.list::<ServiceCIDR>() {
        if name_of(other) == name_of(new) {
            continue;
        }
        if let Some(theirs) = cidrs_of(other).into_iter().find(|c| c.overlaps(&cidr)) {
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
    let own = cidrs_of(object);
    let others: Vec<Cidr> = ranges(state)
        .into_iter()
        .filter(|c| !own.contains(c))
        .collect();
    for cidr in own {
        check_unheld(object, cidr, &others, state)?;
    }
    Ok(())
}

fn check_unheld(
    object: &ServiceCIDR,
    cidr: Cidr,
    others: &[Cidr],
    state: &ClusterState,
) -> Result<(), String> {
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
