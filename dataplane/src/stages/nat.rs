//! Address and port rewriting with incremental checksum updates (RFC 1624).
//!
//! Invariants:
//! - The IPv4 header checksum and the L4 checksum stay correct after every rewrite; a UDP
//!   checksum of zero ("none") stays zero.
//! - ICMP echo "ports" are the echo identifier; the ICMP checksum covers no pseudo-header,
//!   so only the identifier change is folded in.
//! - SCTP's CRC32c covers the whole SCTP packet and no pseudo-header: a port rewrite updates
//!   it (`wire::sctp`, keeping any error it had), an address rewrite leaves it.

use std::net::Ipv4Addr;

use crate::flow::{FlowKey, L4Proto};
use crate::wire::checksum::{update_addr, update_u16};
use crate::wire::{Icmpv4Packet, Ipv4Packet, SctpPacket, TcpPacket, UdpPacket};

/// Offsets of the checksum and port fields inside each L4 header.
const TCP_CSUM: usize = 16;
const UDP_CSUM: usize = 6;

/// Rewrites the packet at `l3`/`l4` so that its tuple becomes `to`. `from` is its tuple now.
pub fn rewrite(frame: &mut [u8], l3: usize, l4: usize, from: &FlowKey, to: &FlowKey) {
    if from == to {
        return;
    }
    rewrite_addrs(
        frame,
        l3,
        l4,
        from.proto,
        (from.src, to.src),
        (from.dst, to.dst),
    );
    rewrite_ports(
        frame,
        l4,
        from.proto,
        (from.sport, to.sport),
        (from.dport, to.dport),
    );
}

/// Rewrites the addresses of the IPv4 header at `l3` only (each `(old, new)`), fixing its
/// checksum; the L4 checksum is the caller's (a later fragment has no L4 header).
#[inline]
pub fn rewrite_ipv4_addrs(
    frame: &mut [u8],
    l3: usize,
    src: (Ipv4Addr, Ipv4Addr),
    dst: (Ipv4Addr, Ipv4Addr),
) {
    let mut ip = Ipv4Packet::new_unchecked(&mut frame[l3..]);
    let mut c = ip.checksum();
    if src.0 != src.1 {
        c = update_addr(c, src.0, src.1);
        ip.set_src_addr(src.1);
    }
    if dst.0 != dst.1 {
        c = update_addr(c, dst.0, dst.1);
        ip.set_dst_addr(dst.1);
    }
    ip.set_checksum(c);
}

/// Rewrites source and destination addresses (each `(old, new)`), fixing both checksums.
pub fn rewrite_addrs(
    frame: &mut [u8],
    l3: usize,
    l4: usize,
    proto: L4Proto,
    src: (Ipv4Addr, Ipv4Addr),
    dst: (Ipv4Addr, Ipv4Addr),
) {
    rewrite_ipv4_addrs(frame, l3, src, dst);
    // The pseudo-header covers the addresses for TCP and UDP, not for ICMP.
    let off = match proto {
        L4Proto::Tcp => TCP_CSUM,
        L4Proto::Udp => UDP_CSUM,
        // ICMP and SCTP checksums cover no pseudo-header.
        L4Proto::Icmp | L4Proto::Sctp => return,
    };
    let Some(field) = frame.get_mut(l4 + off..l4 + off + 2) else {
        return;
    };
    let mut c = u16::from_be_bytes([field[0], field[1]]);
    if proto == L4Proto::Udp && c == 0 {
        return;
    }
    c = update_addr(c, src.0, src.1);
    c = update_addr(c, dst.0, dst.1);
    if proto == L4Proto::Udp && c == 0 {
        c = 0xffff;
    }
    field.copy_from_slice(&c.to_be_bytes());
}

/// Rewrites ports (each `(old, new)`); for ICMP echo the identifier (sport == dport).
pub fn rewrite_ports(
    frame: &mut [u8],
    l4: usize,
    proto: L4Proto,
    sport: (u16, u16),
    dport: (u16, u16),
) {
    let seg = &mut frame[l4..];
    match proto {
        L4Proto::Tcp => {
            let mut t = TcpPacket::new_unchecked(seg);
            let mut c = t.checksum();
            if sport.0 != sport.1 {
                c = update_u16(c, sport.0, sport.1);
                t.set_src_port(sport.1);
            }
            if dport.0 != dport.1 {
                c = update_u16(c, dport.0, dport.1);
                t.set_dst_port(dport.1);
            }
            t.set_checksum(c);
        }
        L4Proto::Udp => {
            let mut u = UdpPacket::new_unchecked(seg);
            let mut c = u.checksum();
            let has_csum = c != 0;
            if sport.0 != sport.1 {
                c = update_u16(c, sport.0, sport.1);
                u.set_src_port(sport.1);
            }
            if dport.0 != dport.1 {
                c = update_u16(c, dport.0, dport.1);
                u.set_dst_port(dport.1);
            }
            if has_csum {
                u.set_checksum(if c == 0 { 0xffff } else { c });
            }
        }
        L4Proto::Sctp => {
            if let Ok(mut s) = SctpPacket::new_checked(seg) {
                s.set_ports(sport.1, dport.1);
            }
        }
        L4Proto::Icmp => {
            // Echo request and reply carry the identifier once; both "ports" name it.
            if sport.0 != sport.1 {
                let mut i = Icmpv4Packet::new_unchecked(seg);
                let c = update_u16(i.checksum(), sport.0, sport.1);
                i.set_echo_ident(sport.1);
                i.set_checksum(c);
            }
        }
    }
}
