//! Node admission plus the node IPAM and flannel controllers, which run synchronously: a Node
//! gets a podCIDR from the cluster CIDR of each cluster family (`spec.podCIDRs`, primary first,
//! each kept for its lifetime) and publishes its VXLAN tunnel
//! endpoint flannel-style, `public-ip` from its InternalIP and `backend-data` with the VNI and a
//! VTEP MAC (the one given in the manifest, else the one already published, else one derived
//! from the node name); a given `public-ipv6` (the IPv6 underlay address) is kept if it is one.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Node, NodeSpec};

use super::alloc;
use crate::model::node::{
    self as node_model, BACKEND_DATA, BACKEND_TYPE, BackendData, KUBE_SUBNET_MANAGER, PUBLIC_IP,
    PUBLIC_IPV6,
};
use crate::net::{Cidr, IpFamily, MacAddr};
use crate::state::ClusterState;
use crate::validate::{FieldError, Validation};

/// Validates a Node, assigns its podCIDRs and publishes its VTEP annotations.
pub fn admit(node: &mut Node, existing: Option<&Node>, state: &ClusterState) -> Validation {
    validate_addresses(node)?;
    let requested = requested_pod_cidrs(node)?;
    let old = existing.map(node_model::pod_cidrs).unwrap_or_default();
    let pod_cidrs = assign_pod_cidrs(node, &requested, &old, state)?;
    let texts: Vec<String> = pod_cidrs.iter().map(ToString::to_string).collect();
    let spec = node.spec.get_or_insert_with(NodeSpec::default);
    spec.pod_cidr = texts.first().cloned();
    spec.pod_cidrs = Some(texts);
    publish_vtep(node, existing, state.settings().vxlan_vni)
}

/// One podCIDR per cluster family, in the cluster's order (primary first): the one the node
/// holds, else the requested one (checked), else the lowest free prefix of that family's
/// cluster CIDR. A held prefix never changes.
fn assign_pod_cidrs(
    node: &Node,
    requested: &[Cidr],
    old: &[Cidr],
    state: &ClusterState,
) -> Result<Vec<Cidr>, FieldError> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let settings = state.settings();
    let families = settings.families();
    if let Some(stray) = requested
        .iter()
        .find(|c| !families.contains(&IpFamily::of_cidr(c)))
    {
        return Err(FieldError::new(
            "spec.podCIDRs",
            format!(
                "{stray} is {}: this cluster has no {} pod range",
                IpFamily::of_cidr(stray),
                IpFamily::of_cidr(stray)
            ),
        ));
    }
    let mut assigned = Vec::new();
    for family in families {
        let of_family = |list: &[Cidr]| {
            list.iter()
                .find(|c| IpFamily::of_cidr(c) == family)
                .copied()
        };
        let Some(cluster) = settings.cluster_cidr_of(family) else {
            continue;
        };
        let cidr = match (of_family(requested), of_family(old)) {
            (Some(new), Some(old)) if new != old => {
                return Err(FieldError::new(
                    "spec.podCIDR",
                    format!("field is immutable: the node holds {old}"),
                ));
            }
            (_, Some(old)) => old,
            (Some(new), None) => {
                check_requested(new, cluster, &name, state)?;
                new
            }
            (None, None) => {
                let held: Vec<Cidr> = other_pod_cidrs(state, &name).map(|(_, c)| c).collect();
                let mask = settings.node_cidr_mask_size_of(family);
                alloc::pick_pod_cidr(&cluster, mask, &held).ok_or_else(|| {
                    FieldError::new(
                        "spec.podCIDR",
                        format!("no free /{mask} left in the cluster CIDR {cluster}"),
                    )
                })?
            }
        };
        assigned.push(cidr);
    }
    Ok(assigned)
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

/// `spec.podCIDR` and `spec.podCIDRs` as written: at most two, one per family, the first
/// equal to `spec.podCIDR` (upstream's Node validation).
fn requested_pod_cidrs(node: &Node) -> Result<Vec<Cidr>, FieldError> {
    let Some(spec) = &node.spec else {
        return Ok(Vec::new());
    };
    let single = spec.pod_cidr.as_deref().filter(|c| !c.is_empty());
    let list: Vec<&str> = spec
        .pod_cidrs
        .iter()
        .flatten()
        .map(String::as_str)
        .collect();
    if let (Some(a), Some(b)) = (single, list.first())
        && a != *b
    {
        return Err(FieldError::new(
            "spec.podCIDRs",
            format!("must start with spec.podCIDR {a:?}"),
        ));
    }
    if list.len() > 2 {
        return Err(FieldError::new(
            "spec.podCIDRs",
            format!(
                "Invalid value: {list:?}: may specify no more than one CIDR for each IP family"
            ),
        ));
    }
    let texts = if list.is_empty() {
        single.into_iter().collect()
    } else {
        list
    };
    let mut cidrs: Vec<Cidr> = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let field = if i == 0 {
            "spec.podCIDR".to_owned()
        } else {
            format!("spec.podCIDRs[{i}]")
        };
        let cidr = Cidr::parse_canonical(text).map_err(|m| FieldError::new(field, m))?;
        if cidrs.iter().any(|c| c.is_ipv4() == cidr.is_ipv4()) {
            return Err(FieldError::new(
                "spec.podCIDRs",
                format!(
                    "Invalid value: {texts:?}: may specify no more than one CIDR for each IP family"
                ),
            ));
        }
        cidrs.push(cidr);
    }
    Ok(cidrs)
}

fn other_pod_cidrs<'a>(
    state: &'a ClusterState,
    name: &'a str,
) -> impl Iterator<Item = (String, Cidr)> + 'a {
    state
        .nodes()
        .filter(move |n| n.metadata.name.as_deref() != Some(name))
        .flat_map(|n| {
            let name = n.metadata.name.clone().unwrap_or_default();
            node_model::pod_cidrs(n)
                .into_iter()
                .map(move |cidr| (name.clone(), cidr))
        })
}

fn check_requested(cidr: Cidr, cluster: Cidr, name: &str, state: &ClusterState) -> Validation {
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
    if let Some(text) = annotations.get(PUBLIC_IPV6) {
        match text.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) if !ip.is_unspecified() && !ip.is_multicast() => {}
            _ => {
                return Err(FieldError::new(
                    format!("metadata.annotations[{PUBLIC_IPV6}]"),
                    format!("{text:?} must be the node's unicast IPv6 underlay address"),
                ));
            }
        }
    }
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
