//! Every reason the dataplane drops a packet, and the per-worker counters for them.
//!
//! Invariants:
//! - A packet is never discarded without a `DropReason`; the one call that discards
//!   (`DropCounters::count`) also counts it.
//! - `DropReason::ALL` lists every variant in discriminant order, so counters are a flat
//!   array indexed by the discriminant and the control thread can sum them by name.

/// Why a packet was dropped. Names are stable: they are metric labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// Frame shorter than its headers claim, or a header field out of range.
    Malformed,
    /// L4 checksum wrong on a frame we must rewrite.
    BadChecksum,
    /// EtherType or IP protocol we do not forward.
    UnsupportedProtocol,
    /// Frame not addressed to us (unicast MAC of someone else) on a routed port.
    NotForUs,
    /// Source IP or MAC on a pod port is not that pod's own; or, on the uplink, a pod or node
    /// source that did not come from the node that owns it (see `stages::uplink`).
    SpoofedSource,
    /// VXLAN from an address that is not a known peer VTEP.
    VxlanUnknownPeer,
    /// VXLAN with another VNI, or a malformed VXLAN header.
    VxlanBadHeader,
    /// A pod sent VXLAN/encapsulated traffic toward the underlay port (never decapsulated).
    VxlanFromPod,
    /// TCP segment that does not fit the connection's state (e.g. non-SYN without an entry).
    CtInvalid,
    /// The flow table could not take a new flow even after eviction.
    CtTableFull,
    /// No longer produced: a packet to an unserved port of a ClusterIP is rejected, as
    /// kube-proxy does (kept so the metric label stays stable).
    VipNoService,
    /// Service with traffic policy Local and no local endpoint.
    NoLocalEndpoint,
    /// Source outside the Service's loadBalancerSourceRanges.
    LbSourceRange,
    /// NetworkPolicy denied the flow on the sender's (egress) side.
    PolicyEgressDenied,
    /// NetworkPolicy denied the flow on the receiver's (ingress) side.
    PolicyIngressDenied,
    /// No SNAT port could be allocated.
    SnatPortsExhausted,
    /// No route for the destination.
    NoRoute,
    /// Destination pod CIDR belongs to a node with no known VTEP.
    UnknownVtep,
    /// Packet exceeds the path MTU and DF forbids fragmenting (an ICMP was sent if possible).
    MtuExceeded,
    /// A fragment that cannot be followed: a later fragment of a datagram whose first fragment
    /// was answered here (rejected), a fragmented ICMP error, or a fragment with offload
    /// metadata. (Other fragments follow their first one: `stages::fragment`.)
    Fragment,
    /// TTL reached zero.
    TtlExceeded,
    /// ICMP error whose quoted packet matches no tracked flow (nor the node's own untracked
    /// traffic), or that a pod sent about a packet it did not receive.
    IcmpErrorUnmatched,
    /// Transmit ring full / device refused the frame.
    TxRingFull,
    /// The frame would have gone back out the port it came in on where that is not allowed.
    Hairpin,
    /// TCP segment with flags no valid segment carries (SYN+FIN, SYN+RST, none of
    /// SYN/ACK/FIN/RST), on a new or a tracked flow.
    TcpInvalidFlags,
    /// TCP RST whose sequence number is outside its direction's window (RFC 5961): a blind
    /// reset attempt, or one for an older connection.
    TcpRstOutOfWindow,
    /// A new flow from a source that already has as many unreplied flows as allowed.
    CtSourceLimit,
    /// A new flow toward a destination (after DNAT) that already has as many unreplied flows
    /// as allowed.
    CtDestinationLimit,
    /// A frame on the uplink addressed to another MAC, or broadcast/multicast that is not ARP.
    NotOurMac,
    /// ICMP redirect, from any source: a node takes no routing advice from its neighbours.
    IcmpRedirect,
    /// An established flow that a NetworkPolicy change no longer allows (re-checked on its
    /// next packet after the change; the flow is cut, as Cilium does).
    PolicyRevoked,
    /// A packet to an address of the Service CIDR that no Service holds (kube-proxy's "Drop
    /// traffic to unallocated ClusterIPs"): never routed or masqueraded toward the underlay.
    ServiceUnallocated,
    /// A virtio-net header (TAP) that lies about its frame: unknown GSO type, gso_size 0, a
    /// GSO packet without a partial checksum, hdr_len or csum_start/csum_offset past the frame.
    VnetHeaderInvalid,
    /// A virtio-net header whose GSO type the frame is not (e.g. TCPv4 on UDP, or on an IP
    /// fragment), or whose checksum start is not the frame's L4 header.
    GsoTypeMismatch,
    /// A later IPv4 fragment whose first fragment was not seen (yet), expired, or was refused:
    /// nothing says how to translate or police it (out-of-order first fragments are not held).
    FragmentUnknown,
    /// A first IPv4 fragment whose worker's fragment table had no room for its datagram.
    FragmentTableFull,
    /// An IPv6 frame on a node that has no IPv6 settings (an IPv4-only node).
    Ipv6Disabled,
    /// An IPv6 extension-header chain longer than the node walks (`wire::ipv6_ext::MAX_HEADERS`
    /// headers or `MAX_CHAIN_BYTES` bytes), or with hop-by-hop options anywhere but first.
    Ipv6ExtChainTooLong,
    /// An IPv6 next header the node does not forward: an unknown extension header, ESP, AH,
    /// mobility, "no next header", or any upper layer but TCP, UDP, SCTP and ICMPv6.
    Ipv6UnknownHeader,
    /// An IPv6 routing header with segments left: the node does no source routing (RFC 5095).
    Ipv6RoutingHeader,
    /// An IPv6 fragment (non-atomic): IPv6 fragments are not followed yet.
    Ipv6Fragment,
    /// IPv6 hop limit reached zero (an ICMPv6 time exceeded was sent where allowed).
    HopLimitExceeded,
    /// A neighbour/router discovery message whose hop limit is not 255 (RFC 4861: not on-link).
    NdpBadHopLimit,
    /// A neighbour/router discovery message that arrived through the overlay (from off-link).
    NdpOffLink,
    /// A link-local IPv6 source or destination on a packet that would be forwarded (link-local
    /// addresses never leave their link; only neighbour discovery uses them here).
    Ipv6LinkLocal,
    /// IPv6 multicast that is not neighbour discovery for the node, and ICMPv6 informational
    /// messages for the link other than echo (MLD reports, node information, ...): the node
    /// forwards no multicast and answers none of them.
    Ipv6Multicast,
    /// IPv6 traffic that needs NAT66 the IPv6 flow table cannot give it: SCTP (untracked in
    /// IPv6) to a Service address or from a pod to outside the cluster (masquerade).
    Ipv6NatUnsupported,
    /// IPv6 pod traffic to outside the cluster that needs masquerade, on a node without an IPv6
    /// address of its own to masquerade to.
    Ipv6NoNodeAddress,
    /// VXLAN toward a peer that shares no underlay family with this node (neither both have
    /// an IPv4 underlay address nor both an IPv6 one: `stages::vxlan6`).
    VxlanNoUnderlay,
    /// IPv6-outer VXLAN with a zero or wrong UDP checksum (mandatory over IPv6; a kernel VXLAN
    /// device accepts a zero one only with `udp6zerocsumrx`, off by default).
    VxlanBadChecksum,
    /// IPv6-outer VXLAN for this node with extension headers before the UDP header (no VTEP
    /// sends them; never decapsulated).
    VxlanOuterExtHeaders,
}

