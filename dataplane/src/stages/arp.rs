//! ARP responder: answers requests for the addresses this node owns on each port, in place.
//!
//! - pod ports: every address but the pod's own (proxy ARP: a pod with a connected pod-CIDR
//!   route still sends everything to the gateway MAC, so all its traffic is routed here);
//! - uplink: the node IP (the underlay reaches VXLAN, NodePorts and the host through it);
//! - host port: every address (proxy ARP: the host routes cluster traffic through us).
//!
//! Invariant: a reply is built in the request's own buffer and sent back out the port it came
//! in on; nothing else is ever answered, and LoadBalancer IPs are never announced.

use crate::drop::DropReason;
use crate::packet::{Packet, Verdict};
use crate::snapshot::Snapshot;
use crate::tables::ports::PortKind;
use crate::wire::{ArpPacket, ArpRepr, EthernetFrame, EthernetRepr, MacAddr, arp, ethernet};

pub fn handle(snap: &Snapshot, pkt: &mut Packet, in_kind: PortKind, l3: usize) -> Verdict {
    let repr = match ArpPacket::new_checked(&pkt.data()[l3..]).map(|a| ArpRepr::parse(&a)) {
        Ok(r) => r,
        Err(_) => return Verdict::Drop(DropReason::Malformed),
    };
    if repr.op != arp::ARP_REQUEST {
        return Verdict::Drop(DropReason::NotForUs);
    }
    let node = &snap.node;
    let answer: Option<MacAddr> = match in_kind {
        PortKind::Pod if repr.target_ip != repr.sender_ip => Some(node.gateway_mac),
        PortKind::Uplink if node.is_own_address(repr.target_ip) => Some(node.uplink_mac),
        PortKind::Host if !node.is_own_address(repr.target_ip) => Some(node.gateway_mac),
        _ => None,
    };
    let Some(our_mac) = answer else {
        return Verdict::Drop(DropReason::NotForUs);
    };
    let reply = ArpRepr {
        op: arp::ARP_REPLY,
        sender_hw: our_mac,
        sender_ip: repr.target_ip,
        target_hw: repr.sender_hw,
        target_ip: repr.sender_ip,
    };
    let eth = EthernetRepr {
        src: our_mac,
        dst: EthernetFrame::new_unchecked(pkt.data()).src_addr(),
        ethertype: ethernet::ETHERTYPE_ARP,
    };
    let total = ethernet::HEADER_LEN + arp::ARP_LEN;
    if !pkt.set_len(total.max(60)) {
        return Verdict::Drop(DropReason::Malformed);
    }
    let buf = pkt.data_mut();
    buf[total..].fill(0);
    if eth.emit(buf).is_err() {
        return Verdict::Drop(DropReason::Malformed);
    }
    if reply.emit(&mut buf[ethernet::HEADER_LEN..total]).is_err() {
        return Verdict::Drop(DropReason::Malformed);
    }
    Verdict::Tx(pkt.meta.in_port)
}
