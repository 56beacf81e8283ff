//! ICMP errors: reverse translation of errors about tracked flows (user-needs A11), and
//! generation of errors in place (port unreachable, fragmentation needed).
//!
//! Invariants:
//! - A translated error quotes the packet as its sender sent it (before our NAT), and is
//!   addressed to that sender; outer and quoted checksums are made correct again.
//! - Quoted packets may be truncated to header + 8 bytes: nothing past the buffer is touched.

use std::net::Ipv4Addr;

use crate::drop::DropReason;
use crate::flow::{FlowKey, L4Proto};
use crate::packet::Packet;
use crate::tables::conntrack::{Conntrack, Now};
use crate::wire::checksum::{update_addr, update_u16};
use crate::wire::{EthernetFrame, Icmpv4Packet, Ipv4Packet, Ipv4Repr, icmp, ipv4};

/// Offsets of the quoted L4 checksum field, when the quote is long enough to hold it.
const TCP_CSUM: usize = 16;
const UDP_CSUM: usize = 6;

/// The flow key of the packet quoted in the ICMP error at `l4`, as that packet was sent.
pub fn quoted_key(frame: &[u8], l4: usize) -> Result<(FlowKey, usize, usize), DropReason> {
    let inner_l3 = l4 + icmp::HEADER_LEN;
    let ip = Ipv4Packet::new_inner(frame.get(inner_l3..).ok_or(DropReason::Malformed)?)
        .map_err(|_| DropReason::Malformed)?;
    let proto = L4Proto::from_ip_proto(ip.protocol()).ok_or(DropReason::IcmpErrorUnmatched)?;
    let inner_l4 = inner_l3 + ip.header_len();
    let q = frame
        .get(inner_l4..inner_l4 + 8)
        .ok_or(DropReason::Malformed)?;
    let (sport, dport) = match proto {
        L4Proto::Tcp | L4Proto::Udp | L4Proto::Sctp => (
            u16::from_be_bytes([q[0], q[1]]),
            u16::from_be_bytes([q[2], q[3]]),
        ),
        L4Proto::Icmp => {
            let id = u16::from_be_bytes([q[4], q[5]]);
            (id, id)
        }
    };
    let key = FlowKey::new(proto, ip.src_addr(), sport, ip.dst_addr(), dport);
    Ok((key, inner_l3, inner_l4))
}

/// If the ICMP error at `l3`/`l4` is about a tracked flow, rewrites it to what the flow's
/// endpoint expects and returns true; false if no flow matches (left untouched).
pub fn translate_error(
    ct: &Conntrack,
    frame: &mut [u8],
    l3: usize,
    l4: usize,
    now: Now,
) -> Result<bool, DropReason> {
    let (inner, inner_l3, inner_l4) = quoted_key(frame, l4)?;
    let Some(hit) = ct.lookup(&inner.reversed(), now) else {
        return Ok(false);
    };
    let to = hit.xlate.reversed();
    rewrite_quoted(frame, inner_l3, inner_l4, &inner, &to);
    let (outer_src, outer_dst) = {
        let ip = Ipv4Packet::new_unchecked(&frame[l3..]);
        (ip.src_addr(), ip.dst_addr())
    };
    let new_dst = to.src;
    let new_src = if outer_src == inner.dst {
        to.dst
    } else {
        outer_src
    };
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut frame[l3..]);
        let mut c = ip.checksum();
        c = update_addr(c, outer_src, new_src);
        c = update_addr(c, outer_dst, new_dst);
        ip.set_src_addr(new_src);
        ip.set_dst_addr(new_dst);
        ip.set_checksum(c);
    }
    let end = l3 + usize::from(Ipv4Packet::new_unchecked(&frame[l3..]).total_len());
    let mut msg = Icmpv4Packet::new_unchecked(&mut frame[l4..end]);
    msg.fill_checksum();
    Ok(true)
}

