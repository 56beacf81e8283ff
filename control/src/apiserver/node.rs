//! Node admission plus the node IPAM and flannel controllers, which run synchronously: a Node
//! gets a podCIDR from the cluster CIDR (kept for its lifetime) and publishes its VXLAN tunnel
//! endpoint flannel-style, `public-ip` from its InternalIP and `backend-data` with the VNI and a
//! VTEP MAC (the one given in the manifest, else the one already published, else one derived
//! from the node name).

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Node, NodeSpec};

use super::alloc;
use crate::model::node::{
    self as node_model, BACKEND_DATA, BACKEND_TYPE, BackendData, KUBE_SUBNET_MANAGER, PUBLIC_IP,
};
use crate::net::{Cidr, MacAddr};
use crate::state::ClusterState;
use crate::validate::{FieldError, Validation};

/// Validates a Node, assigns its podCIDR and publishes its VTEP annotations.
pub fn admit(node: &mut Node, existing: Option<&Node>, state: &ClusterState) -> Validation {
    let name = node.metadata.name.clone().unwrap_or_default();
    validate_addresses(node)?;
    let requested = requested_pod_cidr(node)?;
    let old = existing.and_then(node_model::pod_cidr);
    let settings = state.settings();
    let pod_cidr = match (requested, old) {
        (Some(new), Some(old)) if new != old => {
            return Err(FieldError::new(
                "spec.podCIDR",
                format!("field is immutable: the node holds {old}"),
            ));
        }
        (_, Some(old)) => old,
        (Some(new), None) => {
            check_requested(new, &name, state)?;
            new
        }
        (None, None) => {
            let held: Vec<Cidr> = other_pod_cidrs(state, &name).map(|(_, c)| c).collect();
            alloc::pick_pod_cidr(&settings.cluster_cidr, settings.node_cidr_mask_size, &held)
                .ok_or_else(|| {
                    FieldError::new(
                        "spec.podCIDR",
                        format!(
                            "no free /{} left in the cluster CIDR {}",
                            settings.node_cidr_mask_size, settings.cluster_cidr
                        ),
                    )
                })?
        }
    };
    let spec = node.spec.get_or_insert_with(NodeSpec::default);
    spec.pod_cidr = Some(pod_cidr.to_string());
    spec.pod_cidrs = Some(vec![pod_cidr.to_string()]);
    publish_vtep(node, existing, settings.vxlan_vni)
}

fn validate_addresses(node: &Node) -> Validation {
    let addresses = node
        .status
        .iter()
        .flat_map(|s| s.addresses.iter().flatten());
    for (i, address) in addresses.enumerate() {
        if matches!(address.type_.as_str(), "InternalIP" | "ExternalIP") {
            address.address.parse::<IpAddr>().map_err(|_| {
                FieldError::new(
                    format!("status.addresses[{i}].address"),
                    format!("{:?} must be a valid IP address", address.address),
                )
            })?;
        }
    }
    Ok(())
}

fn requested_pod_cidr(node: &Node) -> Result<Option<Cidr>, FieldError> {
    let Some(spec) = &node.spec else {
        return Ok(None);
    };
    let single = spec.pod_cidr.as_deref().filter(|c| !c.is_empty());
    let first = spec
        .pod_cidrs
        .as_ref()
        .and_then(|list| list.first())
        .map(String::as_str);
    let text = match (single, first) {
        (Some(a), Some(b)) if a != b => {
            return Err(FieldError::new(
                "spec.podCIDRs",
                format!("must start with spec.podCIDR {a:?}"),
            ));
        }
        (Some(a), _) => a,
        (None, Some(b)) => b,
        (None, None) => return Ok(None),
    };
    if spec.pod_cidrs.as_ref().is_some_and(|list| list.len() > 1) {
        return Err(FieldError::new(
            "spec.podCIDRs",
            "at most one CIDR: this cluster is IPv4 single-stack",
        ));
    }
    Cidr::parse_canonical(text)
        .map(Some)
        .map_err(|m| FieldError::new("spec.podCIDR", m))
}

fn other_pod_cidrs<'a>(
    state: &'a ClusterState,
    name: &'a str,
) -> impl Iterator<Item = (String, Cidr)> + 'a {
    state
        .nodes()
        .filter(move |n| n.metadata.name.as_deref() != Some(name))
        .filter_map(|n| {
            Some((
                n.metadata.name.clone().unwrap_or_default(),
                node_model::pod_cidr(n)?,
            ))
        })
}

fn check_requested(cidr: Cidr, name: &str, state: &ClusterState) -> Validation {
    let cluster = state.settings().cluster_cidr;
    if !cluster.contains(cidr.network()) || cidr.prefix_len() < cluster.prefix_len() {
        return Err(FieldError::new(
            "spec.podCIDR",
            format!("{cidr} must lie inside the cluster CIDR {cluster}"),
        ));
    }
    if let Some((other, held)) = other_pod_cidrs(state, name).find(|(_, held)| held.overlaps(&cidr))
    {
        return Err(FieldError::new(
            "spec.podCIDR",
            format!("{cidr} overlaps {held}, the podCIDR of node {other}"),
        ));
    }
    Ok(())
}

fn publish_vtep(node: &mut Node, existing: Option<&Node>, vni: u32) -> Validation {
    let name = node.metadata.name.clone().unwrap_or_default();
    let given = node
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(BACKEND_DATA));
    let given_mac = match given {
        Some(text) => {
            let field = format!("metadata.annotations[{BACKEND_DATA}]");
            let data: BackendData = serde_json::from_str(text).map_err(|e| {
                FieldError::new(
                    &field,
                    format!(
                        "must be JSON like {{\"VNI\":1,\"VtepMAC\":\"0a:58:0a:f4:00:01\"}}: {e}"
                    ),
                )
            })?;
            let mac: MacAddr = data
                .vtep_mac
                .parse()
                .map_err(|m| FieldError::new(&field, m))?;
            if !mac.is_unicast() {
                return Err(FieldError::new(
                    field,
                    format!("VtepMAC {mac} is a multicast address"),
                ));
            }
            Some(mac)
        }
        None => None,
    };
    let published_mac = existing
        .and_then(node_model::backend_data)
        .and_then(|data| data.vtep_mac.parse::<MacAddr>().ok());
    let mac = given_mac
        .or(published_mac)
        .unwrap_or_else(|| MacAddr::derived_from_name(&name));
    let internal_ip = node_model::internal_ip(node);
    let annotations = node.metadata.annotations.get_or_insert_with(BTreeMap::new);
    match internal_ip {
        Some(ip) => {
            let data = BackendData {
                vni,
                vtep_mac: mac.to_string(),
            };
            let json = serde_json::to_string(&data).unwrap_or_default();
            annotations.insert(BACKEND_DATA.to_owned(), json);
            annotations.insert(BACKEND_TYPE.to_owned(), "vxlan".to_owned());
            annotations.insert(PUBLIC_IP.to_owned(), ip.to_string());
            annotations.insert(KUBE_SUBNET_MANAGER.to_owned(), "true".to_owned());
        }
        None => {
            // No underlay address yet: no tunnel endpoint to publish.
            annotations.remove(PUBLIC_IP);
            annotations.remove(BACKEND_DATA);
        }
    }
    Ok(())
}