impl DropReason {
    pub const COUNT: usize = 51;
    pub const ALL: [DropReason; Self::COUNT] = [
        Self::Malformed,
        Self::BadChecksum,
        Self::UnsupportedProtocol,
        Self::NotForUs,
        Self::SpoofedSource,
        Self::VxlanUnknownPeer,
        Self::VxlanBadHeader,
        Self::VxlanFromPod,
        Self::CtInvalid,
        Self::CtTableFull,
        Self::VipNoService,
        Self::NoLocalEndpoint,
        Self::LbSourceRange,
        Self::PolicyEgressDenied,
        Self::PolicyIngressDenied,
        Self::SnatPortsExhausted,
        Self::NoRoute,
        Self::UnknownVtep,
        Self::MtuExceeded,
        Self::Fragment,
        Self::TtlExceeded,
        Self::IcmpErrorUnmatched,
        Self::TxRingFull,
        Self::Hairpin,
        Self::TcpInvalidFlags,
        Self::TcpRstOutOfWindow,
        Self::CtSourceLimit,
        Self::CtDestinationLimit,
        Self::NotOurMac,
        Self::IcmpRedirect,
        Self::PolicyRevoked,
        Self::ServiceUnallocated,
        Self::VnetHeaderInvalid,
        Self::GsoTypeMismatch,
        Self::FragmentUnknown,
        Self::FragmentTableFull,
        Self::Ipv6Disabled,
        Self::Ipv6ExtChainTooLong,
        Self::Ipv6UnknownHeader,
        Self::Ipv6RoutingHeader,
        Self::Ipv6Fragment,
        Self::HopLimitExceeded,
        Self::NdpBadHopLimit,
        Self::NdpOffLink,
        Self::Ipv6LinkLocal,
        Self::Ipv6Multicast,
        Self::Ipv6NatUnsupported,
        Self::Ipv6NoNodeAddress,
        Self::VxlanNoUnderlay,
        Self::VxlanBadChecksum,
        Self::VxlanOuterExtHeaders,
    ];

