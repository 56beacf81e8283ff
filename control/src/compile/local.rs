//! [`NodeLocal`]: what only the node itself knows about its dataplane (NIC addresses, the
//! underlay next hop, MTU, masquerade exemptions, NodePort addresses, SNAT ports), as opposed to
//! what the cluster state says. The node process fills it from its own configuration; the
//! defaults are the ecosystem's (flannel VXLAN, a 1500-byte underlay, Cilium's Maglev table
//! size), except SNAT ports: 61000-65535, above Linux's ephemeral range 32768-60999, since the
//! host's own flows are not tracked and a masquerade port must never be one the host uses.
//!
//! Invariant: everything here is local to one node; two nodes may differ in any field without
//! the cluster state changing.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use dataplane::tables::node::OverlayMode;
use dataplane::tables::services::DEFAULT_MAGLEV_M;

use crate::net::{Cidr, MacAddr};

/// The node-local part of a node's dataplane configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeLocal {
    /// MAC of the uplink NIC; `None` derives a stable one from the node name.
    pub uplink_mac: Option<MacAddr>,
    /// MAC of the underlay next hop (the router) for everything that leaves by the uplink.
    pub uplink_next_hop_mac: MacAddr,
    /// Peers on the same L2 segment as this node, by node name, with their uplink MAC: VXLAN
    /// frames to them go straight to that MAC instead of the next hop.
    pub peer_underlay_macs: BTreeMap<String, MacAddr>,
    /// MAC of the node's kernel stack behind the host port; `None` derives one.
    pub host_mac: Option<MacAddr>,
    /// MAC pods see for their gateway; `None` derives one.
    pub gateway_mac: Option<MacAddr>,
    pub overlay: OverlayMode,
    /// The node's IPv6 underlay address (`nodeIP6`): VXLAN over IPv6 (`stages::vxlan6`).
    pub node_ip6: Option<std::net::Ipv6Addr>,
    /// MTU of the underlay link (pods get 50 bytes less in VXLAN mode, 70 with `node_ip6`).
    pub underlay_mtu: u16,
    /// Destinations pods reach without masquerade besides the cluster CIDR.
    pub masquerade_exempt: Vec<Cidr>,
    /// Addresses NodePorts answer on; empty means the node's primary IP (kube-proxy's
    /// `nodePortAddresses: [primary]`).
    pub node_port_addresses: Vec<Ipv4Addr>,
    /// `nodePortAddresses` CIDRs: NodePorts also answer on every address of the Node (its
    /// InternalIPs and ExternalIPs) inside one of them; with only CIDRs listed, only there.
    pub node_port_cidrs: Vec<Cidr>,
    /// Inclusive range masquerade ports are drawn from.
    pub snat_ports: (u16, u16),
    /// Largest Maglev table (a prime).
    pub maglev_table_size: usize,
    /// Whether Services' `spec.externalIPs` are programmed (user-needs D8: an off switch, since
    /// anyone who may create a Service can claim any address with them).
    pub external_ips: bool,
}

impl Default for NodeLocal {
    fn default() -> Self {
        NodeLocal {
            uplink_mac: None,
            uplink_next_hop_mac: MacAddr::derived_from_name("underlay-next-hop"),
            peer_underlay_macs: BTreeMap::new(),
            host_mac: None,
            gateway_mac: None,
            overlay: OverlayMode::Vxlan,
            node_ip6: None,
            underlay_mtu: 1500,
            masquerade_exempt: Vec::new(),
            node_port_addresses: Vec::new(),
            node_port_cidrs: Vec::new(),
            snat_ports: (61000, 65535),
            maglev_table_size: DEFAULT_MAGLEV_M,
            external_ips: true,
        }
    }
}
