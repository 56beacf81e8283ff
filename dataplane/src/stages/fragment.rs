//! IPv4 fragments: the first fragment of a datagram runs the pipeline like any packet and its
//! outcome (the addresses it left with, or its drop reason) is recorded in the worker's
//! fragment table (`tables::fragments`); later fragments, which carry no L4 header, look it
//! up and get exactly that: the same address translation and route, or the same drop. Nothing
//! is reassembled.
//!
//! Invariants:
//! - A later fragment never gets further than its first: it is forwarded only if the first
//!   was, with the first's translation; denied first => every fragment denied, under the same
//!   reason. One without an entry is `fragment_unknown` (out-of-order first fragments are
//!   counted there, not held); a first fragment without room is `fragment_table_full`.
//! - The whole L4 header must be in the first fragment, and no later fragment may overlap it
//!   (RFC 1858's tiny and overlapping fragments): else `malformed`.
//! - Only the first fragment holds ports and the L4 checksum: NAT rewrites ports and the L4
//!   checksum there (incrementally, so the checksum over the whole datagram stays right), and
//!   only the IPv4 header (addresses, header checksum) in later fragments.
//! - Fragments with offload metadata (a partial checksum, GSO), fragmented ICMP errors and SCTP
//!   fragments (its CRC32c covers the whole datagram) are not followed: `fragment`.
//! - Fragments never enter the fast path: classify branches here once on the IP header's
//!   fragment bits, and the pipeline once on `Ctx::frag`.

use crate::drop::DropReason;
use crate::flow::{Dir, FlowKey, L4Proto};
use crate::packet::{Offload, Packet, Verdict};
use crate::pipeline::{Pipeline, TraceEvent};
use crate::snapshot::Snapshot;
use crate::tables::fragments::{FragKey, FragVerdict};
use crate::tables::ports::PortKind;
use crate::wire::{Icmpv4Packet, Ipv4Packet, TcpPacket, UdpPacket, icmp};

use super::{Ctx, conntrack, nat, route};

/// Where a packet stands among the fragments of its datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frag {
    /// Not a fragment.
    None,
    /// The first fragment (offset 0, more fragments follow), with the datagram's IP id.
    First(u16),
    /// A later fragment (offset > 0), with the datagram's IP id: it has no L4 header.
    Later(u16),
}

/// The shortest L4 header of each protocol: the bytes a later fragment may not overlap.
fn min_l4_header(proto: L4Proto) -> usize {
    match proto {
        L4Proto::Tcp => 20,
        L4Proto::Udp | L4Proto::Icmp => 8,
        L4Proto::Sctp => 12,
    }
}

/// Classifies a fragment (the IPv4 header at `l3` is valid; `l4` is its payload).
pub fn classify(
    snap: &Snapshot,
    pkt: &Packet,
    in_kind: PortKind,
    l3: usize,
    l4: usize,
    proto: L4Proto,
) -> Result<Ctx, DropReason> {
    // SCTP's CRC32c covers the whole datagram: its ports cannot be translated in the first
    // fragment alone (SCTP fragments itself and sets DF; a fragmented SCTP packet is not ours).
    if pkt.meta.csum_partial || pkt.meta.offload != Offload::default() || proto == L4Proto::Sctp {
        return Err(DropReason::Fragment);
    }
    let (src, dst, id, offset) = {
        let ip = Ipv4Packet::new_unchecked(&pkt.data()[l3..]);
        (ip.src_addr(), ip.dst_addr(), ip.ident(), ip.frag_offset())
    };
    let seg = pkt.data().get(l4..).ok_or(DropReason::Malformed)?;
    let mut ctx = Ctx {
        in_kind,
        from_peer: None,
        l3,
        l4,
        key: FlowKey::new(proto, src, 0, dst, 0),
        tcp_flags: 0,
        icmp_error: false,
        translated: false,
        frag: Frag::Later(id),
    };
    if offset != 0 {
        if usize::from(offset) < min_l4_header(proto) {
            return Err(DropReason::Malformed);
        }
        return Ok(ctx);
    }
    if seg.len() < min_l4_header(proto) {
        return Err(DropReason::Malformed);
    }
    let (sport, dport) = match proto {
        L4Proto::Tcp => {
            let t = TcpPacket::new_checked(seg).map_err(|_| DropReason::Malformed)?;
            ctx.tcp_flags = t.flags().0;
            (t.src_port(), t.dst_port())
        }
        L4Proto::Udp => {
            // The length field is the whole datagram's: only the ports are read here.
            let u = UdpPacket::new_unchecked(seg);
            (u.src_port(), u.dst_port())
        }
        L4Proto::Icmp => {
            let i = Icmpv4Packet::new_unchecked(seg);
            if i.msg_type() == icmp::REDIRECT {
                return Err(DropReason::IcmpRedirect);
            }
            if !i.is_echo() {
                return Err(DropReason::Fragment);
            }
            (i.echo_ident(), i.echo_ident())
        }
        L4Proto::Sctp => return Err(DropReason::Fragment),
    };
    if in_kind == PortKind::Pod
        && proto == L4Proto::Udp
        && dport == snap.node.vxlan_port
        && !snap.node.cluster_cidr.contains(dst)
    {
        return Err(DropReason::VxlanFromPod);
    }
    ctx.key = FlowKey::new(proto, src, sport, dst, dport);
    ctx.frag = Frag::First(id);
    Ok(ctx)
}

