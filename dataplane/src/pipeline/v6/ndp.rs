//! Neighbour discovery answered by the node, as `stages::arp` answers ARP: a neighbour
//! solicitation is turned into the advertisement in its own buffer and sent back out the port
//! it came in on.
//!
//! - pod ports: every target but the pod's own addresses and other link-local addresses (the
//!   pods' default route is via [`GATEWAY_LINK_LOCAL`] or the gateway address; a pod with an
//!   on-link pod-CIDR route still reaches everything through the gateway MAC);
//! - uplink: the node's own IPv6 addresses and its IPv6 underlay address (`node_ip6`, answered
//!   also on a node without IPv6 pods: the underlay alone may be IPv6);
//! - host port: every address that is not the node's own (proxy, as ARP on the host port).
//!
//! Invariants: only messages with hop limit 255 (RFC 4861) that did not come through the
//! overlay are considered (`ndp_bad_hop_limit`, `ndp_off_link`); their ICMPv6 checksum is
//! verified before anything is answered. Redirects are `icmp_redirect`; router solicitations,
//! router and neighbour advertisements are not answered (`not_for_us`): pods get a static
//! route from the CNI, and the node takes no advice from its neighbours. Duplicate address
//! detection (unspecified source) is never answered, so a pod's own address stays its own.

use crate::drop::DropReason;
use crate::packet::{Packet, Verdict};
use crate::pipeline::{Pipeline, TraceEvent};
use crate::snapshot::Snapshot;
use crate::tables::ports::PortKind;
use crate::tables::v6::GATEWAY_LINK_LOCAL;
use crate::wire::icmpv6::{self, Icmpv6Packet, PROTO_ICMPV6};
use crate::wire::ipv6::HEADER_LEN;
use crate::wire::{EthernetFrame, EthernetRepr, Ipv6Repr, MacAddr, ethernet};

use super::{Ctx6, is_link_local};

pub(super) fn handle(
    p: &mut Pipeline,
    snap: &Snapshot,
    pkt: &mut Packet,
    ctx: &Ctx6,
    hop_limit: u8,
) -> Result<Verdict, DropReason> {
    if ctx.from_peer.is_some() {
        return Err(DropReason::NdpOffLink);
    }
    if hop_limit != icmpv6::NDP_HOP_LIMIT {
        return Err(DropReason::NdpBadHopLimit);
    }
    let (msg_type, target, sender_mac) = {
        let i =
            Icmpv6Packet::new_checked(&pkt.data()[ctx.l4..]).map_err(|_| DropReason::Malformed)?;
        if !i.verify_checksum(ctx.src, ctx.dst) {
            return Err(DropReason::BadChecksum);
        }
        if i.code() != 0 {
            return Err(DropReason::Malformed);
        }
        (i.msg_type(), i.nd_target(), i.source_link_addr())
    };
    match msg_type {
        icmpv6::REDIRECT => return Err(DropReason::IcmpRedirect),
        icmpv6::NEIGHBOR_SOLICIT => {}
        _ => return Err(DropReason::NotForUs),
    }
    let target = target.ok_or(DropReason::Malformed)?;
    if target.is_multicast() {
        return Err(DropReason::Malformed);
    }
    if ctx.src.is_unspecified() {
        return Err(DropReason::NotForUs);
    }
    let frame_src = EthernetFrame::new_unchecked(pkt.data()).src_addr();
    // RFC 4861 7.1.1: a solicitation's source link-layer option is its sender's.
    if sender_mac.is_some_and(|m| m != frame_src) {
        return Err(DropReason::SpoofedSource);
    }
    let node = snap.v6.node();
    let answer: Option<MacAddr> = match (ctx.in_kind, node) {
        // The node's own addresses, its IPv6 underlay address (`vxlan6`) among them.
        (PortKind::Uplink, _) => (snap.node.node_ip6 == Some(target)
            || node.is_some_and(|n| n.is_own_address(target)))
        .then_some(snap.node.uplink_mac),
        (_, None) => return Err(DropReason::Ipv6Disabled),
        (PortKind::Pod, Some(_)) => {
            let pod = snap
                .v6
                .pod_on(pkt.meta.in_port)
                .ok_or(DropReason::SpoofedSource)?;
            if pod.mac != frame_src || !(ctx.src == pod.ip || is_link_local(ctx.src)) {
                return Err(DropReason::SpoofedSource);
            }
            let other_link_local = is_link_local(target) && target != GATEWAY_LINK_LOCAL;
            (target != pod.ip && !other_link_local).then_some(snap.node.gateway_mac)
        }
        (PortKind::Host, Some(node)) => (!node.is_own_address(target) && !is_link_local(target)
            || target == GATEWAY_LINK_LOCAL)
            .then_some(snap.node.gateway_mac),
    };
    let Some(our_mac) = answer else {
        return Err(DropReason::NotForUs);
    };
    let router = node.is_some_and(|n| n.is_gateway(target)) || ctx.in_kind == PortKind::Host;
    let flags = icmpv6::NA_FLAG_SOLICITED
        | icmpv6::NA_FLAG_OVERRIDE
        | if router { icmpv6::NA_FLAG_ROUTER } else { 0 };
    let l3 = ctx.l3;
    let l4 = l3 + HEADER_LEN;
    if !pkt.set_len(l4 + icmpv6::NA_LEN) {
        return Err(DropReason::Malformed);
    }
    let buf = pkt.data_mut();
    let eth = EthernetRepr {
        src: our_mac,
        dst: frame_src,
        ethertype: ethernet::ETHERTYPE_IPV6,
    };
    eth.emit(buf).map_err(|_| DropReason::Malformed)?;
    let ip = Ipv6Repr {
        src: target,
        dst: ctx.src,
        next_header: PROTO_ICMPV6,
        hop_limit: icmpv6::NDP_HOP_LIMIT,
        payload_len: icmpv6::NA_LEN as u16,
    };
    ip.emit(&mut buf[l3..]).map_err(|_| DropReason::Malformed)?;
    icmpv6::emit_neighbor_advert(&mut buf[l4..], target, our_mac, flags)
        .map_err(|_| DropReason::Malformed)?;
    Icmpv6Packet::new_unchecked(&mut buf[l4..]).fill_checksum(target, ctx.src);
    p.trace(|| TraceEvent::Generated("ndp neighbour advertisement"));
    Ok(Verdict::Tx(pkt.meta.in_port))
}
