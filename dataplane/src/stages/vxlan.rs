//! VXLAN (RFC 7348) decapsulation from known peers and encapsulation toward remote nodes.
//!
//! Invariants:
//! - Only frames that arrive on the uplink, addressed to the node IP on the configured UDP
//!   port, from a known peer VTEP, with the configured VNI, are decapsulated; everything
//!   else that looks like VXLAN is dropped with a named reason (user-needs J6).
//! - Encapsulation writes a complete outer header in the packet's headroom: outer source is
//!   the node IP (J5), the outer UDP source port comes from the inner flow hash (J9), the
//!   outer UDP checksum is zero (J2, allowed for IPv4), DF is set (a VTEP never fragments).

use std::net::Ipv4Addr;

use crate::drop::DropReason;
use crate::packet::Packet;
use crate::snapshot::Snapshot;
use crate::tables::routes::RemoteNode;
use crate::wire::{
    EthernetFrame, EthernetRepr, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr, VxlanPacket, VxlanRepr,
    ethernet, ipv4, udp, vxlan,
};

/// If the IPv4 packet at `l3` is VXLAN for this node, strips the outer headers and returns
/// the peer's address; `Ok(None)` if it is not VXLAN for us at all.
pub fn decap(snap: &Snapshot, pkt: &mut Packet, l3: usize) -> Result<Option<Ipv4Addr>, DropReason> {
    let node = &snap.node;
    let (peer, inner_at) = {
        let ip = Ipv4Packet::new_checked(&pkt.data()[l3..]).map_err(|_| DropReason::Malformed)?;
        if ip.protocol() != ipv4::PROTO_UDP || ip.dst_addr() != node.node_ip || ip.is_fragment() {
            return Ok(None);
        }
        let l4 = l3 + ip.header_len();
        let u = UdpPacket::new_checked(ip.payload()).map_err(|_| DropReason::Malformed)?;
        if u.dst_port() != node.vxlan_port {
            return Ok(None);
        }
        let v = VxlanPacket::new_checked(u.payload()).map_err(|_| DropReason::VxlanBadHeader)?;
        if v.vni() != node.vni {
            return Err(DropReason::VxlanBadHeader);
        }
        (ip.src_addr(), l4 + udp::HEADER_LEN + vxlan::HEADER_LEN)
    };
    if snap.routes.peer(peer).is_none() {
        return Err(DropReason::VxlanUnknownPeer);
    }
    if !pkt.pull_front(inner_at) || pkt.len() < ethernet::HEADER_LEN {
        return Err(DropReason::Malformed);
    }
    Ok(Some(peer))
}

/// Prepends the outer Ethernet/IPv4/UDP/VXLAN headers toward `to`. `flow_hash` picks the
/// outer source port. The inner frame's MACs are set to this VTEP -> the peer's VTEP.
pub fn encap(
    snap: &Snapshot,
    pkt: &mut Packet,
    to: &RemoteNode,
    flow_hash: u64,
) -> Result<(), DropReason> {
    let node = &snap.node;
    {
        let mut inner = EthernetFrame::new_unchecked(pkt.data_mut());
        inner.set_src_addr(node.vtep_mac);
        inner.set_dst_addr(to.vtep_mac);
    }
    let inner_len = pkt.len();
    if !pkt.push_front(vxlan::OVERHEAD_V4) {
        return Err(DropReason::Malformed);
    }
    let buf = pkt.data_mut();
    let eth = EthernetRepr {
        src: node.uplink_mac,
        dst: to.underlay_mac,
        ethertype: ethernet::ETHERTYPE_IPV4,
    };
    eth.emit(buf).map_err(|_| DropReason::Malformed)?;
    // A GSO super-packet's outer lengths are set per segment by `offload::segment`; clamped
    // here only so that they are representable.
    let udp_len = (udp::HEADER_LEN + vxlan::HEADER_LEN + inner_len)
        .min(usize::from(u16::MAX) - ipv4::HEADER_LEN);
    let ip = Ipv4Repr {
        src: node.node_ip,
        dst: to.node_ip,
        protocol: ipv4::PROTO_UDP,
        ttl: 64,
        payload_len: udp_len as u16,
        dont_frag: true,
        ident: 0,
    };
    let l3 = ethernet::HEADER_LEN;
    ip.emit(&mut buf[l3..]).map_err(|_| DropReason::Malformed)?;
    let l4 = l3 + ipv4::HEADER_LEN;
    let sport = 49152 + (flow_hash % 16384) as u16;
    let u = UdpRepr {
        src_port: sport,
        dst_port: node.vxlan_port,
        payload_len: (udp_len - udp::HEADER_LEN) as u16,
    };
    u.emit(&mut buf[l4..]).map_err(|_| DropReason::Malformed)?;
    let vx = VxlanRepr { vni: node.vni };
    vx.emit(&mut buf[l4 + udp::HEADER_LEN..])
        .map_err(|_| DropReason::Malformed)?;
    Ok(())
}
