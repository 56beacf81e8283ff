//! The IPv6 side of a node's snapshot ([`V6Tables`]), read from what the objects say: the
//! Node's `spec.podCIDRs` IPv6 entry and IPv6 addresses, the local pods' IPv6 `status.podIPs`,
//! the other Nodes' IPv6 podCIDRs, the IPv6 Service ranges and the IPv6 Service frontends
//! (`v6_services`).
//!
//! Invariants:
//! - A node without an IPv6 podCIDR gets empty tables (IPv6 frames are then `ipv6_disabled`);
//!   so does one whose pods' MTU is below IPv6's minimum of 1280 (reported as a problem).
//! - A local pod's IPv6 side shares its port and MAC with its IPv4 side (one interface); pods
//!   with only an IPv6 address are not programmed yet (reported), nor is the second pod that
//!   claims an IPv6 address, in namespace/name order (reported).
//! - Remote nodes are routed in IPv6 only through their VTEP in the route table (VXLAN on the
//!   IPv4 or IPv6 underlay, or routed): a Node missing from it is not in the IPv6 one either.
//! - IPv6 masquerade exemptions come from the node-local settings' IPv6 `masqueradeExempt`
//!   entries (pods with routable addresses reach those destinations unmasqueraded); the rest of
//!   pod traffic leaving the cluster is masqueraded to the node's first IPv6 address.
//! - IPv6 NodePorts answer on the node's first IPv6 address, or with `nodePortAddresses`
//!   listed, on its IPv6 addresses inside the listed CIDRs.
//! - The IPv6 cluster range is the cluster settings' IPv6 pod range (`secondaryClusterCIDR`, or
//!   `clusterCIDR` when IPv6 is primary); only without one, the common prefix of every Node's
//!   IPv6 podCIDR. It decides which destinations count as pod addresses (and so which are
//!   masqueraded), never widens what is routed.

use std::net::{IpAddr, Ipv6Addr};

use dataplane::cidr6::Cidr6;
use dataplane::tables::node::NodeConfig;
use dataplane::tables::ports::PortTable;
use dataplane::tables::routes::RouteTable;
use dataplane::tables::v6::{Pod6, Remote6, V6Node, V6Tables};
use k8s_openapi::api::core::v1::{Node, Pod};

use super::Problem;
use super::local::NodeLocal;
use crate::state::ClusterState;

/// IPv6's minimum link MTU (RFC 8200 5).
const MIN_MTU: u16 = 1280;

pub(super) fn tables(
    state: &ClusterState,
    (node, local): (&NodeConfig, &NodeLocal),
    ports: &PortTable,
    routes: &RouteTable,
    problems: &mut Vec<Problem>,
) -> V6Tables {
    let Some(this) = state.node(&node.name) else {
        return V6Tables::default();
    };
    let Some(pod_cidr) = pod_cidr6(this) else {
        return V6Tables::default();
    };
    if node.pod_mtu() < MIN_MTU {
        problems.push(Problem::new(
            format!("Node {}", node.name),
            format!(
                "pods get an MTU of {} but IPv6 needs at least {MIN_MTU}; IPv6 not programmed",
                node.pod_mtu()
            ),
        ));
        return V6Tables::default();
    }
    let remotes: Vec<Remote6> = routes
        .nodes()
        .iter()
        .filter_map(|r| {
            let other = state.node(&r.name)?;
            Some(Remote6 {
                name: r.name.clone(),
                pod_cidr: pod_cidr6(other)?,
                node_ip: r.node_ip,
                node_ip6: r.node_ip6,
                node_ips: addresses6(other),
            })
        })
        .collect();
    let cluster_cidr = cluster_cidr6(state, pod_cidr, &remotes);
    let service_cidrs = crate::apiserver::service_cidr::ranges(state)
        .iter()
        .filter_map(|c| match c.network() {
            IpAddr::V6(net) => Cidr6::new(net, c.prefix_len()).ok(),
            IpAddr::V4(_) => None,
        })
        .collect();
    let mut pods = Vec::new();
    // In namespace/name order, so ties go the same way whatever the table's hash order.
    let mut locals: Vec<_> = ports.pods().collect();
    locals.sort_by(|a, b| a.name.cmp(&b.name));
    for local in locals {
        let Some((namespace, name)) = local.name.split_once('/') else {
            continue;
        };
        let Some(ip) = state.pod(namespace, name).and_then(pod_ip6) else {
            continue;
        };
        if !pod_cidr.contains(ip) {
            problems.push(Problem::new(
                format!("Pod {}", local.name),
                format!("IPv6 address {ip} is outside the node's IPv6 podCIDR {pod_cidr}; not programmed in IPv6"),
            ));
            continue;
        }
        if let Some(owner) = pods.iter().find(|p: &&Pod6| p.ip == ip) {
            problems.push(Problem::new(
                format!("Pod {}", local.name),
                format!(
                    "IPv6 address {ip} is also pod {}'s; not programmed in IPv6",
                    owner.name
                ),
            ));
            continue;
        }
        pods.push(Pod6 {
            name: local.name.clone(),
            ip,
            mac: local.mac,
            port: local.port,
            ip4: Some(local.ip),
        });
    }
    for pod in state.pods_on_node(&node.name) {
        if pod_ip6(pod).is_some() && pod_ip4(pod).is_none() {
            problems.push(Problem::new(
                format!("Pod {}", super::ports::pod_key(pod)),
                "has only an IPv6 address: IPv6-only pods are not programmed yet",
            ));
        }
    }
    let mut v6 = V6Node::example(pod_cidr, cluster_cidr);
    v6.service_cidrs = service_cidrs;
    v6.node_ips = addresses6(this);
    v6.masquerade_exempt = local
        .masquerade_exempt
        .iter()
        .filter_map(|c| match c.network() {
            IpAddr::V6(net) => Cidr6::new(net, c.prefix_len()).ok(),
            IpAddr::V4(_) => None,
        })
        .collect();
    let node_port_ips = node_port_addresses6(local, &v6.node_ips);
    let place = super::v6_services::Place6 {
        node_ips: &node_port_ips,
        external_ips: local.external_ips,
    };
    let services = super::v6_services::frontends(state, place);
    V6Tables::new(v6, pods, remotes).with_services(services)
}

