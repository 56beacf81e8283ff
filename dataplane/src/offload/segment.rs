//! Software TCP segmentation (GSO) of a super-packet into wire-sized segments, for a device
//! that cannot take the super-packet whole (the uplink, a pod on AF_PACKET or AF_XDP).
//!
//! The frame is `encap_len` bytes of outer headers (Ethernet, IPv4 or IPv6, UDP, VXLAN; 0 when
//! not encapsulated), then Ethernet, IPv4 and TCP with the payload. Each segment copies all the
//! headers and its slice of the payload, then fixes: inner IPv4 total length, ident (+i) and
//! header checksum; TCP sequence (+i * mss), flags (FIN and PSH on the last segment only,
//! CWR on the first only) and a complete checksum; outer IPv4 total length and checksum and
//! outer UDP length (its checksum stays zero over IPv4, RFC 7348); over an IPv6 outer header,
//! its payload length and the outer UDP checksum (mandatory there, `stages::vxlan6`).
//!
//! Invariants:
//! - Every segment carries at most `mss` payload bytes and has correct checksums whatever the
//!   super-packet's TCP checksum field held (it is recomputed, not adjusted).
//! - Either every segment is produced or none is (the pool is checked first); malformed
//!   input is an error, never a panic.

use crate::drop::DropReason;
use crate::packet::{Packet, PacketPool};
use crate::wire::checksum::{combine, finish, pseudo_header_v4, sum};
use crate::wire::{Ipv4Packet, Ipv6Packet, TcpFlags, TcpPacket, ethernet, ipv4, ipv6};

/// Offsets of a super-packet's headers, found by `parse`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Outer IPv4 header (when encapsulated).
    pub outer_l3: Option<usize>,
    /// Inner IPv4 header.
    pub l3: usize,
    /// TCP header.
    pub l4: usize,
    /// First payload byte.
    pub payload: usize,
}

/// Finds the headers of a (possibly encapsulated) TCPv4 frame.
pub fn parse(frame: &[u8], encap_len: usize) -> Result<Layout, DropReason> {
    let malformed = DropReason::Malformed;
    let outer_l3 = if encap_len > 0 {
        let outer = frame.get(ethernet::HEADER_LEN..).ok_or(malformed)?;
        let udp = if outer.first().is_some_and(|b| b >> 4 == 6) {
            Ipv6Packet::new_checked(outer)
                .map_err(|_| malformed)?
                .next_header()
        } else {
            Ipv4Packet::new_checked(outer)
                .map_err(|_| malformed)?
                .protocol()
        };
        if udp != ipv4::PROTO_UDP {
            return Err(malformed);
        }
        Some(ethernet::HEADER_LEN)
    } else {
        None
    };
    let l3 = encap_len + ethernet::HEADER_LEN;
    let ip = Ipv4Packet::new_checked(frame.get(l3..).ok_or(malformed)?).map_err(|_| malformed)?;
    if ip.protocol() != ipv4::PROTO_TCP || ip.is_fragment() {
        return Err(malformed);
    }
    let l4 = l3 + ip.header_len();
    if l3 + usize::from(ip.total_len()) != frame.len() {
        return Err(malformed);
    }
    let tcp = TcpPacket::new_checked(frame.get(l4..).ok_or(malformed)?).map_err(|_| malformed)?;
    Ok(Layout {
        outer_l3,
        l3,
        l4,
        payload: l4 + tcp.header_len(),
    })
}

/// How many segments of at most `mss` payload bytes the payload `len` needs (at least one).
pub fn count(len: usize, mss: usize) -> usize {
    len.div_ceil(mss.max(1)).max(1)
}

/// Splits `frame` into segments of at most `mss` payload bytes, each in a small buffer from
/// `pool` appended to `out` with `meta` copied from `template` (offload state cleared).
/// Returns how many segments were made; on error nothing was appended.
pub fn segment(
    frame: &[u8],
    encap_len: usize,
    mss: usize,
    template: &crate::packet::Meta,
    pool: &mut PacketPool,
    out: &mut Vec<Packet>,
) -> Result<usize, DropReason> {
    let at = parse(frame, encap_len)?;
    let mss = mss.max(1);
    let payload = &frame[at.payload..];
    let n = count(payload.len(), mss);
    if at.payload + mss.min(payload.len()) > crate::packet::MAX_FRAME {
        return Err(DropReason::MtuExceeded);
    }
    if pool.available() < n {
        return Err(DropReason::TxRingFull);
    }
    let headers = &frame[..at.payload];
    let (ident, seq, flags) = {
        let ip = Ipv4Packet::new_unchecked(&frame[at.l3..]);
        let tcp = TcpPacket::new_unchecked(&frame[at.l4..]);
        (ip.ident(), tcp.seq_number(), tcp.flags().0)
    };
    for i in 0..n {
        let chunk = payload
            .get(i * mss..((i + 1) * mss).min(payload.len()))
            .unwrap_or(&[]);
        let Some(mut pkt) = pool.get() else {
            return Err(DropReason::TxRingFull);
        };
        let len = headers.len() + chunk.len();
        let area = pkt.receive_area();
        area[..headers.len()].copy_from_slice(headers);
        area[headers.len()..len].copy_from_slice(chunk);
        pkt.set_received(len);
        let seg_flags = segment_flags(flags, i, n);
        fix_segment(
            pkt.data_mut(),
            &at,
            (
                ident.wrapping_add(i as u16),
                seq.wrapping_add((i * mss) as u32),
            ),
            seg_flags,
            sum(chunk),
        );
        pkt.meta = *template;
        pkt.meta.csum_partial = false;
        pkt.meta.offload = Default::default();
        out.push(pkt);
    }
    Ok(n)
}

