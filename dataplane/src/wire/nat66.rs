//! NAT66 rewrite of an IPv6 packet in place: its source and destination addresses and its TCP/UDP
//! ports or ICMPv6 echo identifier, with the upper-layer checksum updated incrementally
//! (RFC 1624 over the pseudo header and the ports). IPv6 has no header checksum, so the
//! upper-layer checksum is the only one to fix.
//!
//! Invariants:
//! - The buffer starts at the IPv6 header; `l4` is the offset of the upper-layer header after the
//!   extension headers (as `ipv6_ext::walk` found it). Extension headers are left as they are.
//! - The checksum must be complete (not CHECKSUM_PARTIAL): the IPv6 path completes partial
//!   checksums before it routes.
//! - A UDP checksum of zero is refused (invalid in IPv6, RFC 8200 8.1) and a UDP result of zero
//!   is stored as 0xffff.
//! - On error nothing has been written.

use std::net::Ipv6Addr;

use super::WireError;
use super::checksum::{fold, update_u16};

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_ICMPV6: u8 = 58;

mod field {
    use std::ops::Range;

    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;
    /// Ports of TCP and UDP, relative to the upper-layer header.
    pub const SPORT: usize = 0;
    pub const DPORT: usize = 2;
    pub const TCP_CHECKSUM: usize = 16;
    pub const UDP_CHECKSUM: usize = 6;
    pub const ICMPV6_TYPE: usize = 0;
    pub const ICMPV6_CHECKSUM: usize = 2;
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_REQUEST: u8 = 128;
    pub const ECHO_REPLY: u8 = 129;
}

/// What a packet is rewritten to. For ICMPv6 echo, `sport` is the identifier (the IPv6 path keys
/// echo with the identifier as both ports) and `dport` is unused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoints6 {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub sport: u16,
    pub dport: u16,
}

fn read_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn write_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Updates `checksum` for an IPv6 address it covers (through the pseudo header) changing.
pub fn update_addr6(checksum: u16, old: Ipv6Addr, new: Ipv6Addr) -> u16 {
    // 17 terms of at most 0xffff each: no overflow in u32.
    let mut sum = u32::from(!checksum);
    for (o, n) in old.segments().iter().zip(new.segments()) {
        sum += u32::from(!o) + u32::from(n);
    }
    !fold(sum)
}

/// Rewrites the IPv6 packet in `ip` (a TCP, UDP or ICMPv6 echo packet whose upper-layer header is
/// at `l4`) to `to`.
pub fn rewrite(ip: &mut [u8], l4: usize, proto: u8, to: &Endpoints6) -> Result<(), WireError> {
    let truncated = WireError::Truncated { layer: "nat66" };
    if ip.len() < field::DST.end {
        return Err(truncated);
    }
    let (csum_at, min_len) = match proto {
        PROTO_TCP => (field::TCP_CHECKSUM, 20),
        PROTO_UDP => (field::UDP_CHECKSUM, 8),
        PROTO_ICMPV6 => (field::ICMPV6_CHECKSUM, 8),
        _ => {
            return Err(WireError::Malformed {
                layer: "nat66",
                what: "upper-layer protocol",
            });
        }
    };
    if l4 < field::DST.end || ip.len() < l4 + min_len {
        return Err(truncated);
    }
    let old_src = read_addr(&ip[field::SRC]);
    let old_dst = read_addr(&ip[field::DST]);
    let (l3, seg) = ip.split_at_mut(l4);
    let mut csum = read_u16(seg, csum_at);
    if proto == PROTO_UDP && csum == 0 {
        return Err(WireError::Malformed {
            layer: "nat66",
            what: "UDP checksum zero",
        });
    }
    if proto == PROTO_ICMPV6 {
        let kind = seg[field::ICMPV6_TYPE];
        if kind != field::ECHO_REQUEST && kind != field::ECHO_REPLY {
            return Err(WireError::Malformed {
                layer: "nat66",
                what: "ICMPv6 type (echo only)",
            });
        }
        let ident = read_u16(seg, field::ECHO_IDENT);
        csum = update_u16(csum, ident, to.sport);
        write_u16(seg, field::ECHO_IDENT, to.sport);
    } else {
        let (sport, dport) = (read_u16(seg, field::SPORT), read_u16(seg, field::DPORT));
        csum = update_u16(csum, sport, to.sport);
        csum = update_u16(csum, dport, to.dport);
        write_u16(seg, field::SPORT, to.sport);
        write_u16(seg, field::DPORT, to.dport);
    }
    csum = update_addr6(csum, old_src, to.src);
    csum = update_addr6(csum, old_dst, to.dst);
    if proto == PROTO_UDP && csum == 0 {
        csum = 0xffff;
    }
    write_u16(seg, csum_at, csum);
    l3[field::SRC].copy_from_slice(&to.src.octets());
    l3[field::DST].copy_from_slice(&to.dst.octets());
    Ok(())
}

fn read_addr(b: &[u8]) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o.copy_from_slice(b);
    Ipv6Addr::from(o)
}

#[cfg(test)]
#[path = "nat66_tests.rs"]
mod tests;
