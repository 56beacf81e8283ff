//! The node's own configuration as the pipeline sees it: addresses, CIDRs, overlay settings.
//!
//! Invariant: built by the control thread and immutable inside a snapshot; every field
//! the pipeline reads per packet is a plain value (no lookups behind it).

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::cidr::Cidr;
use crate::wire::MacAddr;

/// How pod traffic reaches pods on other nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverlayMode {
    /// flannel-style VXLAN: encapsulate to the remote node's VTEP.
    Vxlan,
    /// The underlay routes pod CIDRs: send plain pod packets to the uplink next hop.
    Routed,
}

#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub name: String,
    /// The node's underlay address: VXLAN outer source, SNAT address, NodePort address.
    /// `0.0.0.0` on a node whose underlay is IPv6 only (then everything VXLAN carries rides
    /// `node_ip6`; see `stages::vxlan6`).
    pub node_ip: Ipv4Addr,
    /// The node's IPv6 underlay address, if the underlay has IPv6: the outer source of
    /// IPv6-outer VXLAN, answered by neighbour discovery on the uplink.
    pub node_ip6: Option<Ipv6Addr>,
    /// MAC of the uplink port (outer source MAC, ARP answers for `node_ip`).
    pub uplink_mac: MacAddr,
    /// MAC of the underlay next hop (router) for traffic that leaves through the uplink.
    pub uplink_next_hop_mac: MacAddr,
    /// This node's VTEP MAC (inner source MAC of encapsulated frames).
    pub vtep_mac: MacAddr,
    /// The pod gateway: pods route via this address; we answer ARP for it on pod ports.
    pub gateway_ip: Ipv4Addr,
    pub gateway_mac: MacAddr,
    /// MAC of the node's kernel stack behind the host port.
    pub host_mac: MacAddr,
    pub pod_cidr: Cidr,
    pub cluster_cidr: Cidr,
    pub service_cidr: Cidr,
    /// Further Service ranges (networking.k8s.io/v1 ServiceCIDR objects besides the default
    /// `service_cidr`): ClusterIPs come from them too, and their unallocated addresses drop.
    pub extra_service_cidrs: Vec<Cidr>,
    /// Destinations that pods reach without masquerade (besides the cluster CIDR).
    pub masquerade_exempt: Vec<Cidr>,
    /// The node's other addresses (further InternalIPs, ExternalIPs): the host's like
    /// `node_ip`, but never a source the dataplane writes.
    pub other_addresses: Vec<Ipv4Addr>,
    /// Addresses on which NodePorts answer (kube-proxy's `nodePortAddresses`).
    pub node_port_addresses: Vec<Ipv4Addr>,
    pub overlay: OverlayMode,
    pub vxlan_port: u16,
    pub vni: u32,
    /// MTU of the underlay link; pods get `underlay_mtu - 50` in VXLAN mode (`- 70` when the
    /// node has an IPv6 underlay address: IPv6-outer VXLAN is 20 bytes longer).
    pub underlay_mtu: u16,
    /// Range SNAT ports are drawn from (inclusive).
    pub snat_ports: (u16, u16),
}

impl NodeConfig {
    /// The largest IPv4 packet a pod may send or receive.
    pub fn pod_mtu(&self) -> u16 {
        match self.overlay {
            OverlayMode::Vxlan => self.underlay_mtu.saturating_sub(self.vxlan_overhead()),
            OverlayMode::Routed => self.underlay_mtu,
        }
    }

    /// What VXLAN adds to a pod's packet on the underlay: 50 bytes over IPv4, 70 over IPv6
    /// (the larger whenever this node may send IPv6-outer VXLAN, so one pod MTU fits both).
    #[inline]
    pub fn vxlan_overhead(&self) -> u16 {
        if self.node_ip6.is_some() {
            crate::wire::vxlan::OVERHEAD_V6 as u16
        } else {
            crate::wire::vxlan::OVERHEAD_V4 as u16
        }
    }

    /// `ip` is one of the node's own addresses (delivered to its host stack).
    #[inline]
    pub fn is_own_address(&self, ip: Ipv4Addr) -> bool {
        ip == self.node_ip || self.other_addresses.contains(&ip)
    }

    /// `ip` is inside the default Service CIDR or one of the extra ones.
    #[inline]
    pub fn in_service_cidrs(&self, ip: Ipv4Addr) -> bool {
        self.service_cidr.contains(ip) || self.extra_service_cidrs.iter().any(|c| c.contains(ip))
    }

    /// True if traffic from a pod to `dst` must be masqueraded to the node IP.
    pub fn needs_masquerade(&self, dst: Ipv4Addr) -> bool {
        !self.cluster_cidr.contains(dst)
            && !self.is_own_address(dst)
            && !self.masquerade_exempt.iter().any(|c| c.contains(dst))
    }

    /// A config with the ecosystem defaults around one node address (tests, examples).
    pub fn example(name: &str, node_ip: Ipv4Addr, pod_cidr: Cidr) -> Self {
        let gw = Ipv4Addr::from(u32::from(pod_cidr.network()) + 1);
        let ip = node_ip.octets();
        Self {
            name: name.to_string(),
            node_ip,
            node_ip6: None,
            uplink_mac: MacAddr([0x02, 0xfe, ip[0], ip[1], ip[2], ip[3]]),
            uplink_next_hop_mac: MacAddr([0x02, 0xfd, 0, 0, 0, 1]),
            vtep_mac: MacAddr([0x02, 0xfc, ip[0], ip[1], ip[2], ip[3]]),
            gateway_ip: gw,
            gateway_mac: MacAddr([0x02, 0xfb, ip[0], ip[1], ip[2], ip[3]]),
            host_mac: MacAddr([0x02, 0xfa, ip[0], ip[1], ip[2], ip[3]]),
            pod_cidr,
            cluster_cidr: Cidr::new(Ipv4Addr::new(10, 244, 0, 0), 16).unwrap_or(pod_cidr),
            service_cidr: Cidr::new(Ipv4Addr::new(10, 96, 0, 0), 12).unwrap_or(pod_cidr),
            extra_service_cidrs: Vec::new(),
            masquerade_exempt: Vec::new(),
            other_addresses: Vec::new(),
            node_port_addresses: vec![node_ip],
            overlay: OverlayMode::Vxlan,
            vxlan_port: crate::wire::vxlan::DEFAULT_PORT,
            vni: 1,
            underlay_mtu: 1500,
            snat_ports: (61000, 65535),
        }
    }
}
