//! The route table: every other Node that publishes a podCIDR and a VXLAN tunnel endpoint
//! (flannel's annotations) becomes a [`RemoteNode`].
//!
//! Invariants: this node never routes to itself; a half-published Node (no VTEP, no IPv4
//! podCIDR, no underlay address) is reported and left out rather than programmed with guessed values; the outer
//! destination MAC is the underlay next hop unless [`NodeLocal::peer_underlay_macs`] names the
//! peer (same L2 segment).

use dataplane::tables::routes::{RemoteNode, RouteTable};

use super::Problem;
use super::local::NodeLocal;
use super::node::{to_dp_cidr, to_dp_mac, to_v4};
use crate::model::node as node_model;
use crate::state::ClusterState;

pub(super) fn route_table(
    state: &ClusterState,
    this_node: &str,
    local: &NodeLocal,
    problems: &mut Vec<Problem>,
) -> RouteTable {
    let mut remote = Vec::new();
    for node in state.nodes() {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        if name == this_node || node_model::pod_cidr(node).is_none() {
            continue;
        }
        let problem = |message: &str| Problem::new(format!("Node {name}"), message.to_owned());
        let vtep = match node_model::published_vtep(node) {
            Ok(vtep) => vtep,
            Err(why) => {
                problems.push(problem(&format!(
                    "publishes no usable VXLAN tunnel endpoint (flannel annotations): {why}; not routed"
                )));
                continue;
            }
        };
        let Some(pod_cidr) = to_dp_cidr(&vtep.pod_cidr) else {
            problems.push(problem("podCIDR is not IPv4; not routed"));
            continue;
        };
        // The underlay addresses: `public-ip` (IPv4, or IPv6 on an IPv6-only node) and
        // `public-ipv6` (`underlay6`).
        let node_ip6 = match super::underlay6::peer_ip6(node, vtep.node_ip) {
            Ok(ip6) => ip6,
            Err(why) => {
                problems.push(problem(&why));
                None
            }
        };
        let node_ip = to_v4(vtep.node_ip).unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
        if node_ip.is_unspecified() && node_ip6.is_none() {
            problems.push(problem("publishes no underlay address; not routed"));
            continue;
        }
        if vtep.vni != state.settings().vxlan_vni {
            problems.push(problem(&format!(
                "publishes VNI {} but the cluster uses {}",
                vtep.vni,
                state.settings().vxlan_vni
            )));
        }
        let underlay = local
            .peer_underlay_macs
            .get(name)
            .copied()
            .unwrap_or(local.uplink_next_hop_mac);
        remote.push(RemoteNode {
            name: name.to_owned(),
            node_ip,
            node_ip6,
            pod_cidr,
            vtep_mac: to_dp_mac(vtep.mac),
            underlay_mac: to_dp_mac(underlay),
        });
    }
    RouteTable::new(remote)
}
