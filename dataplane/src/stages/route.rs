//! Routing: local pod port, remote node (VXLAN or routed underlay), host port, or uplink.
//! Pod-sourced packets to another node's own address go to that node like pod traffic.
//! Also enforces the MTU (frag-needed when DF is set, user-needs J1) and the TTL.
//!
//! Invariants:
//! - Packets that arrived from the overlay or the underlay are only delivered to this node
//!   (its pods or its host); the node never transits traffic between underlay peers.
//! - Every transmitted frame gets the Ethernet addresses of its next hop here.

use std::net::Ipv4Addr;

use crate::drop::DropReason;
use crate::offload::partial::fit_mtu;
use crate::packet::{Packet, Verdict};
use crate::pipeline::{Pipeline, RouteTarget, TraceEvent};
use crate::snapshot::Snapshot;
use crate::tables::node::OverlayMode;
use crate::tables::ports::PortKind;
use crate::tables::routes::RemoteNode;
use crate::wire::checksum::update_u16;
use crate::wire::{EthernetFrame, Ipv4Packet, MacAddr, icmp};

use super::Ctx;
use super::icmp::{make_error, translate_error};

pub fn route(p: &mut Pipeline, snap: &Snapshot, pkt: &mut Packet, ctx: &Ctx) -> Verdict {
    match route_inner(p, snap, pkt, ctx, true) {
        Ok(v) => v,
        Err(r) => Verdict::Drop(r),
    }
}

fn route_inner(
    p: &mut Pipeline,
    snap: &Snapshot,
    pkt: &mut Packet,
    ctx: &Ctx,
    may_answer: bool,
) -> Result<Verdict, DropReason> {
    let node = &snap.node;
    let (dst, total_len, dont_frag) = {
        let ip = Ipv4Packet::new_unchecked(&pkt.data()[ctx.l3..]);
        (ip.dst_addr(), ip.total_len(), ip.dont_frag())
    };
    decrement_ttl(pkt, ctx.l3)?;
    // Un-translated traffic from the overlay or the underlay is for this node only.
    let from_outside =
        (ctx.from_peer.is_some() || ctx.in_kind == PortKind::Uplink) && !ctx.translated;

    if let Some(pod) = snap.ports.pod(dst) {
        if !fit_mtu(pkt, ctx.l3, ctx.l4, total_len, node.pod_mtu()) {
            return too_big(p, snap, pkt, ctx, node.pod_mtu(), dont_frag, may_answer);
        }
        set_macs(pkt, node.gateway_mac, pod.mac);
        p.trace(|| TraceEvent::Route(RouteTarget::Pod(pod.ip)));
        return Ok(Verdict::Tx(pod.port));
    }
    if node.cluster_cidr.contains(dst) {
        if from_outside {
            return Err(DropReason::NoRoute);
        }
        let remote = snap.routes.lookup(dst).ok_or(DropReason::UnknownVtep)?;
        let next_hop = node.uplink_next_hop_mac;
        return to_remote(
            p,
            snap,
            pkt,
            ctx,
            remote,
            next_hop,
            (total_len, dont_frag, may_answer),
        );
    }
    if node.is_own_address(dst) || dst == node.gateway_ip {
        let host = snap.ports.host().ok_or(DropReason::NoRoute)?;
        // The node reaching a Service whose endpoint is itself (a hostNetwork pod) goes back
        // to it translated (masqueraded to the pod gateway: `service_rules`), as does the reply.
        if pkt.meta.in_port == host && !ctx.translated {
            return Err(DropReason::Hairpin);
        }
        set_macs(pkt, node.gateway_mac, node.host_mac);
        p.trace(|| TraceEvent::Route(RouteTarget::Host));
        return Ok(Verdict::Tx(host));
    }
    if from_outside {
        return Err(DropReason::NoRoute);
    }
    // A pod's packet to another node's own address (a reply to that node's SNAT'd traffic, or
    // a pod reaching a node service) travels like pod traffic: the underlay beyond the nodes
    // does not carry pod sources.
    if let Some(remote) = snap.routes.peer(dst) {
        let src = Ipv4Packet::new_unchecked(&pkt.data()[ctx.l3..]).src_addr();
        if node.cluster_cidr.contains(src) {
            let next_hop = remote.underlay_mac;
            return to_remote(
                p,
                snap,
                pkt,
                ctx,
                remote,
                next_hop,
                (total_len, dont_frag, may_answer),
            );
        }
    }
    let uplink = snap.ports.uplink().ok_or(DropReason::NoRoute)?;
    if !fit_mtu(pkt, ctx.l3, ctx.l4, total_len, node.underlay_mtu) {
        return too_big(p, snap, pkt, ctx, node.underlay_mtu, dont_frag, may_answer);
    }
    set_macs(pkt, node.uplink_mac, node.uplink_next_hop_mac);
    p.trace(|| TraceEvent::Route(RouteTarget::Uplink));
    Ok(Verdict::Tx(uplink))
}