    /// Stable snake_case name, used as the Prometheus `reason` label.
    pub fn name(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::BadChecksum => "bad_checksum",
            Self::UnsupportedProtocol => "unsupported_protocol",
            Self::NotForUs => "not_for_us",
            Self::SpoofedSource => "spoofed_source",
            Self::VxlanUnknownPeer => "vxlan_unknown_peer",
            Self::VxlanBadHeader => "vxlan_bad_header",
            Self::VxlanFromPod => "vxlan_from_pod",
            Self::CtInvalid => "ct_invalid",
            Self::CtTableFull => "ct_table_full",
            Self::VipNoService => "vip_no_service",
            Self::NoLocalEndpoint => "no_local_endpoint",
            Self::LbSourceRange => "lb_source_range",
            Self::PolicyEgressDenied => "policy_egress_denied",
            Self::PolicyIngressDenied => "policy_ingress_denied",
            Self::SnatPortsExhausted => "snat_ports_exhausted",
            Self::NoRoute => "no_route",
            Self::UnknownVtep => "unknown_vtep",
            Self::MtuExceeded => "mtu_exceeded",
            Self::Fragment => "fragment",
            Self::TtlExceeded => "ttl_exceeded",
            Self::IcmpErrorUnmatched => "icmp_error_unmatched",
            Self::TxRingFull => "tx_ring_full",
            Self::Hairpin => "hairpin",
            Self::TcpInvalidFlags => "tcp_invalid_flags",
            Self::TcpRstOutOfWindow => "tcp_rst_out_of_window",
            Self::CtSourceLimit => "ct_source_limit",
            Self::CtDestinationLimit => "ct_destination_limit",
            Self::NotOurMac => "not_our_mac",
            Self::IcmpRedirect => "icmp_redirect",
            Self::PolicyRevoked => "policy_revoked",
            Self::ServiceUnallocated => "service_unallocated",
            Self::VnetHeaderInvalid => "vnet_header_invalid",
            Self::GsoTypeMismatch => "gso_type_mismatch",
            Self::FragmentUnknown => "fragment_unknown",
            Self::FragmentTableFull => "fragment_table_full",
            Self::Ipv6Disabled => "ipv6_disabled",
            Self::Ipv6ExtChainTooLong => "ipv6_ext_chain_too_long",
            Self::Ipv6UnknownHeader => "ipv6_unknown_header",
            Self::Ipv6RoutingHeader => "ipv6_routing_header",
            Self::Ipv6Fragment => "ipv6_fragment",
            Self::HopLimitExceeded => "hop_limit_exceeded",
            Self::NdpBadHopLimit => "ndp_bad_hop_limit",
            Self::NdpOffLink => "ndp_off_link",
            Self::Ipv6LinkLocal => "ipv6_link_local",
            Self::Ipv6Multicast => "ipv6_multicast",
            Self::Ipv6NatUnsupported => "ipv6_nat_unsupported",
            Self::Ipv6NoNodeAddress => "ipv6_no_node_address",
            Self::VxlanNoUnderlay => "vxlan_no_underlay",
            Self::VxlanBadChecksum => "vxlan_bad_checksum",
            Self::VxlanOuterExtHeaders => "vxlan_outer_ext_headers",
        }
    }
}

/// Per-worker drop counters. Plain integers: one worker owns them; the control thread
/// reads copies published by the worker (see `worker` stats), never the live array.
#[derive(Clone, Debug)]
pub struct DropCounters {
    counts: [u64; DropReason::COUNT],
}

impl Default for DropCounters {
    fn default() -> Self {
        Self {
            counts: [0; DropReason::COUNT],
        }
    }
}

impl DropCounters {
    #[inline]
    pub fn count(&mut self, reason: DropReason) {
        self.counts[reason as usize] += 1;
    }

    pub fn get(&self, reason: DropReason) -> u64 {
        self.counts[reason as usize]
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Adds another worker's counters into these.
    pub fn merge(&mut self, other: &DropCounters) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
    }

    /// Non-zero counters by name.
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|r| (*r, self.counts[*r as usize]))
            .filter(|(_, n)| *n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_discriminant_order_and_names_are_unique() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?} out of order");
        }
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
    }

    #[test]
    fn counters_count_and_merge() {
        let mut a = DropCounters::default();
        a.count(DropReason::NoRoute);
        a.count(DropReason::NoRoute);
        let mut b = DropCounters::default();
        b.count(DropReason::Malformed);
        a.merge(&b);
        assert_eq!(a.get(DropReason::NoRoute), 2);
        assert_eq!(a.total(), 3);
        assert_eq!(a.iter().count(), 2);
    }
}
