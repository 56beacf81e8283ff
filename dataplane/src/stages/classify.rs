//! Classification: Ethernet and IPv4 validation, anti-spoofing on pod ports, checksum
//! completion for CHECKSUM_PARTIAL frames, and extraction of the flow key. ICMP redirects
//! are dropped here, whatever their source (`icmp_redirect`). Fragments branch off to
//! `fragment::classify`.
//!
//! Invariant: after `ipv4` returns `Ok` with `ctx` written, the frame holds a valid IPv4 header at
//! `ctx.l3` whose total length fits the frame, and a complete L4 header at `ctx.l4`.

use crate::drop::DropReason;
use crate::flow::{FlowKey, L4Proto};
use crate::offload::vnet;
use crate::packet::{Offload, Packet};
use crate::snapshot::Snapshot;
use crate::tables::ports::PortKind;
use crate::wire::{
    EthernetFrame, Icmpv4Packet, Ipv4Packet, SctpPacket, TcpPacket, UdpPacket, icmp,
};

use super::Ctx;
use super::fragment::{self, Frag};

/// Parses the IPv4 packet at `l3` and writes the context for the stages after it to `out`
/// (in place: returning it by value costs the batch driver a copy it reads back at once, a
/// store-forwarding stall; see `Ctx`). `out` is unspecified after an error.
pub fn ipv4(
    snap: &Snapshot,
    pkt: &mut Packet,
    in_kind: PortKind,
    l3: usize,
    out: &mut Ctx,
) -> Result<(), DropReason> {
    let (src, dst, proto, l4, fragment) = {
        let ip = Ipv4Packet::new_checked(&pkt.data()[l3..]).map_err(|_| DropReason::Malformed)?;
        if !ip.verify_checksum() {
            return Err(DropReason::BadChecksum);
        }
        (
            ip.src_addr(),
            ip.dst_addr(),
            ip.protocol(),
            l3 + ip.header_len(),
            ip.is_fragment(),
        )
    };
    // Trim Ethernet padding so the frame ends where the IP packet ends.
    let ip_end = l3 + usize::from(read_total_len(pkt, l3));
    if !pkt.set_len(ip_end) {
        return Err(DropReason::Malformed);
    }
    if in_kind == PortKind::Pod {
        check_pod_source(snap, pkt, src)?;
    }
    let l4proto = L4Proto::from_ip_proto(proto).ok_or(DropReason::UnsupportedProtocol)?;
    if fragment {
        *out = fragment::classify(snap, pkt, in_kind, l3, l4, l4proto)?;
        return Ok(());
    }
    if pkt.meta.offload != Offload::default() {
        vnet::check_l4(&pkt.meta, l4, l4proto, fragment)?;
    }
    // A super-packet keeps its partial checksum (NAT adjusts the seed; segmentation or the
    // receiver finishes it); any other partial checksum is finished here.
    if pkt.meta.csum_partial && !pkt.meta.offload.is_gso() {
        complete_l4_checksum(pkt, l3, l4, l4proto)?;
        pkt.meta.csum_partial = false;
    }
    let l4bytes = &pkt.data()[l4..];
    let (sport, dport, tcp_flags, icmp_error) = match l4proto {
        L4Proto::Tcp => {
            let t = TcpPacket::new_checked(l4bytes).map_err(|_| DropReason::Malformed)?;
            (t.src_port(), t.dst_port(), t.flags().0, false)
        }
        L4Proto::Udp => {
            let u = UdpPacket::new_checked(l4bytes).map_err(|_| DropReason::Malformed)?;
            (u.src_port(), u.dst_port(), 0, false)
        }
        L4Proto::Icmp => {
            let i = Icmpv4Packet::new_checked(l4bytes).map_err(|_| DropReason::Malformed)?;
            if i.is_echo() {
                (i.echo_ident(), i.echo_ident(), 0, false)
            } else if i.msg_type() == icmp::REDIRECT {
                return Err(DropReason::IcmpRedirect);
            } else if i.is_error() {
                (0, 0, 0, true)
            } else {
                return Err(DropReason::UnsupportedProtocol);
            }
        }
        // The first chunk's type stands in for TCP flags: conntrack steps on it.
        L4Proto::Sctp => {
            let s = SctpPacket::new_checked(l4bytes).map_err(|_| DropReason::Malformed)?;
            (s.src_port(), s.dst_port(), s.first_chunk_type(), false)
        }
    };
    if in_kind == PortKind::Pod
        && l4proto == L4Proto::Udp
        && dport == snap.node.vxlan_port
        && !snap.node.cluster_cidr.contains(dst)
    {
        return Err(DropReason::VxlanFromPod);
    }
    *out = Ctx {
        in_kind,
        from_peer: None,
        l3,
        l4,
        key: FlowKey::new(l4proto, src, sport, dst, dport),
        tcp_flags,
        icmp_error,
        translated: false,
        frag: Frag::None,
    };
    Ok(())
}

fn read_total_len(pkt: &Packet, l3: usize) -> u16 {
    Ipv4Packet::new_unchecked(&pkt.data()[l3..]).total_len()
}

/// A pod may only send with its own MAC and IP.
fn check_pod_source(
    snap: &Snapshot,
    pkt: &Packet,
    src: std::net::Ipv4Addr,
) -> Result<(), DropReason> {
    let (ip, mac) = snap
        .ports
        .pod_addresses_on(pkt.meta.in_port)
        .ok_or(DropReason::SpoofedSource)?;
    let eth = EthernetFrame::new_unchecked(pkt.data());
    if ip != src || mac != eth.src_addr() {
        return Err(DropReason::SpoofedSource);
    }
    Ok(())
}

/// Finishes an L4 checksum that the sender left partial (it holds the pseudo-header sum):
/// computed from scratch, so the result does not depend on what the partial field held.
fn complete_l4_checksum(
    pkt: &mut Packet,
    l3: usize,
    l4: usize,
    proto: L4Proto,
) -> Result<(), DropReason> {
    let (src, dst) = {
        let ip = Ipv4Packet::new_unchecked(&pkt.data()[l3..]);
        (ip.src_addr(), ip.dst_addr())
    };
    let seg = &mut pkt.data_mut()[l4..];
    match proto {
        L4Proto::Tcp => {
            let mut t = TcpPacket::new_checked(seg).map_err(|_| DropReason::Malformed)?;
            t.fill_checksum(src, dst);
        }
        L4Proto::Udp => {
            let mut u = UdpPacket::new_checked(seg).map_err(|_| DropReason::Malformed)?;
            u.fill_checksum(src, dst);
        }
        L4Proto::Icmp => {
            let mut i = Icmpv4Packet::new_checked(seg).map_err(|_| DropReason::Malformed)?;
            i.fill_checksum();
        }
        L4Proto::Sctp => {
            let mut s = SctpPacket::new_checked(seg).map_err(|_| DropReason::Malformed)?;
            s.fill_checksum();
        }
    }
    Ok(())
}
