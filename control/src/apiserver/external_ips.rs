//! Admission of `spec.externalIPs` against the rest of the cluster (security review H5,
//! CVE-2020-8554). A Service's externalIP becomes a front end on every node, so:
//! - an address of any Node (InternalIP or ExternalIP in its status) is refused: the Service
//!   would capture that node's port for all pods and the host;
//! - externalIPs are off unless the cluster lists the ranges they may come from
//!   (`externalIPCIDRs` in the cluster settings), as upstream's DenyServiceExternalIPs
//!   admission advises; addresses outside the list are refused.
//!
//! Invariant: an update may keep externalIPs the old object already had even after the
//! allow-list shrank (the cluster owner narrowed it; the Service was admitted under the old
//! list), but never one that is a node address.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;

use crate::model::{Kind, Object};
use crate::state::ClusterState;
use crate::validate::{FieldError, Validation};

/// The cluster-settings key of the allow-list, as errors name it.
pub const ALLOW_LIST_SETTING: &str = "externalIPCIDRs";

/// Checks `new`'s externalIPs (already syntax-checked by `service::validate_and_default`).
pub fn admit(new: &Service, old: Option<&Service>, state: &ClusterState) -> Validation {
    let ips = external_ips(new);
    if ips.is_empty() {
        return Ok(());
    }
    let before = old.map(external_ips).unwrap_or_default();
    let allowed = &state.settings().external_ip_cidrs;
    for (i, ip) in ips {
        let field = format!("spec.externalIPs[{i}]");
        if let Some((node, kind)) = node_owning(state, ip) {
            return Err(FieldError::new(
                field,
                format!(
                    "{ip} is the {kind} of node {node:?}: a Service may not take over a node's address"
                ),
            ));
        }
        if before.iter().any(|(_, kept)| *kept == ip) {
            continue;
        }
        if allowed.is_empty() {
            return Err(FieldError::new(
                field,
                format!(
                    "externalIPs are disabled in this cluster (set {ALLOW_LIST_SETTING} in the \
                     cluster settings to the ranges they may come from)"
                ),
            ));
        }
        if !allowed.iter().any(|cidr| cidr.contains(ip)) {
            let list: Vec<String> = allowed.iter().map(ToString::to_string).collect();
            return Err(FieldError::new(
                field,
                format!(
                    "{ip} is outside the cluster's {ALLOW_LIST_SETTING} [{}]",
                    list.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// The parsed externalIPs with their index in the list (unparsable entries are skipped: the
/// syntax check refused them already).
fn external_ips(service: &Service) -> Vec<(usize, IpAddr)> {
    service
        .spec
        .iter()
        .flat_map(|s| s.external_ips.iter().flatten())
        .enumerate()
        .filter_map(|(i, text)| text.parse().ok().map(|ip| (i, ip)))
        .collect()
}

/// The node that has `ip` as an InternalIP or ExternalIP, and which of the two it is.
fn node_owning(state: &ClusterState, ip: IpAddr) -> Option<(String, String)> {
    state.objects_of(Kind::Node).find_map(|object| {
        let Object::Node(node) = object else {
            return None;
        };
        node.status
            .iter()
            .flat_map(|s| s.addresses.iter().flatten())
            .filter(|a| matches!(a.type_.as_str(), "InternalIP" | "ExternalIP"))
            .find(|a| a.address.parse::<IpAddr>().ok() == Some(ip))
            .map(|a| {
                let name = node.metadata.name.clone().unwrap_or_default();
                (name, a.type_.clone())
            })
    })
}
