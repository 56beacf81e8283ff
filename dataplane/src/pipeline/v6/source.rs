//! Where an IPv6 packet may come from: the uplink's L2 filter, pod anti-spoofing and the
//! uplink's source validation (BCP 38), mirroring `stages::classify` and `stages::uplink`.
//!
//! Invariants:
//! - Uplink L2: only frames to the uplink MAC, and solicited-node multicast (33:33:ff:..., for
//!   neighbour discovery of the node's addresses), are processed; the rest is `not_our_mac`.
//! - Pod ports: a pod sends only from its own IPv6 address and MAC (`spoofed_source`).
//!   Link-local sources and destinations are for neighbour discovery only: a packet that
//!   would be forwarded with one is `ipv6_link_local`, whatever port it came from.
//! - Uplink: an inner source in an IPv6 pod network is accepted from a VXLAN peer only if it
//!   lies in that peer's IPv6 pod CIDR; a peer's IPv6 node address only from that peer. Plain
//!   frames with a pod-network source are accepted only in routed mode, from the owner's
//!   underlay MAC or the next hop; this node's own pod CIDR and addresses never come from outside.

use crate::drop::DropReason;
use crate::packet::Packet;
use crate::snapshot::Snapshot;
use crate::tables::node::OverlayMode;
use crate::tables::ports::PortKind;
use crate::tables::routes::PeerAddr;
use crate::tables::v6::{Remote6, V6Node};
use crate::wire::EthernetFrame;

use super::{Ctx6, is_link_local};

/// The uplink's L2 filter for IPv6 frames.
#[inline]
pub(super) fn accept_destination(snap: &Snapshot, pkt: &Packet) -> Result<(), DropReason> {
    let dst = EthernetFrame::new_unchecked(pkt.data()).dst_addr();
    let solicited_node = dst.0[..3] == [0x33, 0x33, 0xff];
    if dst == snap.node.uplink_mac || solicited_node {
        Ok(())
    } else {
        Err(DropReason::NotOurMac)
    }
}

/// The source checks of a packet that is to be forwarded.
pub(super) fn check(
    snap: &Snapshot,
    pkt: &Packet,
    ctx: &Ctx6,
    node: &V6Node,
) -> Result<(), DropReason> {
    if is_link_local(ctx.src) || is_link_local(ctx.dst) {
        return Err(DropReason::Ipv6LinkLocal);
    }
    if ctx.src.is_unspecified() || ctx.src.is_loopback() {
        return Err(DropReason::SpoofedSource);
    }
    let ok = match ctx.in_kind {
        PortKind::Pod => {
            let mac = EthernetFrame::new_unchecked(pkt.data()).src_addr();
            snap.v6
                .pod_on(pkt.meta.in_port)
                .is_some_and(|pod| pod.ip == ctx.src && pod.mac == mac)
        }
        PortKind::Host => true,
        PortKind::Uplink => match ctx.from_peer {
            Some(peer) => inner_source_ok(snap, node, peer, ctx),
            None => plain_source_ok(snap, pkt, node, ctx),
        },
    };
    if ok {
        Ok(())
    } else {
        Err(DropReason::SpoofedSource)
    }
}

fn is_pod_address(snap: &Snapshot, node: &V6Node, ip: std::net::Ipv6Addr) -> bool {
    node.is_pod_network(ip) || snap.v6.lookup(ip).is_some()
}

fn inner_source_ok(snap: &Snapshot, node: &V6Node, peer: PeerAddr, ctx: &Ctx6) -> bool {
    let Some(owner) = snap.v6.peer_at(peer) else {
        return false;
    };
    if is_pod_address(snap, node, ctx.src) {
        return owner.pod_cidr.contains(ctx.src) && !node.pod_cidr.contains(ctx.src);
    }
    if node.is_own_address(ctx.src) {
        return false;
    }
    match snap.v6.peer_by_ip6(ctx.src) {
        Some(claimed) => std::ptr::eq(claimed, owner),
        None => true,
    }
}

fn plain_source_ok(snap: &Snapshot, pkt: &Packet, node: &V6Node, ctx: &Ctx6) -> bool {
    if node.is_own_address(ctx.src) || node.pod_cidr.contains(ctx.src) {
        return false;
    }
    let from_mac = EthernetFrame::new_unchecked(pkt.data()).src_addr();
    if is_pod_address(snap, node, ctx.src) {
        return snap.node.overlay == OverlayMode::Routed
            && snap
                .v6
                .lookup(ctx.src)
                .is_some_and(|owner| sent_by(snap, owner, from_mac));
    }
    match snap.v6.peer_by_ip6(ctx.src) {
        Some(owner) => sent_by(snap, owner, from_mac),
        None => true,
    }
}

/// The peer's own underlay MAC or the underlay router.
fn sent_by(snap: &Snapshot, owner: &Remote6, from_mac: crate::wire::MacAddr) -> bool {
    from_mac == snap.node.uplink_next_hop_mac
        || snap
            .routes
            .peer_either(owner.node_ip, owner.node_ip6)
            .is_some_and(|r| r.underlay_mac == from_mac)
}
