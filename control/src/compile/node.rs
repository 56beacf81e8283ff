//! The node's own [`NodeConfig`]: addresses and CIDRs from its Node object and the cluster
//! settings, MACs and link settings from [`NodeLocal`].
//!
//! Invariants: the IPv4 tables come from the IPv4 ranges wherever they sit in the settings
//! (primary in IPv4-primary clusters, secondary in IPv6-primary ones); an IPv6-only cluster is
//! refused with a message saying why (the dataplane's pod ports are keyed by IPv4 addresses).
//! The gateway is the first address of the podCIDR (the bridge CNI's `.1`); MACs
//! not configured locally are derived from the node name and a role, so they are stable across
//! restarts and differ between roles and nodes; the VTEP MAC is the one the Node publishes.

use std::net::{IpAddr, Ipv4Addr};

use dataplane::cidr::Cidr as DpCidr;
use dataplane::tables::node::NodeConfig;
use dataplane::wire::MacAddr as DpMac;
use k8s_openapi::api::core::v1::Node;

use super::local::NodeLocal;
use super::{CompileError, Problem};
use crate::model::node as node_model;
use crate::net::{Cidr, IpFamily, MacAddr};
use crate::settings::ClusterSettings;
use crate::state::ClusterState;

/// The IPv4 address, if `ip` is one.
pub(crate) fn to_v4(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(_) => None,
    }
}

/// The dataplane's (IPv4-only) form of a CIDR.
pub(crate) fn to_dp_cidr(cidr: &Cidr) -> Option<DpCidr> {
    DpCidr::new(to_v4(cidr.network())?, cidr.prefix_len()).ok()
}

pub(crate) fn to_dp_mac(mac: MacAddr) -> DpMac {
    DpMac(mac.0)
}

/// A stable MAC for one of a node's interfaces (`uplink`, `host`, `gateway`).
pub fn derived_mac(node: &str, role: &str) -> DpMac {
    to_dp_mac(MacAddr::derived_from_name(&format!("{node}/{role}")))
}

/// The MAC the bridge CNI gives a pod: `0a:58` followed by the pod's IPv4 address.
pub fn pod_mac(ip: Ipv4Addr) -> DpMac {
    let [a, b, c, d] = ip.octets();
    DpMac([0x0a, 0x58, a, b, c, d])
}

/// The node's underlay IPv4 address (its first InternalIP).
pub fn node_ip(node: &Node) -> Option<Ipv4Addr> {
    node_model::internal_ip(node).and_then(to_v4)
}

/// The node's IPv4 InternalIPs and ExternalIPs besides `node_ip`, each once.
pub fn other_addresses(node: &Node, node_ip: Ipv4Addr) -> Vec<Ipv4Addr> {
    let mut others: Vec<Ipv4Addr> = Vec::new();
    for ip in node_model::addresses(node).filter_map(to_v4) {
        if ip != node_ip && !others.contains(&ip) {
            others.push(ip);
        }
    }
    others
}

/// The VTEP MAC the node publishes, or the one the API server would derive for it.
fn vtep_mac(node: &Node, name: &str) -> DpMac {
    node_model::backend_data(node)
        .and_then(|data| data.vtep_mac.parse::<MacAddr>().ok())
        .map_or_else(|| to_dp_mac(MacAddr::derived_from_name(name)), to_dp_mac)
}

/// The cluster's IPv4 pod and Service ranges, primary or secondary.
fn ipv4_ranges(settings: &ClusterSettings) -> Result<(DpCidr, DpCidr), String> {
    let of = |cidr: Option<Cidr>, what: &str| {
        cidr.as_ref().and_then(to_dp_cidr).ok_or_else(|| {
            format!(
                "the cluster has no IPv4 {what}: IPv6-only clusters are not supported yet (the \
                 dataplane keys pod ports and MACs by the pod's IPv4 address); add an IPv4 range \
                 as the secondary one (dual-stack, IPv6 primary)"
            )
        })
    };
    Ok((
        of(settings.cluster_cidr_of(IpFamily::IPv4), "cluster CIDR")?,
        of(settings.service_cidr_of(IpFamily::IPv4), "service CIDR")?,
    ))
}

