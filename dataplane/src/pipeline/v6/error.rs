//! ICMPv6 errors the node answers (RFC 4443): time exceeded (hop limit) and packet too big,
//! built in the offending packet's own buffer.
//!
//! Invariants:
//! - The error quotes as much of the offending packet as keeps it within the IPv6 minimum MTU
//!   (1280 bytes, RFC 4443 2.4 c); the quoted bytes stay where they are and the new headers are
//!   written in front of them, in the headroom.
//! - Never sent about an ICMPv6 error, nor to a multicast or unspecified source (callers refuse
//!   those before: `Ctx6::icmp_error`, the source checks).
//! - The returned context describes the generated packet, routed like locally originated traffic.

use std::net::Ipv6Addr;

use crate::drop::DropReason;
use crate::packet::Packet;
use crate::tables::ports::PortKind;
use crate::wire::icmpv6::{self, Icmpv6Packet, PROTO_ICMPV6};
use crate::wire::ipv6::HEADER_LEN;
use crate::wire::{EthernetRepr, Ipv6Repr, MacAddr, ethernet};

use super::Ctx6;

/// The IPv6 minimum link MTU (RFC 8200 5).
pub(crate) const MIN_MTU: usize = 1280;
/// Bytes the error puts in front of the quoted packet (IPv6 and ICMPv6 headers).
const ADDED: usize = HEADER_LEN + icmpv6::HEADER_LEN;

/// Turns the packet into an ICMPv6 error from `from` back to its source.
pub(super) fn make_error(
    pkt: &mut Packet,
    ctx: &Ctx6,
    (msg_type, code, value): (u8, u8, u32),
    from: Ipv6Addr,
) -> Result<Ctx6, DropReason> {
    if ctx.l3 != ethernet::HEADER_LEN {
        return Err(DropReason::Malformed);
    }
    let quote = (pkt.len() - ctx.l3).min(MIN_MTU - ADDED);
    if !pkt.set_len(ctx.l3 + quote) || !pkt.push_front(ADDED) {
        return Err(DropReason::Malformed);
    }
    let l3 = ethernet::HEADER_LEN;
    let l4 = l3 + HEADER_LEN;
    let buf = pkt.data_mut();
    // The MACs are the next hop's, set by routing.
    let eth = EthernetRepr {
        src: MacAddr([0; 6]),
        dst: MacAddr([0; 6]),
        ethertype: ethernet::ETHERTYPE_IPV6,
    };
    eth.emit(buf).map_err(|_| DropReason::Malformed)?;
    let ip = Ipv6Repr {
        src: from,
        dst: ctx.src,
        next_header: PROTO_ICMPV6,
        hop_limit: 64,
        payload_len: (icmpv6::HEADER_LEN + quote) as u16,
    };
    ip.emit(&mut buf[l3..]).map_err(|_| DropReason::Malformed)?;
    icmpv6::emit_error_header(&mut buf[l4..], msg_type, code, value)
        .map_err(|_| DropReason::Malformed)?;
    Icmpv6Packet::new_unchecked(&mut buf[l4..]).fill_checksum(from, ctx.src);
    Ok(Ctx6 {
        in_kind: PortKind::Pod,
        from_peer: None,
        l3,
        l4,
        proto: PROTO_ICMPV6,
        src: from,
        dst: ctx.src,
        sport: 0,
        dport: 0,
        icmp_error: true,
        translated: false,
        before: None,
    })
}