/// The TCP flags of segment `i` of `n` cut from a super-packet with `flags`: FIN and PSH on
/// the last only, CWR on the first only.
pub(crate) fn segment_flags(flags: u8, i: usize, n: usize) -> u8 {
    let mut seg_flags = flags;
    if i + 1 != n {
        seg_flags &= !(TcpFlags::FIN.0 | TcpFlags::PSH.0);
    }
    if i > 0 {
        seg_flags &= !TcpFlags::CWR.0;
    }
    seg_flags
}

/// Fixes one segment's lengths, ident, sequence, flags and checksums; `payload_sum` is the
/// checksum sum of its payload.
pub(crate) fn fix_segment(
    seg: &mut [u8],
    at: &Layout,
    ids: (u16, u32),
    flags: u8,
    payload_sum: u32,
) {
    let len = seg.len();
    let outer_v6 = at.outer_l3.filter(|&o| seg[o] >> 4 == 6);
    if let Some(outer) = outer_v6 {
        let payload_len = (len - outer - ipv6::HEADER_LEN) as u16;
        seg[outer + 4..outer + 6].copy_from_slice(&payload_len.to_be_bytes());
        let outer_l4 = outer + ipv6::HEADER_LEN;
        seg[outer_l4 + 4..outer_l4 + 6].copy_from_slice(&payload_len.to_be_bytes());
    }
    fix_headers(seg, len, at, ids, flags, payload_sum);
    if let Some(outer) = outer_v6 {
        let ip = Ipv6Packet::new_unchecked(&seg[outer..]);
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        crate::stages::vxlan6::fill_udp6_checksum(&mut seg[outer + ipv6::HEADER_LEN..], src, dst);
    }
}

/// As [`fix_segment`] for a segment of `len` bytes whose headers (up to `at.payload`) are
/// `seg` and whose payload lies elsewhere (a gather write): `payload_sum` is its sum. An IPv6
/// outer header is left to [`fix_segment`], whose UDP checksum needs the whole datagram.
pub(crate) fn fix_headers(
    seg: &mut [u8],
    len: usize,
    at: &Layout,
    (ident, seq): (u16, u32),
    flags: u8,
    payload_sum: u32,
) {
    if let Some(outer) = at.outer_l3.filter(|&o| seg[o] >> 4 == 4) {
        let mut ip = Ipv4Packet::new_unchecked(&mut seg[outer..]);
        let outer_len = len - outer;
        let outer_l4 = outer + ip.header_len();
        ip.set_total_len(outer_len as u16);
        ip.fill_checksum();
        let udp_len = (len - outer_l4) as u16;
        seg[outer_l4 + 4..outer_l4 + 6].copy_from_slice(&udp_len.to_be_bytes());
    }
    let (src, dst) = {
        let mut ip = Ipv4Packet::new_unchecked(&mut seg[at.l3..]);
        ip.set_total_len((len - at.l3) as u16);
        ip.set_ident(ident);
        ip.fill_checksum();
        (ip.src_addr(), ip.dst_addr())
    };
    let tcp_len = len - at.l4;
    let mut tcp = TcpPacket::new_unchecked(&mut seg[at.l4..]);
    tcp.set_seq_number(seq);
    tcp.set_flags(TcpFlags(flags));
    tcp.set_checksum(0);
    let header_sum = sum(&seg[at.l4..at.payload]);
    let total = combine(
        combine(
            pseudo_header_v4(src, dst, ipv4::PROTO_TCP, tcp_len as u16),
            header_sum,
        ),
        payload_sum,
    );
    seg[at.l4 + 16..at.l4 + 18].copy_from_slice(&finish(total).to_be_bytes());
}

#[cfg(test)]
mod tests;