pub(super) fn node_config(
    state: &ClusterState,
    name: &str,
    local: &NodeLocal,
    problems: &mut Vec<Problem>,
) -> Result<NodeConfig, CompileError> {
    let fail = |message: &str| CompileError {
        node: name.to_owned(),
        message: message.to_owned(),
    };
    let node = state.node(name).ok_or_else(|| fail("no such Node"))?;
    // An IPv6-only underlay (`nodeIP6` and no IPv4 InternalIP): no IPv4 node address.
    let node_ip = match (node_ip(node), local.node_ip6) {
        (Some(ip), _) => ip,
        (None, Some(_)) => Ipv4Addr::UNSPECIFIED,
        (None, None) => return Err(fail("the Node has no IPv4 InternalIP (nor nodeIP6)")),
    };
    let pod_cidr = node_model::pod_cidr(node)
        .as_ref()
        .and_then(to_dp_cidr)
        .ok_or_else(|| fail("the Node has no IPv4 spec.podCIDR"))?;
    let settings = state.settings();
    let (cluster_cidr, service_cidr) = ipv4_ranges(settings).map_err(|e| fail(&e))?;
    let gateway_ip = Ipv4Addr::from(u32::from(pod_cidr.network()).saturating_add(1));
    let masquerade_exempt = local
        .masquerade_exempt
        .iter()
        .filter_map(|cidr| {
            let v4 = to_dp_cidr(cidr);
            // IPv6 exemptions are the IPv6 side's (`v6`).
            if v4.is_none() && cidr.network().is_ipv4() {
                problems.push(Problem::new(
                    format!("node-config {name}"),
                    format!("masquerade exemption {cidr} is not IPv4; ignored"),
                ));
            }
            v4
        })
        .collect();
    let other_addresses = other_addresses(node, node_ip);
    let mut node_port_addresses =
        if local.node_port_addresses.is_empty() && local.node_port_cidrs.is_empty() {
            vec![node_ip]
                .into_iter()
                .filter(|ip| !ip.is_unspecified())
                .collect()
        } else {
            local.node_port_addresses.clone()
        };
    for ip in std::iter::once(node_ip).chain(other_addresses.iter().copied()) {
        let listed = local
            .node_port_cidrs
            .iter()
            .any(|c| c.contains(IpAddr::V4(ip)));
        if listed && !node_port_addresses.contains(&ip) {
            node_port_addresses.push(ip);
        }
    }
    if node_port_addresses.is_empty() {
        problems.push(Problem::new(
            format!("node-config {name}"),
            "nodePortAddresses: no address of the Node is inside the listed CIDRs; NodePorts answer nowhere on this node",
        ));
    }
    Ok(NodeConfig {
        name: name.to_owned(),
        node_ip,
        node_ip6: local.node_ip6,
        uplink_mac: local
            .uplink_mac
            .map_or_else(|| derived_mac(name, "uplink"), to_dp_mac),
        uplink_next_hop_mac: to_dp_mac(local.uplink_next_hop_mac),
        vtep_mac: vtep_mac(node, name),
        gateway_ip,
        gateway_mac: local
            .gateway_mac
            .map_or_else(|| derived_mac(name, "gateway"), to_dp_mac),
        host_mac: local
            .host_mac
            .map_or_else(|| derived_mac(name, "host"), to_dp_mac),
        pod_cidr,
        cluster_cidr,
        service_cidr,
        extra_service_cidrs: crate::apiserver::service_cidr::ranges(state)
            .iter()
            .skip(1)
            .filter_map(to_dp_cidr)
            .collect(),
        masquerade_exempt,
        other_addresses,
        node_port_addresses,
        overlay: local.overlay,
        vxlan_port: settings.vxlan_port,
        vni: settings.vxlan_vni,
        underlay_mtu: local.underlay_mtu,
        snat_ports: local.snat_ports,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_ranges_come_from_either_position_and_ipv6_only_is_refused_with_the_reason() {
        let v4_primary = r#"{"clusterCIDR":"10.244.0.0/16","secondaryClusterCIDR":"fd00:10:244::/56","serviceCIDR":"10.96.0.0/12","secondaryServiceCIDR":"fd00:10:96::/108"}"#;
        let v6_primary = r#"{"clusterCIDR":"fd00:10:244::/56","secondaryClusterCIDR":"10.244.0.0/16","serviceCIDR":"fd00:10:96::/108","secondaryServiceCIDR":"10.96.0.0/12","clusterDNS":"fd00:10:96::a","loadBalancerPool":"2001:db8:51::/120","secondaryLoadBalancerPool":"198.51.100.0/24"}"#;
        for json in [v4_primary, v6_primary] {
            let settings = ClusterSettings::from_json(json.as_bytes()).unwrap();
            let (cluster, service) = ipv4_ranges(&settings).unwrap();
            assert_eq!(cluster.to_string(), "10.244.0.0/16", "{json}");
            assert_eq!(service.to_string(), "10.96.0.0/12", "{json}");
        }
        let v6_only = r#"{"clusterCIDR":"fd00:10:244::/56","serviceCIDR":"fd00:10:96::/108","clusterDNS":"fd00:10:96::a","loadBalancerPool":"2001:db8:51::/120"}"#;
        let settings = ClusterSettings::from_json(v6_only.as_bytes()).unwrap();
        let error = ipv4_ranges(&settings).unwrap_err();
        assert!(
            error.contains("IPv6-only clusters are not supported yet"),
            "{error}"
        );
    }
}
