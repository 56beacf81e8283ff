//! VXLAN over an IPv6 underlay (RFC 7348 with an IPv6 outer header), and the choice of the
//! underlay family per packet.
//!
//! Which underlay carries what (a node and a peer may each have an IPv4 underlay address,
//! `node_ip`, and an IPv6 one, `node_ip6`): each inner family rides the underlay of its own
//! family when both ends have one, otherwise the other family (flannel's rule for a dual-stack
//! underlay: IPv4 pods over IPv4, IPv6 pods over IPv6; an IPv6-only underlay carries both).
//! A peer that shares no family with this node is `vxlan_no_underlay`.
//!
//! Invariants:
//! - Encapsulation writes a complete outer Ethernet/IPv6/UDP/VXLAN header (70 bytes) in the
//!   headroom: outer source the node's `node_ip6`, hop limit 64, flow label 0, the UDP source
//!   port from the inner flow hash (as over IPv4), and a computed UDP checksum. A zero checksum
//!   is allowed over IPv6 only by RFC 6935/6936 opt-in (the kernel's `udp6zerocsumrx`, off by
//!   default), so a kernel VXLAN peer with default settings would drop it: it is always
//!   computed. A GSO super-packet's outer lengths and checksum are set per segment by
//!   `offload::segment`.
//! - Decapsulation takes only frames to the uplink MAC, IPv6 with UDP directly after the fixed
//!   header (`vxlan_outer_ext_headers` otherwise, when the rest is VXLAN for us), to
//!   `node_ip6` on the VXLAN port, from a known peer's `node_ip6` (`vxlan_unknown_peer`), with
//!   a correct, non-zero UDP checksum (`vxlan_bad_checksum`; one the sender left to offload,
//!   `meta.csum_partial` on a virtual link, is trusted as the kernel trusts it, and the
//!   inner checksum is then completed from scratch) and the configured VNI
//!   (`vxlan_bad_header`). Anything else IPv6 goes on to the IPv6 path as before.

use std::net::Ipv6Addr;

use crate::drop::DropReason;
use crate::packet::Packet;
use crate::snapshot::Snapshot;
use crate::tables::node::NodeConfig;
use crate::tables::routes::RemoteNode;
use crate::wire::ipv6_ext;
use crate::wire::{
    EthernetFrame, EthernetRepr, Ipv6Packet, Ipv6Repr, UdpPacket, UdpRepr, VxlanPacket, VxlanRepr,
    checksum, ethernet, ipv4, ipv6, udp, vxlan,
};

/// The outer header family a packet to a peer gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outer {
    V4,
    /// Source (this node's `node_ip6`) and destination (the peer's).
    V6(Ipv6Addr, Ipv6Addr),
}

/// The underlay toward `to` for an inner packet of the given family (see the module doc).
#[inline]
pub fn choose(node: &NodeConfig, to: &RemoteNode, inner_v6: bool) -> Result<Outer, DropReason> {
    let v4 = !node.node_ip.is_unspecified() && !to.node_ip.is_unspecified();
    let v6 = node.node_ip6.zip(to.node_ip6).map(|(s, d)| Outer::V6(s, d));
    match (inner_v6, v4, v6) {
        (true, _, Some(outer)) | (false, false, Some(outer)) => Ok(outer),
        (_, true, _) => Ok(Outer::V4),
        _ => Err(DropReason::VxlanNoUnderlay),
    }
}

/// Encapsulates toward `to` over the underlay `choose` picks; returns the bytes added (the
/// `encap_len` of a GSO super-packet).
#[inline]
pub fn encap_to(
    snap: &Snapshot,
    pkt: &mut Packet,
    to: &RemoteNode,
    flow_hash: u64,
    inner_v6: bool,
) -> Result<usize, DropReason> {
    match choose(&snap.node, to, inner_v6)? {
        Outer::V4 => {
            super::vxlan::encap(snap, pkt, to, flow_hash)?;
            Ok(vxlan::OVERHEAD_V4)
        }
        Outer::V6(src, dst) => {
            encap6(snap, pkt, to, flow_hash, (src, dst))?;
            Ok(vxlan::OVERHEAD_V6)
        }
    }
}

/// Prepends the outer Ethernet/IPv6/UDP/VXLAN headers from `src` to `dst`.
pub fn encap6(
    snap: &Snapshot,
    pkt: &mut Packet,
    to: &RemoteNode,
    flow_hash: u64,
    (src, dst): (Ipv6Addr, Ipv6Addr),
) -> Result<(), DropReason> {
    let node = &snap.node;
    {
        let mut inner = EthernetFrame::new_unchecked(pkt.data_mut());
        inner.set_src_addr(node.vtep_mac);
        inner.set_dst_addr(to.vtep_mac);
    }
    let inner_len = pkt.len();
    if !pkt.push_front(vxlan::OVERHEAD_V6) {
        return Err(DropReason::Malformed);
    }
    let gso = pkt.meta.offload.is_gso();
    let buf = pkt.data_mut();
    let eth = EthernetRepr {
        src: node.uplink_mac,
        dst: to.underlay_mac,
        ethertype: ethernet::ETHERTYPE_IPV6,
    };
    eth.emit(buf).map_err(|_| DropReason::Malformed)?;
    // A super-packet's lengths are set per segment; clamped here only to be representable.
    let udp_len = (udp::HEADER_LEN + vxlan::HEADER_LEN + inner_len).min(usize::from(u16::MAX));
    let l3 = ethernet::HEADER_LEN;
    Ipv6Repr {
        src,
        dst,
        next_header: ipv4::PROTO_UDP,
        hop_limit: 64,
        payload_len: udp_len as u16,
    }
    .emit(&mut buf[l3..])
    .map_err(|_| DropReason::Malformed)?;
    let l4 = l3 + ipv6::HEADER_LEN;
    UdpRepr {
        src_port: 49152 + (flow_hash % 16384) as u16,
        dst_port: node.vxlan_port,
        payload_len: (udp_len - udp::HEADER_LEN) as u16,
    }
    .emit(&mut buf[l4..])
    .map_err(|_| DropReason::Malformed)?;
    VxlanRepr { vni: node.vni }
        .emit(&mut buf[l4 + udp::HEADER_LEN..])
        .map_err(|_| DropReason::Malformed)?;
    if !gso {
        fill_udp6_checksum(&mut buf[l4..], src, dst);
    }
    Ok(())
}

