//! The uplink's edge checks: what the underlay may hand this node.
//!
//! - L2 filter: the uplink is opened promiscuous, so it sees every frame the segment floods.
//!   Only frames to the uplink MAC, and broadcast ARP, are processed; everything else
//!   (other unicast MACs, IPv4/IPv6 multicast, non-ARP broadcast) is `not_our_mac`. No
//!   multicast is needed: VXLAN peers are unicast (flannel's static FDB, no VXLAN groups).
//! - Source validation (BCP 38 toward the cluster): a packet whose source is a pod or a node
//!   of the cluster is accepted only from the node that owns that address; everything else
//!   with such a source is `spoofed_source`. Without this, a plain frame from the underlay
//!   with a pod source would count as in-cluster (no loadBalancerSourceRanges, trusted by
//!   ingress policy) and could ride a pod's masqueraded flow by its original tuple.
//!
//! Invariants (what "owns" means):
//! - VXLAN: the outer source is a known peer (checked by decap); the inner source must lie in
//!   that peer's podCIDR or be the peer's own node IP. Inner sources outside the cluster and
//!   the nodes are left alone (the peer's host may forward other traffic).
//! - Plain frames: a source in the cluster CIDR or any node's podCIDR is accepted only in
//!   routed mode, and only if it lies in a peer's podCIDR and the frame comes from that peer's
//!   underlay MAC or from the underlay next hop (the router that carries routed pod traffic);
//!   a peer's node IP is accepted from those same two MACs; this node's own addresses
//!   (node IP, its podCIDR) never arrive from outside. What the router forwards on behalf of
//!   others cannot be told apart at L2: routed mode relies on the underlay's own
//!   anti-spoofing for that, as every routed CNI does; VXLAN relies on the underlay not
//!   forging peer node IPs (flannel: the same).

use std::net::Ipv4Addr;

use crate::drop::DropReason;
use crate::packet::Packet;
use crate::snapshot::Snapshot;
use crate::tables::node::OverlayMode;
use crate::tables::routes::RemoteNode;
use crate::wire::{EthernetFrame, MacAddr, ethernet};

use super::Ctx;

/// The L2 filter: `Ok` for frames to the uplink MAC and for broadcast ARP.
#[inline]
pub fn accept_destination(snap: &Snapshot, pkt: &Packet, ethertype: u16) -> Result<(), DropReason> {
    let dst = EthernetFrame::new_unchecked(pkt.data()).dst_addr();
    if dst == snap.node.uplink_mac || (dst.is_broadcast() && ethertype == ethernet::ETHERTYPE_ARP) {
        Ok(())
    } else {
        Err(DropReason::NotOurMac)
    }
}

/// Source validation for an IPv4 packet that came in on the uplink (after decap, if VXLAN).
#[inline]
pub fn check_source(snap: &Snapshot, pkt: &Packet, ctx: &Ctx) -> Result<(), DropReason> {
    let src = ctx.key.src;
    let ok = match ctx.from_peer {
        Some(peer) => snap
            .routes
            .peer(peer)
            .is_some_and(|peer| inner_source_ok(snap, peer, src)),
        None => plain_source_ok(snap, pkt, src),
    };
    if ok {
        Ok(())
    } else {
        Err(DropReason::SpoofedSource)
    }
}

/// An address of some pod network: the cluster CIDR, this node's or a peer's podCIDR.
fn is_pod_address(snap: &Snapshot, ip: Ipv4Addr) -> bool {
    let node = &snap.node;
    node.cluster_cidr.contains(ip) || node.pod_cidr.contains(ip) || snap.routes.lookup(ip).is_some()
}

/// Whether an inner source from VXLAN peer `peer` (either outer family) is one it may send.
pub(crate) fn inner_source_ok(snap: &Snapshot, peer: &RemoteNode, src: Ipv4Addr) -> bool {
    if is_pod_address(snap, src) {
        return peer.pod_cidr.contains(src);
    }
    if src == snap.node.node_ip || snap.routes.peer(src).is_some() {
        return src == peer.node_ip && !src.is_unspecified();
    }
    true
}

fn plain_source_ok(snap: &Snapshot, pkt: &Packet, src: Ipv4Addr) -> bool {
    let node = &snap.node;
    if src == node.node_ip || node.pod_cidr.contains(src) {
        return false;
    }
    let from_mac = EthernetFrame::new_unchecked(pkt.data()).src_addr();
    if is_pod_address(snap, src) {
        return node.overlay == OverlayMode::Routed
            && snap
                .routes
                .lookup(src)
                .is_some_and(|owner| sent_by(snap, owner, from_mac));
    }
    match snap.routes.peer(src) {
        Some(owner) => sent_by(snap, owner, from_mac),
        None => true,
    }
}

/// The MACs a peer's traffic arrives from: the peer itself (same segment) or the router.
fn sent_by(snap: &Snapshot, owner: &RemoteNode, from_mac: MacAddr) -> bool {
    from_mac == owner.underlay_mac || from_mac == snap.node.uplink_next_hop_mac
}
