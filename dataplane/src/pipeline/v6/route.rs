//! IPv6 routing: local pod port, remote node (VXLAN over the IPv4 or IPv6 underlay, or routed), host
//! port, or uplink; with the hop limit (ICMPv6 time exceeded) and the MTU (ICMPv6 packet too
//! big), as `stages::route` does for IPv4.
//!
//! Invariants:
//! - Packets from the overlay or the underlay are delivered only to this node's pods and host,
//!   unless a flow's translation rewrote them (a reply on its way back to its client, a
//!   NodePort or LoadBalancer flow on its way to a backend on another node).
//! - Pod traffic that still needs NAT66 here (an untranslated packet to a Service address, or
//!   leaving the cluster unmasqueraded) is `ipv6_nat_unsupported`: `nat` translated whatever it
//!   could, so this is what it could not (SCTP).
//! - An ICMPv6 error about a translated packet quotes it as its sender sent it (the
//!   translation undone) and goes to that sender.
//! - Every transmitted frame gets its next hop's MACs here.

use crate::drop::DropReason;
use crate::packet::{Packet, Verdict};
use crate::pipeline::{Pipeline, RouteTarget, TraceEvent};
use crate::snapshot::Snapshot;
use crate::tables::node::OverlayMode;
use crate::tables::ports::PortKind;
use crate::tables::v6::Remote6;
use crate::wire::icmpv6;
use crate::wire::nat66::{self, Endpoints6};
use crate::wire::{EthernetFrame, Ipv6Packet, MacAddr};

use super::Ctx6;
use super::error::{MIN_MTU, make_error};

pub(super) fn route(
    p: &mut Pipeline,
    snap: &Snapshot,
    pkt: &mut Packet,
    ctx: &Ctx6,
    may_answer: bool,
) -> Result<Verdict, DropReason> {
    let Some(node) = snap.v6.node() else {
        return Err(DropReason::Ipv6Disabled);
    };
    let hop_limit = Ipv6Packet::new_unchecked(&pkt.data()[ctx.l3..]).hop_limit();
    if hop_limit <= 1 {
        let answer = (icmpv6::TIME_EXCEEDED, icmpv6::CODE_HOP_LIMIT, 0);
        return answer_error(
            p,
            snap,
            pkt,
            ctx,
            DropReason::HopLimitExceeded,
            answer,
            may_answer,
        );
    }
    Ipv6Packet::new_unchecked(&mut pkt.data_mut()[ctx.l3..]).set_hop_limit(hop_limit - 1);
    let from_outside =
        (ctx.from_peer.is_some() || ctx.in_kind == PortKind::Uplink) && !ctx.translated;
    let dst = ctx.dst;

    if let Some(pod) = snap.v6.pod(dst) {
        if let Some(answered) = fit(p, snap, pkt, ctx, snap.node.pod_mtu(), may_answer)? {
            return Ok(answered);
        }
        set_macs(pkt, snap.node.gateway_mac, pod.mac);
        if let Some(ip4) = pod.ip4 {
            p.trace(|| TraceEvent::Route(RouteTarget::Pod(ip4)));
        }
        return Ok(Verdict::Tx(pod.port));
    }
    if node.is_pod_network(dst) {
        if from_outside || node.pod_cidr.contains(dst) {
            return Err(DropReason::NoRoute);
        }
        let remote = snap.v6.lookup(dst).ok_or(DropReason::UnknownVtep)?;
        return to_remote(p, snap, pkt, ctx, remote, may_answer);
    }
    if node.is_own_address(dst) || node.is_gateway(dst) {
        let host = snap.ports.host().ok_or(DropReason::NoRoute)?;
        if pkt.meta.in_port == host {
            return Err(DropReason::Hairpin);
        }
        set_macs(pkt, snap.node.gateway_mac, snap.node.host_mac);
        p.trace(|| TraceEvent::Route(RouteTarget::Host));
        return Ok(Verdict::Tx(host));
    }
    if node.in_service_cidrs(dst) {
        return Err(DropReason::Ipv6NatUnsupported);
    }
    if from_outside {
        return Err(DropReason::NoRoute);
    }
    let from_pod_network = node.is_pod_network(ctx.src);
    // A pod's packet to another node's own address travels like pod traffic (IPv4: the same).
    if from_pod_network && let Some(remote) = snap.v6.peer_by_ip6(dst) {
        return to_remote(p, snap, pkt, ctx, remote, may_answer);
    }
    if from_pod_network && !node.masquerade_exempt.iter().any(|c| c.contains(dst)) {
        return Err(DropReason::Ipv6NatUnsupported);
    }
    let uplink = snap.ports.uplink().ok_or(DropReason::NoRoute)?;
    if let Some(answered) = fit(p, snap, pkt, ctx, snap.node.underlay_mtu, may_answer)? {
        return Ok(answered);
    }
    set_macs(pkt, snap.node.uplink_mac, snap.node.uplink_next_hop_mac);
    p.trace(|| TraceEvent::Route(RouteTarget::Uplink));
    Ok(Verdict::Tx(uplink))
}