/// Rewrites a quoted (possibly truncated) packet from tuple `from` to tuple `to`.
fn rewrite_quoted(frame: &mut [u8], l3: usize, l4: usize, from: &FlowKey, to: &FlowKey) {
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut frame[l3..]);
        ip.set_src_addr(to.src);
        ip.set_dst_addr(to.dst);
        ip.fill_checksum();
    }
    let csum_at = match from.proto {
        L4Proto::Tcp => Some(l4 + TCP_CSUM),
        L4Proto::Udp => Some(l4 + UDP_CSUM),
        L4Proto::Icmp => Some(l4 + 2),
        // The CRC32c covers the whole SCTP packet, which a quote rarely holds: left as quoted.
        L4Proto::Sctp => None,
    };
    let mut csum = csum_at
        .and_then(|at| frame.get(at..at + 2))
        .map(|b| u16::from_be_bytes([b[0], b[1]]));
    if from.proto == L4Proto::Udp && csum == Some(0) {
        csum = None;
    }
    if let Some(c) = csum.as_mut()
        && from.proto != L4Proto::Icmp
    {
        *c = update_addr(*c, from.src, to.src);
        *c = update_addr(*c, from.dst, to.dst);
    }
    match from.proto {
        L4Proto::Tcp | L4Proto::Udp | L4Proto::Sctp => {
            frame[l4..l4 + 2].copy_from_slice(&to.sport.to_be_bytes());
            frame[l4 + 2..l4 + 4].copy_from_slice(&to.dport.to_be_bytes());
            if let Some(c) = csum.as_mut() {
                *c = update_u16(*c, from.sport, to.sport);
                *c = update_u16(*c, from.dport, to.dport);
            }
        }
        L4Proto::Icmp => {
            frame[l4 + 4..l4 + 6].copy_from_slice(&to.sport.to_be_bytes());
            if let Some(c) = csum.as_mut() {
                *c = update_u16(*c, from.sport, to.sport);
            }
        }
    }
    if let (Some(at), Some(c)) = (csum_at, csum) {
        let c = if from.proto == L4Proto::Udp && c == 0 {
            0xffff
        } else {
            c
        };
        frame[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
}

/// Turns the IPv4 packet at `l3` into an ICMP error from `src` back to its sender, quoting
/// its header and first 8 payload bytes. Ethernet addresses are swapped (back where it came
/// from); the caller routes it.
pub fn make_error(
    pkt: &mut Packet,
    l3: usize,
    msg_type: u8,
    code: u8,
    rest: u32,
    src: Ipv4Addr,
) -> Result<(), DropReason> {
    let (orig_src, quote_len) = {
        let ip = Ipv4Packet::new_checked(&pkt.data()[l3..]).map_err(|_| DropReason::Malformed)?;
        let q = (ip.header_len() + 8).min(usize::from(ip.total_len()));
        (ip.src_addr(), q)
    };
    let hdr = ipv4::HEADER_LEN + icmp::HEADER_LEN;
    let total = hdr + quote_len;
    if !pkt.set_len(l3 + total.max(quote_len)) {
        return Err(DropReason::Malformed);
    }
    let buf = pkt.data_mut();
    buf.copy_within(l3..l3 + quote_len, l3 + hdr);
    swap_macs(buf);
    let ip = Ipv4Repr {
        src,
        dst: orig_src,
        protocol: ipv4::PROTO_ICMP,
        ttl: 64,
        payload_len: (icmp::HEADER_LEN + quote_len) as u16,
        dont_frag: false,
        ident: 0,
    };
    ip.emit(&mut buf[l3..]).map_err(|_| DropReason::Malformed)?;
    let mut m = Icmpv4Packet::new_unchecked(&mut buf[l3 + ipv4::HEADER_LEN..l3 + total]);
    m.set_msg_type(msg_type);
    m.set_code(code);
    m.set_rest_of_header(rest);
    m.fill_checksum();
    if !pkt.set_len(l3 + total) {
        return Err(DropReason::Malformed);
    }
    Ok(())
}

/// Swaps source and destination MAC: the frame goes back to where it came from.
pub fn swap_macs(frame: &mut [u8]) {
    let mut eth = EthernetFrame::new_unchecked(frame);
    let (s, d) = (eth.src_addr(), eth.dst_addr());
    eth.set_src_addr(d);
    eth.set_dst_addr(s);
}
