//! The IPv6 path (ip6-input, as VPP splits it from ip4-input): everything an IPv6 frame goes
//! through after the Ethernet dispatch in [`super::Pipeline`]. It runs whole in the batch's first
//! pass and ends with a verdict (`Front::Done`): it reads only the packet, the snapshot and the
//! worker's own IPv6 flow table (`Pipeline::ct6`, used in packet order).
//!
//! Stages, in order: the uplink's L2 filter (unicast to the uplink MAC, or solicited-node
//! multicast for neighbour discovery); the fixed header and the extension-header chain
//! (`wire::ipv6_ext`, refused chains are named drops); neighbour discovery (`ndp`); source
//! checks (`source`: pods send only from their own address and MAC, link-local is never
//! forwarded, the uplink's BCP 38); checksum completion; conntrack and NAT66 (`nat`, the
//! worker's own IPv6 flow table: Service DNAT by `services`, masquerade, NetworkPolicy by
//! `policy`, REJECT by `reject`, ICMPv6 errors of flows by `related`); routing with the hop
//! limit and the MTU (`route`, which answers ICMPv6 errors through `error`).
//!
//! Invariants:
//! - A node without IPv6 settings (`snap.v6.node()` is `None`) drops every IPv6 frame as
//!   `ipv6_disabled`, except, on the uplink of a node with an IPv6 underlay address, neighbour
//!   solicitations for that address (IPv6-outer VXLAN is decapsulated before this path).
//! - Flows are tracked per worker (`nat`) when they are translated (Service DNAT, masquerade)
//!   or a NetworkPolicy isolates one of their pods; the rest passes untracked. What cannot be
//!   translated or checked (SCTP needing NAT) is a named drop, never forwarded unchecked.
//! - Like the IPv4 path: un-translated traffic from the overlay or the underlay is delivered
//!   only to this node's pods and host; every transmitted frame gets its next hop's MACs.

mod error;
mod nat;
mod ndp;
mod policy;
mod reject;
mod related;
mod route;
mod services;
mod source;
#[cfg(test)]
mod tests;

use std::net::Ipv6Addr;

use crate::drop::DropReason;
use crate::packet::{Packet, Verdict};
use crate::snapshot::Snapshot;
use crate::tables::conntrack6::Tuple6;
use crate::tables::ports::PortKind;
use crate::tables::routes::PeerAddr;
use crate::wire::checksum;
use crate::wire::icmpv6::{Icmpv6Packet, PROTO_ICMPV6};
use crate::wire::ipv6::HEADER_LEN;
use crate::wire::ipv6_ext::{self, ChainError};
use crate::wire::{Ipv6Packet, SctpPacket, ipv4};

use super::Pipeline;

/// The SCTP protocol number.
pub(super) const PROTO_SCTP: u8 = 132;

/// What the IPv6 stages learned about a packet.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ctx6 {
    pub in_kind: PortKind,
    /// Arrived VXLAN-encapsulated from this peer (already decapsulated).
    pub from_peer: Option<PeerAddr>,
    /// Offset of the IPv6 header.
    pub l3: usize,
    /// Offset of the upper-layer header (after the extension headers).
    pub l4: usize,
    /// Upper-layer protocol number.
    pub proto: u8,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    /// Ports (TCP, UDP, SCTP), the echo identifier twice (ICMPv6 echo), else 0.
    pub sport: u16,
    pub dport: u16,
    /// An ICMPv6 error (never answered with another error, RFC 4443 2.4 e).
    pub icmp_error: bool,
    /// Rewritten by a flow's translation (`nat`): routing lets translated traffic from the
    /// overlay or the underlay leave again (a reply on its way back to its client).
    pub translated: bool,
    /// The tuple before the translation (ICMPv6 errors about the packet quote it as its sender
    /// sent it).
    pub before: Option<Tuple6>,
}

impl Ctx6 {
    /// Direction-independent hash of the addresses and ports (VXLAN source port).
    pub fn symmetric_hash(&self) -> u64 {
        let fold = |ip: Ipv6Addr| {
            let v = u128::from(ip);
            (v as u64) ^ ((v >> 64) as u64)
        };
        let (a, b) = (
            fold(self.src) ^ fold(self.dst),
            u64::from(self.sport ^ self.dport),
        );
        crate::flow::mix64(a, b | (u64::from(self.proto) << 32))
    }
}

