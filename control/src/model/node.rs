//! What a Node publishes for the overlay, flannel-style: its podCIDR and its VXLAN tunnel
//! endpoint (underlay IP and VTEP MAC) in the `flannel.alpha.coreos.com/*` annotations.
//!
//! Invariants: [`vtep`] returns a VTEP only when both the public IP and the backend data parse,
//! so a half-published node is never programmed as a tunnel peer ([`published_vtep`] says which
//! annotation is wrong and how); [`pod_cidr`] prefers an IPv4 prefix from `spec.podCIDR` or
//! `spec.podCIDRs` (dual-stack nodes list the IPv6 one first on IPv6-primary clusters).

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Node;
use serde::{Deserialize, Serialize};

use crate::net::{Cidr, MacAddr};

/// `{"VNI":1,"VtepMAC":"..."}`, flannel's VXLAN backend data.
pub const BACKEND_DATA: &str = "flannel.alpha.coreos.com/backend-data";
/// Always `vxlan` here.
pub const BACKEND_TYPE: &str = "flannel.alpha.coreos.com/backend-type";
/// The node's underlay address, the outer IP of VXLAN packets to it.
pub const PUBLIC_IP: &str = "flannel.alpha.coreos.com/public-ip";
/// The node's IPv6 underlay address (flannel's dual-stack/IPv6 annotation): the outer IP of
/// IPv6-outer VXLAN to it (`compile::underlay6`).
pub const PUBLIC_IPV6: &str = "flannel.alpha.coreos.com/public-ipv6";
/// flannel's marker that the subnet came from the Kubernetes API.
pub const KUBE_SUBNET_MANAGER: &str = "flannel.alpha.coreos.com/kube-subnet-manager";

/// The JSON inside the backend-data annotation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendData {
    #[serde(rename = "VNI")]
    pub vni: u32,
    #[serde(rename = "VtepMAC")]
    pub vtep_mac: String,
}

/// A node's tunnel endpoint and the pod prefix behind it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vtep {
    pub node_ip: IpAddr,
    pub mac: MacAddr,
    pub vni: u32,
    pub pod_cidr: Cidr,
}

/// The first `InternalIP` in `status.addresses`.
pub fn internal_ip(node: &Node) -> Option<IpAddr> {
    node.status
        .as_ref()?
        .addresses
        .iter()
        .flatten()
        .find(|a| a.type_ == "InternalIP")
        .and_then(|a| a.address.parse().ok())
}

/// Every InternalIP and ExternalIP of the node, in the order the Node lists them.
pub fn addresses(node: &Node) -> impl Iterator<Item = IpAddr> + '_ {
    node.status
        .iter()
        .flat_map(|s| s.addresses.iter().flatten())
        .filter(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
        .filter_map(|a| a.address.parse().ok())
}

/// The node's pod prefix: the first IPv4 one of `spec.podCIDR` and `spec.podCIDRs`, else the
/// first well-formed one of them (so an IPv6-only node is reported as such, not as missing).
pub fn pod_cidr(node: &Node) -> Option<Cidr> {
    let spec = node.spec.as_ref()?;
    let parsed: Vec<Cidr> = spec
        .pod_cidr
        .iter()
        .chain(spec.pod_cidrs.iter().flatten())
        .filter_map(|text| Cidr::parse_canonical(text).ok())
        .collect();
    parsed
        .iter()
        .find(|cidr| cidr.network().is_ipv4())
        .or(parsed.first())
        .copied()
}

/// Every well-formed prefix of `spec.podCIDRs` (else `spec.podCIDR`), in the Node's order
/// (primary family first), each once.
pub fn pod_cidrs(node: &Node) -> Vec<Cidr> {
    let Some(spec) = node.spec.as_ref() else {
        return Vec::new();
    };
    let mut cidrs: Vec<Cidr> = Vec::new();
    let listed = spec.pod_cidrs.iter().flatten();
    for text in listed.chain(spec.pod_cidr.iter()) {
        if let Ok(cidr) = Cidr::parse_canonical(text)
            && !cidrs.contains(&cidr)
        {
            cidrs.push(cidr);
        }
    }
    cidrs
}

pub(crate) fn annotation<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    node.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

/// The backend data a node publishes, if present and well-formed.
pub fn backend_data(node: &Node) -> Option<BackendData> {
    serde_json::from_str(annotation(node, BACKEND_DATA)?).ok()
}

/// The node's VTEP as published in its annotations, with its podCIDR.
pub fn vtep(node: &Node) -> Option<Vtep> {
    published_vtep(node).ok()
}

/// The node's VTEP as published in its annotations, with its podCIDR, or what is missing or
/// malformed, naming the annotation or field.
pub fn published_vtep(node: &Node) -> Result<Vtep, String> {
    // An IPv6-only node may publish only `public-ipv6`.
    let public_ip = annotation(node, PUBLIC_IP)
        .or_else(|| annotation(node, PUBLIC_IPV6))
        .ok_or_else(|| format!("no {PUBLIC_IP}"))?;
    let node_ip = public_ip
        .parse()
        .map_err(|_| format!("{PUBLIC_IP} {public_ip:?} is not an IP address"))?;
    let text = annotation(node, BACKEND_DATA).ok_or_else(|| format!("no {BACKEND_DATA}"))?;
    let data: BackendData = serde_json::from_str(text).map_err(|e| {
        format!("{BACKEND_DATA} {text:?} is not {{\"VNI\":N,\"VtepMAC\":\"..\"}}: {e}")
    })?;
    if let Some(kind) = annotation(node, BACKEND_TYPE)
        && kind != "vxlan"
    {
        return Err(format!("{BACKEND_TYPE} is {kind:?}, not \"vxlan\""));
    }
    let mac = data
        .vtep_mac
        .parse()
        .map_err(|e| format!("{BACKEND_DATA}: VtepMAC: {e}"))?;
    Ok(Vtep {
        node_ip,
        mac,
        vni: data.vni,
        pod_cidr: pod_cidr(node).ok_or("no spec.podCIDR")?,
    })
}

/// The annotations that publish a VTEP as flannel's kube subnet manager does (`vxlan`
/// backend): [`BACKEND_TYPE`], [`BACKEND_DATA`], [`PUBLIC_IP`] and [`KUBE_SUBNET_MANAGER`].
pub fn flannel_annotations(
    public_ip: IpAddr,
    mac: MacAddr,
    vni: u32,
) -> std::collections::BTreeMap<String, String> {
    let data = serde_json::json!({"VNI": vni, "VtepMAC": mac.to_string()});
    [
        (BACKEND_TYPE, "vxlan".to_owned()),
        (BACKEND_DATA, data.to_string()),
        (PUBLIC_IP, public_ip.to_string()),
        (KUBE_SUBNET_MANAGER, "true".to_owned()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect()
}