/// The IPv6 addresses NodePorts answer on (kube-proxy's `nodePortAddresses`, per family):
/// without a list, the node's primary IPv6 address (its first); with one, the node's IPv6
/// addresses inside its CIDRs (listed single addresses are IPv4: they name none here).
fn node_port_addresses6(local: &NodeLocal, node_ips: &[Ipv6Addr]) -> Vec<Ipv6Addr> {
    if local.node_port_addresses.is_empty() && local.node_port_cidrs.is_empty() {
        return node_ips.first().copied().into_iter().collect();
    }
    node_ips
        .iter()
        .copied()
        .filter(|ip| {
            local
                .node_port_cidrs
                .iter()
                .any(|c| c.contains(IpAddr::V6(*ip)))
        })
        .collect()
}

/// The Node's IPv6 pod prefix (the first IPv6 entry of `spec.podCIDRs` / `spec.podCIDR`).
fn pod_cidr6(node: &Node) -> Option<Cidr6> {
    let spec = node.spec.as_ref()?;
    spec.pod_cidr
        .iter()
        .chain(spec.pod_cidrs.iter().flatten())
        .find_map(|text| text.parse::<Cidr6>().ok())
}

/// The Node's IPv6 InternalIPs, then its IPv6 ExternalIPs, each once (the first is the
/// masquerade source and primary NodePort address).
fn addresses6(node: &Node) -> Vec<Ipv6Addr> {
    let mut out = Vec::new();
    let listed = node
        .status
        .iter()
        .flat_map(|s| s.addresses.iter().flatten());
    for kind in ["InternalIP", "ExternalIP"] {
        for a in listed.clone().filter(|a| a.type_ == kind) {
            if let Ok(v6) = a.address.parse::<Ipv6Addr>()
                && !out.contains(&v6)
            {
                out.push(v6);
            }
        }
    }
    out
}

fn pod_ips(pod: &Pod) -> impl Iterator<Item = IpAddr> + '_ {
    let status = pod.status.as_ref();
    status
        .and_then(|s| s.pod_ip.as_deref())
        .into_iter()
        .chain(
            status
                .into_iter()
                .flat_map(|s| s.pod_ips.iter().flatten().map(|p| p.ip.as_str())),
        )
        .filter_map(|text| text.parse().ok())
}

/// The pod's IPv6 address (from `status.podIPs`, or `status.podIP` in an IPv6-only cluster).
pub(super) fn pod_ip6(pod: &Pod) -> Option<Ipv6Addr> {
    if super::ports::is_host_network(pod) || crate::model::pod::is_terminal(pod) {
        return None;
    }
    pod_ips(pod).find_map(|ip| match ip {
        IpAddr::V6(v6) => Some(v6),
        IpAddr::V4(_) => None,
    })
}

fn pod_ip4(pod: &Pod) -> Option<std::net::Ipv4Addr> {
    pod_ips(pod).find_map(|ip| match ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(_) => None,
    })
}

/// The cluster's IPv6 pod range: the cluster settings' IPv6 entry (`clusterCIDR` in an
/// IPv6-primary cluster, `secondaryClusterCIDR` in an IPv4-primary dual-stack one). Settings
/// without one (a Node given an IPv6 podCIDR by hand) fall back to the common prefix of the
/// Nodes' IPv6 podCIDRs.
fn cluster_cidr6(state: &ClusterState, pod_cidr: Cidr6, remotes: &[Remote6]) -> Cidr6 {
    let configured = state
        .settings()
        .cluster_cidr_of(crate::net::IpFamily::IPv6)
        .and_then(|c| match c.network() {
            IpAddr::V6(net) => Cidr6::new(net, c.prefix_len()).ok(),
            IpAddr::V4(_) => None,
        });
    configured.unwrap_or_else(|| {
        remotes
            .iter()
            .fold(pod_cidr, |acc, r| common_prefix(acc, r.pod_cidr))
    })
}

/// The longest prefix that covers both blocks.
fn common_prefix(a: Cidr6, b: Cidr6) -> Cidr6 {
    let (x, y) = (u128::from(a.network()), u128::from(b.network()));
    let shared = (x ^ y)
        .leading_zeros()
        .min(u32::from(a.prefix().min(b.prefix())));
    // `shared` is at most 128, so the block is always valid.
    Cidr6::new(a.network(), shared as u8).unwrap_or(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_prefix_covers_both() {
        let a: Cidr6 = "fd00:10:244:1::/64"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let b: Cidr6 = "fd00:10:244:2::/64"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let c = common_prefix(a, b);
        assert_eq!(c.to_string(), "fd00:10:244::/62");
        assert_eq!(common_prefix(a, a), a);
    }
}
