//! NAT on a super-packet whose TCP checksum is still partial, and the path-MTU fit of a
//! super-packet.
//!
//! A partial checksum field holds the (not complemented) pseudo-header sum: addresses,
//! protocol and length. The receiver (or our own segmentation) adds the header and payload
//! words later. So an address rewrite adjusts that seed by the address change (as the
//! kernel's `inet_proto_csum_replace4` does for CHECKSUM_PARTIAL), and a port rewrite leaves
//! it alone: the ports are summed when the checksum is finished.
//!
//! Invariants:
//! - After `rewrite`, finishing the checksum over the rewritten bytes gives the same result
//!   as computing it from scratch (tested against full recomputation).
//! - `fit_mtu` never drops a super-packet for size: it lowers `gso_size` so that each
//!   segment (IP and TCP headers plus `gso_size`) fits the MTU.

use crate::flow::{FlowKey, L4Proto};
use crate::packet::Packet;
use crate::stages::nat;
use crate::wire::checksum::update_addr;
use crate::wire::{Ipv4Packet, TcpPacket};

/// Rewrites the tuple of the packet at `l3`/`l4` from `from` to `to`, keeping the IPv4
/// checksum correct and, if the L4 checksum is partial (TCP super-packets), its seed.
pub fn rewrite(pkt: &mut Packet, l3: usize, l4: usize, from: &FlowKey, to: &FlowKey) {
    if !pkt.meta.csum_partial || from.proto != L4Proto::Tcp {
        nat::rewrite(pkt.data_mut(), l3, l4, from, to);
        return;
    }
    if from == to {
        return;
    }
    let frame = pkt.data_mut();
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut frame[l3..]);
        let mut c = ip.checksum();
        if from.src != to.src {
            c = update_addr(c, from.src, to.src);
            ip.set_src_addr(to.src);
        }
        if from.dst != to.dst {
            c = update_addr(c, from.dst, to.dst);
            ip.set_dst_addr(to.dst);
        }
        ip.set_checksum(c);
    }
    let Some(seg) = frame.get_mut(l4..) else {
        return;
    };
    let mut t = TcpPacket::new_unchecked(seg);
    // The field holds the seed S, a sum rather than a complemented checksum: treat ~S as a
    // checksum, update it, and store the complement back (S' = ~update(~S)).
    let mut as_checksum = !t.checksum();
    as_checksum = update_addr(as_checksum, from.src, to.src);
    as_checksum = update_addr(as_checksum, from.dst, to.dst);
    t.set_checksum(!as_checksum);
    t.set_src_port(to.sport);
    t.set_dst_port(to.dport);
}

/// Whether a packet with IPv4 total length `total_len` (header at `l3`, L4 at `l4`) fits a
/// link of `mtu`. A super-packet always fits: its segment size is lowered when a segment
/// would not. False only for a plain packet that is too long (frag-needed or drop follows).
pub fn fit_mtu(pkt: &mut Packet, l3: usize, l4: usize, total_len: u16, mtu: u16) -> bool {
    if !pkt.meta.offload.is_gso() {
        return total_len <= mtu;
    }
    let tcp_header = pkt
        .data()
        .get(l4..)
        .map_or(0, |seg| TcpPacket::new_unchecked(seg).header_len());
    let headers = (l4 - l3 + tcp_header) as u16;
    let most = mtu.saturating_sub(headers).max(1);
    let o = &mut pkt.meta.offload;
    o.gso_size = o.gso_size.min(most);
    true
}

#[cfg(test)]
mod tests;