/// Computes the UDP checksum of the datagram `seg` (its header first, the checksum field
/// overwritten) over IPv6; a computed 0 is sent as 0xffff (RFC 8200 8.1).
pub fn fill_udp6_checksum(seg: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr) {
    seg[6..8].fill(0);
    let pseudo = checksum::pseudo_header_v6(src, dst, ipv4::PROTO_UDP, seg.len() as u32);
    let value = checksum::finish(checksum::combine(pseudo, checksum::sum(seg)));
    let value = if value == 0 { 0xffff } else { value };
    seg[6..8].copy_from_slice(&value.to_be_bytes());
}

/// If the IPv6 packet at `l3` (on the uplink) is VXLAN for this node, strips the outer headers
/// and returns the peer; `Ok(None)` if it is not VXLAN for this node at all.
pub fn decap<'s>(
    snap: &'s Snapshot,
    pkt: &mut Packet,
    l3: usize,
) -> Result<Option<&'s RemoteNode>, DropReason> {
    let node = &snap.node;
    let Some(node_ip6) = node.node_ip6 else {
        return Ok(None);
    };
    if EthernetFrame::new_unchecked(pkt.data()).dst_addr() != node.uplink_mac {
        return Ok(None);
    }
    let (peer_ip, inner_at) = {
        let data = &pkt.data()[l3..];
        let Ok(ip) = Ipv6Packet::new_checked(data) else {
            return Ok(None);
        };
        if ip.dst_addr() != node_ip6 {
            return Ok(None);
        }
        let end = ipv6::HEADER_LEN + usize::from(ip.payload_len());
        let datagram = data
            .get(ipv6::HEADER_LEN..end)
            .ok_or(DropReason::Malformed)?;
        if ip.next_header() != ipv4::PROTO_UDP {
            return match ipv6_ext::walk(data, ip.next_header()) {
                Ok(chain)
                    if chain.proto == ipv4::PROTO_UDP
                        && port_at(data, chain.l4) == Some(node.vxlan_port) =>
                {
                    Err(DropReason::VxlanOuterExtHeaders)
                }
                _ => Ok(None),
            };
        }
        let u = UdpPacket::new_checked(datagram).map_err(|_| DropReason::Malformed)?;
        if u.dst_port() != node.vxlan_port {
            return Ok(None);
        }
        if usize::from(u.len()) != datagram.len() {
            return Err(DropReason::Malformed);
        }
        let src = ip.src_addr();
        if snap.routes.peer6(src).is_none() {
            return Err(DropReason::VxlanUnknownPeer);
        }
        // A checksum left to offload (CHECKSUM_PARTIAL across a veth: `csum_partial`) is
        // not verified, as the kernel trusts it; the inner one is then completed from
        // scratch by the path the inner packet takes.
        let verified = pkt.meta.csum_partial || udp6_checksum_ok(datagram, src, node_ip6);
        if u.checksum() == 0 || !verified {
            return Err(DropReason::VxlanBadChecksum);
        }
        let v = VxlanPacket::new_checked(u.payload()).map_err(|_| DropReason::VxlanBadHeader)?;
        if v.vni() != node.vni {
            return Err(DropReason::VxlanBadHeader);
        }
        (
            src,
            l3 + ipv6::HEADER_LEN + udp::HEADER_LEN + vxlan::HEADER_LEN,
        )
    };
    let peer = snap
        .routes
        .peer6(peer_ip)
        .ok_or(DropReason::VxlanUnknownPeer)?;
    // Trim what follows the outer datagram (Ethernet padding) before pulling the headers.
    let end = l3 + ipv6::HEADER_LEN + read_payload_len(pkt, l3);
    if !pkt.set_len(end) || !pkt.pull_front(inner_at) || pkt.len() < ethernet::HEADER_LEN {
        return Err(DropReason::Malformed);
    }
    Ok(Some(peer))
}

fn read_payload_len(pkt: &Packet, l3: usize) -> usize {
    usize::from(Ipv6Packet::new_unchecked(&pkt.data()[l3..]).payload_len())
}

/// The destination port of a UDP header at `l4` of `data`.
fn port_at(data: &[u8], l4: usize) -> Option<u16> {
    let h = data.get(l4 + 2..l4 + 4)?;
    Some(u16::from_be_bytes([h[0], h[1]]))
}

/// Whether the UDP datagram's checksum (as stored) is right for these IPv6 addresses.
fn udp6_checksum_ok(datagram: &[u8], src: Ipv6Addr, dst: Ipv6Addr) -> bool {
    let pseudo = checksum::pseudo_header_v6(src, dst, ipv4::PROTO_UDP, datagram.len() as u32);
    checksum::fold(checksum::combine(pseudo, checksum::sum(datagram))) == 0xffff
}

#[cfg(test)]
#[path = "vxlan6_tests.rs"]
mod tests;