/// Runs an IPv6 frame (the IPv6 header at `l3`) through the IPv6 path.
pub(crate) fn front(
    p: &mut Pipeline,
    snap: &Snapshot,
    pkt: &mut Packet,
    in_kind: PortKind,
    l3: usize,
    from_peer: Option<PeerAddr>,
) -> Result<Verdict, DropReason> {
    let node = snap.v6.node();
    // Without IPv6 pods, only neighbour discovery of the IPv6 underlay address is served.
    let underlay_only = in_kind == PortKind::Uplink && snap.node.node_ip6.is_some();
    if node.is_none() && !underlay_only {
        return Err(DropReason::Ipv6Disabled);
    }
    if in_kind == PortKind::Uplink && from_peer.is_none() {
        source::accept_destination(snap, pkt)?;
    }
    if pkt.meta.offload.is_gso() {
        return Err(DropReason::GsoTypeMismatch);
    }
    let (src, dst, hop_limit, next) = {
        let ip = Ipv6Packet::new_checked(&pkt.data()[l3..]).map_err(|_| DropReason::Malformed)?;
        (
            ip.src_addr(),
            ip.dst_addr(),
            ip.hop_limit(),
            ip.next_header(),
        )
    };
    let ip_len = HEADER_LEN + usize::from(read_payload_len(pkt, l3));
    // Trim Ethernet padding so the frame ends where the IPv6 packet ends; a zero payload
    // length (a jumbogram) is refused here too.
    if ip_len == HEADER_LEN || !pkt.set_len(l3 + ip_len) {
        return Err(DropReason::Malformed);
    }
    let chain = ipv6_ext::walk(&pkt.data()[l3..], next).map_err(|e| match e {
        ChainError::Truncated => DropReason::Malformed,
        ChainError::TooLong | ChainError::HopByHopNotFirst => DropReason::Ipv6ExtChainTooLong,
    })?;
    if chain.segments_left != 0 {
        return Err(DropReason::Ipv6RoutingHeader);
    }
    if chain.fragment.is_some_and(|f| !f.is_atomic()) {
        return Err(DropReason::Ipv6Fragment);
    }
    if src.is_multicast() {
        return Err(DropReason::SpoofedSource);
    }
    let l4 = l3 + chain.l4;
    let mut ctx = Ctx6 {
        in_kind,
        from_peer,
        l3,
        l4,
        proto: chain.proto,
        src,
        dst,
        sport: 0,
        dport: 0,
        icmp_error: false,
        translated: false,
        before: None,
    };
    if chain.proto == PROTO_ICMPV6 {
        let (ndp, error, ident) = {
            let i =
                Icmpv6Packet::new_checked(&pkt.data()[l4..]).map_err(|_| DropReason::Malformed)?;
            (
                i.is_ndp(),
                i.is_error(),
                i.is_echo().then(|| i.echo_ident()),
            )
        };
        if ndp {
            return ndp::handle(p, snap, pkt, &ctx, hop_limit);
        }
        if chain.fragment.is_some() && error {
            return Err(DropReason::Fragment);
        }
        ctx.icmp_error = error;
        if let Some(ident) = ident {
            (ctx.sport, ctx.dport) = (ident, ident);
        } else if !error {
            // Other informational messages (MLD, node information, ...) are for the link.
            return Err(DropReason::Ipv6Multicast);
        }
    } else {
        (ctx.sport, ctx.dport) = ports(pkt, l4, chain.proto)?;
    }
    if dst.is_multicast() {
        return Err(DropReason::Ipv6Multicast);
    }
    let Some(node) = node else {
        return Err(DropReason::Ipv6Disabled);
    };
    source::check(snap, pkt, &ctx, node)?;
    if pkt.meta.csum_partial {
        complete_l4_checksum(pkt, &ctx)?;
        pkt.meta.csum_partial = false;
    }
    if let Some(answered) = nat::translate(p, snap, pkt, &mut ctx, node)? {
        return Ok(answered);
    }
    route::route(p, snap, pkt, &ctx, true)
}

fn read_payload_len(pkt: &Packet, l3: usize) -> u16 {
    Ipv6Packet::new_unchecked(&pkt.data()[l3..]).payload_len()
}

/// The ports of a TCP, UDP or SCTP header at `l4` (all three start with them).
fn ports(pkt: &Packet, l4: usize, proto: u8) -> Result<(u16, u16), DropReason> {
    let min = match proto {
        ipv4::PROTO_TCP => 20,
        ipv4::PROTO_UDP => 8,
        PROTO_SCTP => 12,
        _ => return Err(DropReason::Ipv6UnknownHeader),
    };
    let h = pkt.data().get(l4..l4 + min).ok_or(DropReason::Malformed)?;
    Ok((
        u16::from_be_bytes([h[0], h[1]]),
        u16::from_be_bytes([h[2], h[3]]),
    ))
}

/// Finishes an L4 checksum the sender left partial (veth/TAP CHECKSUM_PARTIAL), from scratch.
fn complete_l4_checksum(pkt: &mut Packet, ctx: &Ctx6) -> Result<(), DropReason> {
    let field = match ctx.proto {
        ipv4::PROTO_TCP => 16,
        ipv4::PROTO_UDP => 6,
        PROTO_ICMPV6 => 2,
        PROTO_SCTP => {
            let seg = &mut pkt.data_mut()[ctx.l4..];
            SctpPacket::new_checked(seg)
                .map_err(|_| DropReason::Malformed)?
                .fill_checksum();
            return Ok(());
        }
        _ => return Err(DropReason::Ipv6UnknownHeader),
    };
    let seg = &mut pkt.data_mut()[ctx.l4..];
    if seg.len() < field + 2 {
        return Err(DropReason::Malformed);
    }
    seg[field..field + 2].fill(0);
    let pseudo = checksum::pseudo_header_v6(ctx.src, ctx.dst, ctx.proto, seg.len() as u32);
    let mut value = checksum::finish(checksum::combine(pseudo, checksum::sum(seg)));
    if value == 0 && ctx.proto == ipv4::PROTO_UDP {
        value = 0xffff;
    }
    seg[field..field + 2].copy_from_slice(&value.to_be_bytes());
    Ok(())
}

/// Whether `ip` is link-local unicast (fe80::/10).
#[inline]
pub(crate) fn is_link_local(ip: Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}