/// Conntrack and routing for a fragment (`ctx.frag` is not `None`).
pub fn back(
    p: &mut Pipeline,
    snap: &Snapshot,
    pkt: &mut Packet,
    ctx: &mut Ctx,
) -> Result<Verdict, DropReason> {
    let (payload, last) = extent(pkt, ctx.l3);
    match ctx.frag {
        Frag::None => Err(DropReason::Fragment),
        Frag::First(id) => {
            let fk = frag_key(&ctx.key, id);
            let at = p
                .frags
                .claim(fk, p.now)
                .ok_or(DropReason::FragmentTableFull)?;
            let (result, verdict) = first(p, snap, pkt, ctx);
            p.frags.decide(at, verdict, payload, last);
            result
        }
        Frag::Later(id) => {
            let fk = frag_key(&ctx.key, id);
            let (at, verdict) = p
                .frags
                .lookup(&fk, p.now)
                .ok_or(DropReason::FragmentUnknown)?;
            p.frags.account(at, payload, last);
            match verdict {
                FragVerdict::Pending => Err(DropReason::FragmentUnknown),
                FragVerdict::Drop(reason) => Err(reason),
                FragVerdict::Forward {
                    key,
                    src,
                    dst,
                    translated,
                } => {
                    nat::rewrite_ipv4_addrs(
                        pkt.data_mut(),
                        ctx.l3,
                        (ctx.key.src, src),
                        (ctx.key.dst, dst),
                    );
                    p.trace(|| TraceEvent::ConntrackHit {
                        dir: Dir::Original,
                        xlate: FlowKey { src, dst, ..key },
                    });
                    ctx.key = key;
                    ctx.translated = translated;
                    Ok(route::route(p, snap, pkt, ctx))
                }
            }
        }
    }
}

/// The first fragment through conntrack and routing, and what its followers get.
fn first(
    p: &mut Pipeline,
    snap: &Snapshot,
    pkt: &mut Packet,
    ctx: &mut Ctx,
) -> (Result<Verdict, DropReason>, FragVerdict) {
    match conntrack::track(p, snap, pkt, ctx) {
        Err(reason) => (Err(reason), FragVerdict::Drop(reason)),
        // Answered here (a reject): the rest of the datagram has nowhere to go.
        Ok(Some(answer)) => (Ok(answer), FragVerdict::Drop(DropReason::Fragment)),
        Ok(None) => {
            let (src, dst) = {
                let ip = Ipv4Packet::new_unchecked(&pkt.data()[ctx.l3..]);
                (ip.src_addr(), ip.dst_addr())
            };
            let routed = route::route(p, snap, pkt, ctx);
            let verdict = conntrack::confirm(p, routed);
            let follow = match verdict {
                Verdict::Drop(reason) => FragVerdict::Drop(reason),
                _ => FragVerdict::Forward {
                    key: ctx.key,
                    src,
                    dst,
                    translated: ctx.translated,
                },
            };
            (Ok(verdict), follow)
        }
    }
}

fn frag_key(key: &FlowKey, id: u16) -> FragKey {
    FragKey {
        src: key.src,
        dst: key.dst,
        proto: key.proto,
        id,
    }
}

/// The fragment's payload length, and the datagram's payload length if it is the last one.
fn extent(pkt: &Packet, l3: usize) -> (u32, Option<u32>) {
    let ip = Ipv4Packet::new_unchecked(&pkt.data()[l3..]);
    let payload = u32::from(ip.total_len()).saturating_sub(ip.header_len() as u32);
    let last = (!ip.more_frags()).then(|| u32::from(ip.frag_offset()) + payload);
    (payload, last)
}
