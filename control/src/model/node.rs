//! What a Node publishes for the overlay, flannel-style: its podCIDR and its VXLAN tunnel
//! endpoint (underlay IP and VTEP MAC) in the `flannel.alpha.coreos.com/*` annotations.
//!
//! Invariant: [`vtep`] returns a VTEP only when both the public IP and the backend data parse,
//! so a half-published node is never programmed as a tunnel peer.

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

/// `spec.podCIDR`, if set and well-formed.
pub fn pod_cidr(node: &Node) -> Option<Cidr> {
    Cidr::parse_canonical(node.spec.as_ref()?.pod_cidr.as_deref()?).ok()
}

fn annotation<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
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
    let node_ip = annotation(node, PUBLIC_IP)?.parse().ok()?;
    let data = backend_data(node)?;
    Some(Vtep {
        node_ip,
        mac: data.vtep_mac.parse().ok()?,
        vni: data.vni,
        pod_cidr: pod_cidr(node)?,
    })
}