/// Sends a pod-sourced packet to `remote` over the uplink: VXLAN-encapsulated to its VTEP, or
/// in routed mode as it is, to `routed_next_hop` (the underlay router for pod networks, the
/// node itself for its own address). `(total_len, dont_frag, may_answer)` are for the MTU check.
fn to_remote(
    p: &mut Pipeline,
    snap: &Snapshot,
    pkt: &mut Packet,
    ctx: &Ctx,
    remote: &RemoteNode,
    routed_next_hop: MacAddr,
    (total_len, dont_frag, may_answer): (u16, bool, bool),
) -> Result<Verdict, DropReason> {
    let node = &snap.node;
    let mtu = node.pod_mtu();
    if !fit_mtu(pkt, ctx.l3, ctx.l4, total_len, mtu) {
        return too_big(p, snap, pkt, ctx, mtu, dont_frag, may_answer);
    }
    let uplink = snap.ports.uplink().ok_or(DropReason::NoRoute)?;
    p.trace(|| TraceEvent::Route(RouteTarget::Node(remote.node_ip)));
    match node.overlay {
        OverlayMode::Vxlan => {
            let hash = ctx.key.symmetric_hash();
            let added = super::vxlan6::encap_to(snap, pkt, remote, hash, false)?;
            if pkt.meta.offload.is_gso() {
                pkt.meta.offload.encap_len = added as u8;
            }
            p.trace(|| TraceEvent::Encapsulated { to: remote.node_ip });
        }
        OverlayMode::Routed => set_macs(pkt, node.uplink_mac, routed_next_hop),
    }
    Ok(Verdict::Tx(uplink))
}

/// The packet does not fit the next link: with DF, answer frag-needed (translated back
/// through conntrack like any ICMP error about the flow); without DF, drop (a VTEP must not
/// fragment, RFC 7348).
fn too_big(
    p: &mut Pipeline,
    snap: &Snapshot,
    pkt: &mut Packet,
    ctx: &Ctx,
    mtu: u16,
    dont_frag: bool,
    may_answer: bool,
) -> Result<Verdict, DropReason> {
    if !dont_frag || !may_answer {
        return Err(DropReason::MtuExceeded);
    }
    p.drops.count(DropReason::MtuExceeded);
    let from: Ipv4Addr = snap.node.gateway_ip;
    make_error(
        pkt,
        ctx.l3,
        icmp::DEST_UNREACHABLE,
        icmp::CODE_FRAG_NEEDED,
        u32::from(mtu),
        from,
    )?;
    let l4 = ctx.l3 + crate::wire::ipv4::HEADER_LEN;
    translate_error(&p.ct, pkt.data_mut(), ctx.l3, l4, p.now)?;
    p.stats.icmp_generated += 1;
    p.trace(|| TraceEvent::Generated("icmp frag-needed"));
    // The answer is generated here: route it like locally originated traffic.
    let answer = Ctx {
        l4,
        from_peer: None,
        in_kind: PortKind::Pod,
        ..*ctx
    };
    route_inner(p, snap, pkt, &answer, false)
}

fn decrement_ttl(pkt: &mut Packet, l3: usize) -> Result<(), DropReason> {
    let mut ip = Ipv4Packet::new_unchecked(&mut pkt.data_mut()[l3..]);
    let ttl = ip.ttl();
    if ttl <= 1 {
        return Err(DropReason::TtlExceeded);
    }
    let old = u16::from_be_bytes([ttl, ip.protocol()]);
    let new = u16::from_be_bytes([ttl - 1, ip.protocol()]);
    let c = update_u16(ip.checksum(), old, new);
    ip.set_ttl(ttl - 1);
    ip.set_checksum(c);
    Ok(())
}

fn set_macs(pkt: &mut Packet, src: MacAddr, dst: MacAddr) {
    let mut eth = EthernetFrame::new_unchecked(pkt.data_mut());
    eth.set_src_addr(src);
    eth.set_dst_addr(dst);
}