/// Sends pod traffic to `remote` over the uplink: VXLAN (`stages::vxlan6` picks the
/// underlay family), or routed.
fn to_remote(
    p: &mut Pipeline,
    snap: &Snapshot,
    pkt: &mut Packet,
    ctx: &Ctx6,
    remote: &Remote6,
    may_answer: bool,
) -> Result<Verdict, DropReason> {
    if let Some(answered) = fit(p, snap, pkt, ctx, snap.node.pod_mtu(), may_answer)? {
        return Ok(answered);
    }
    let uplink = snap.ports.uplink().ok_or(DropReason::NoRoute)?;
    let vtep = snap
        .routes
        .peer_either(remote.node_ip, remote.node_ip6)
        .ok_or(DropReason::UnknownVtep)?;
    p.trace(|| TraceEvent::Route(RouteTarget::Node(remote.node_ip)));
    match snap.node.overlay {
        OverlayMode::Vxlan => {
            crate::stages::vxlan6::encap_to(snap, pkt, vtep, ctx.symmetric_hash(), true)?;
            p.trace(|| TraceEvent::Encapsulated { to: remote.node_ip });
        }
        OverlayMode::Routed => {
            let next_hop = if snap.v6.lookup(ctx.dst).is_some() {
                snap.node.uplink_next_hop_mac
            } else {
                vtep.underlay_mac
            };
            set_macs(pkt, snap.node.uplink_mac, next_hop);
        }
    }
    Ok(Verdict::Tx(uplink))
}

/// The packet must fit `mtu`; if not, packet too big (IPv6 routers never fragment). `Some`:
/// the packet was turned into that error and routed; its verdict.
fn fit(
    p: &mut Pipeline,
    snap: &Snapshot,
    pkt: &mut Packet,
    ctx: &Ctx6,
    mtu: u16,
    may_answer: bool,
) -> Result<Option<Verdict>, DropReason> {
    if pkt.len() - ctx.l3 <= usize::from(mtu) {
        return Ok(None);
    }
    let advertised = u32::from(mtu).max(MIN_MTU as u32);
    let answer = (icmpv6::PACKET_TOO_BIG, 0, advertised);
    answer_error(
        p,
        snap,
        pkt,
        ctx,
        DropReason::MtuExceeded,
        answer,
        may_answer,
    )
    .map(Some)
}

/// Drops the packet under `reason` and, where allowed, answers its source with an ICMPv6
/// error (type, code, value) from the pod gateway, routed like locally originated traffic.
fn answer_error(
    p: &mut Pipeline,
    snap: &Snapshot,
    pkt: &mut Packet,
    ctx: &Ctx6,
    reason: DropReason,
    error: (u8, u8, u32),
    may_answer: bool,
) -> Result<Verdict, DropReason> {
    let Some(from) = snap.v6.node().map(|n| n.gateway_ip) else {
        return Err(DropReason::Ipv6Disabled);
    };
    if !may_answer || ctx.icmp_error {
        return Err(reason);
    }
    p.drops.count(reason);
    // Quote the packet as its sender sent it, and answer that sender.
    let mut about = *ctx;
    if let Some(before) = ctx.before {
        let ends = Endpoints6 {
            src: before.src,
            dst: before.dst,
            sport: before.sport,
            dport: before.dport,
        };
        nat66::rewrite(
            &mut pkt.data_mut()[ctx.l3..],
            ctx.l4 - ctx.l3,
            ctx.proto,
            &ends,
        )
        .map_err(|_| DropReason::Malformed)?;
        (about.src, about.dst) = (before.src, before.dst);
    }
    // A sender outside the cluster hears from the node's own address.
    let from = match snap.v6.node() {
        Some(node) if !node.is_pod_network(about.src) => node.masquerade_address().unwrap_or(from),
        _ => from,
    };
    let answer = make_error(pkt, &about, error, from)?;
    p.stats.icmp_generated += 1;
    p.trace(|| TraceEvent::Generated("icmpv6 error"));
    route(p, snap, pkt, &answer, false)
}

fn set_macs(pkt: &mut Packet, src: MacAddr, dst: MacAddr) {
    let mut eth = EthernetFrame::new_unchecked(pkt.data_mut());
    eth.set_src_addr(src);
    eth.set_dst_addr(dst);
}
