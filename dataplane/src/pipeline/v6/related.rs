//! ICMPv6 errors about translated flows (RFC 4443 errors: destination unreachable, packet too
//! big, time exceeded, parameter problem), reverse-translated as the kernel's conntrack does
//! for IPv4: the quoted packet is the one a flow's translation produced, so it is rewritten back
//! to the tuple its sender knows, and the error's own destination (and its source, when the
//! flow's peer itself sent it) with it.
//!
//! Invariants:
//! - The flow is found by the inverse of the quoted tuple (the direction the error travels),
//!   without refreshing it (`Conntrack6::peek`).
//! - The ICMPv6 checksum must verify before (`bad_checksum`) and is computed afresh after; the
//!   quoted upper-layer checksum is updated incrementally where the quote holds it.
//! - An error of no flow passes as it is (the stateless path), unless it concerns a pod that a
//!   NetworkPolicy isolates: then it is `icmp_error_unmatched`.

use std::net::Ipv6Addr;

use crate::drop::DropReason;
use crate::packet::Packet;
use crate::pipeline::Pipeline;
use crate::snapshot::Snapshot;
use crate::tables::conntrack6::Tuple6;
use crate::wire::icmpv6::{self, Icmpv6Packet, PROTO_ICMPV6};
use crate::wire::nat66::{self, Endpoints6};
use crate::wire::{Ipv6Packet, ipv4, ipv6_ext};

use super::{Ctx6, policy};

/// Offsets inside the quoted IPv6 header.
const SRC: std::ops::Range<usize> = 8..24;
const DST: std::ops::Range<usize> = 24..40;

pub(super) fn translate(
    p: &mut Pipeline,
    snap: &Snapshot,
    pkt: &mut Packet,
    ctx: &mut Ctx6,
) -> Result<(), DropReason> {
    let inner = ctx.l4 + icmpv6::HEADER_LEN;
    let Some((quoted, inner_l4)) = quoted_tuple(pkt.data().get(inner..).unwrap_or_default()) else {
        return unmatched(snap, pkt, ctx);
    };
    let Some(hit) = p.ct6.peek(&quoted.inverse(), p.now) else {
        return unmatched(snap, pkt, ctx);
    };
    let icmp_ok = Icmpv6Packet::new_checked(&pkt.data()[ctx.l4..])
        .is_ok_and(|i| i.verify_checksum(ctx.src, ctx.dst));
    if !icmp_ok {
        return Err(DropReason::BadChecksum);
    }
    let to = hit.rewrite_to;
    let inner_to = to.inverse();
    if inner_to == quoted {
        // An untranslated flow (tracked for policy): the error passes as it is, under routing's
        // rules for untranslated traffic.
        return Ok(());
    }
    let new_src = if ctx.src == quoted.dst {
        to.src
    } else {
        ctx.src
    };
    let new_dst = to.dst;
    rewrite_quoted(&mut pkt.data_mut()[inner..], inner_l4, &inner_to);
    {
        let buf = &mut pkt.data_mut()[ctx.l3..];
        buf[SRC].copy_from_slice(&new_src.octets());
        buf[DST].copy_from_slice(&new_dst.octets());
    }
    Icmpv6Packet::new_unchecked(&mut pkt.data_mut()[ctx.l4..]).fill_checksum(new_src, new_dst);
    (ctx.src, ctx.dst) = (new_src, new_dst);
    ctx.translated = true;
    Ok(())
}

fn unmatched(snap: &Snapshot, pkt: &Packet, ctx: &Ctx6) -> Result<(), DropReason> {
    if policy::touches_isolated(snap, pkt, ctx) {
        Err(DropReason::IcmpErrorUnmatched)
    } else {
        Ok(())
    }
}

/// The tuple of the quoted packet (TCP, UDP or ICMPv6 echo) and the offset of its upper-layer
/// header in the quote; `None` when the quote is too short to say.
fn quoted_tuple(q: &[u8]) -> Option<(Tuple6, usize)> {
    let ip = Ipv6Packet::new_checked(q).ok()?;
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let chain = ipv6_ext::walk(q, ip.next_header()).ok()?;
    let l4 = q.get(chain.l4..)?;
    let (sport, dport) = match chain.proto {
        ipv4::PROTO_TCP | ipv4::PROTO_UDP => {
            let h = l4.get(..4)?;
            (
                u16::from_be_bytes([h[0], h[1]]),
                u16::from_be_bytes([h[2], h[3]]),
            )
        }
        PROTO_ICMPV6 => {
            let h = l4.get(..6)?;
            if h[0] != icmpv6::ECHO_REQUEST && h[0] != icmpv6::ECHO_REPLY {
                return None;
            }
            let ident = u16::from_be_bytes([h[4], h[5]]);
            (ident, ident)
        }
        _ => return None,
    };
    let tuple = Tuple6 {
        src,
        dst,
        sport,
        dport,
        proto: chain.proto,
    };
    Some((tuple, chain.l4))
}

/// Rewrites the quoted packet to `to`: through NAT66 (checksum included) where its upper-layer
/// header is whole, else its addresses and ports as they are (a short quote has no checksum
/// to keep).
fn rewrite_quoted(q: &mut [u8], l4: usize, to: &Tuple6) {
    let ends = Endpoints6 {
        src: to.src,
        dst: to.dst,
        sport: to.sport,
        dport: to.dport,
    };
    if nat66::rewrite(q, l4, to.proto, &ends).is_ok() {
        return;
    }
    write_addr(q, SRC, to.src);
    write_addr(q, DST, to.dst);
    let ports = match to.proto {
        PROTO_ICMPV6 => (l4 + 4, to.sport, None),
        _ => (l4, to.sport, Some(to.dport)),
    };
    if let Some(field) = q.get_mut(ports.0..ports.0 + 2) {
        field.copy_from_slice(&ports.1.to_be_bytes());
    }
    if let Some(dport) = ports.2
        && let Some(field) = q.get_mut(l4 + 2..l4 + 4)
    {
        field.copy_from_slice(&dport.to_be_bytes());
    }
}

fn write_addr(q: &mut [u8], at: std::ops::Range<usize>, ip: Ipv6Addr) {
    if let Some(field) = q.get_mut(at) {
        field.copy_from_slice(&ip.octets());
    }
}
