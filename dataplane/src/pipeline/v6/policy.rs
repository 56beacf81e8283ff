//! NetworkPolicy on the IPv6 path: a new flow is checked against the egress rules of its source
//! pod and the ingress rules of its destination pod, as the IPv4 path does (user-needs K1-K9);
//! the flow is then tracked so its replies and related ICMPv6 errors pass (K5), and re-checked
//! on its next packet after a policy change (the table's epoch).
//!
//! Invariants:
//! - A dual-stack pod is found in the policy table by its IPv4 address (`Pod6::ip4`): one
//!   entry isolates it in both families; only peers tell the families apart (IPv6 `ipBlock`s,
//!   the IPv6 addresses of selected pods).
//! - Checks use the pre-SNAT source and the post-DNAT destination and port (K6); node-local
//!   traffic (from the host port) is never refused by ingress rules (K7).
//! - ICMPv6 has no ports (rules with ports never match it, K13); SCTP, which the IPv6 flow
//!   table does not track, is checked packet by packet in both directions.
//! - A flow involving an isolated pod is tracked (`check_new` says so), whatever its NAT.

use std::net::Ipv6Addr;

use crate::drop::DropReason;
use crate::flow::L4Proto;
use crate::packet::Packet;
use crate::pipeline::Pipeline;
use crate::snapshot::Snapshot;
use crate::tables::conntrack6::{Hit6, Tuple6};
use crate::tables::policy::PolicyVerdict;
use crate::tables::ports::PortKind;
use crate::tables::v6::Pod6;
use crate::wire::icmpv6::PROTO_ICMPV6;
use crate::wire::ipv4;

use super::{Ctx6, PROTO_SCTP};

fn l4(proto: u8) -> L4Proto {
    match proto {
        ipv4::PROTO_TCP => L4Proto::Tcp,
        ipv4::PROTO_UDP => L4Proto::Udp,
        PROTO_SCTP => L4Proto::Sctp,
        // ICMPv6 (and anything else) has no ports.
        _ => L4Proto::Icmp,
    }
}

/// Whether either direction of `pod` is isolated; a pod without an IPv4 address has no policy
/// identity and counts as isolated whenever policies are in force (fail closed).
fn isolated(snap: &Snapshot, pod: &Pod6) -> bool {
    pod.ip4.is_none_or(|ip| {
        let (i, e) = snap.policy.is_isolated(ip);
        i || e
    })
}

fn egress_ok(snap: &Snapshot, pod: &Pod6, dst: Ipv6Addr, proto: u8, dport: u16) -> bool {
    let Some(key) = pod.ip4 else {
        return false;
    };
    !matches!(
        snap.policy.check_egress6(key, dst, l4(proto), dport),
        PolicyVerdict::Denied(_)
    )
}

fn ingress_ok(snap: &Snapshot, pod: &Pod6, src: Ipv6Addr, proto: u8, dport: u16) -> bool {
    let Some(key) = pod.ip4 else {
        return false;
    };
    !matches!(
        snap.policy.check_ingress6(key, src, l4(proto), dport),
        PolicyVerdict::Denied(_)
    )
}

/// Checks a new flow from `ctx.src` to `dst`:`dport` (post-DNAT). `Ok(true)`: a policy
/// isolates one of its pods, so the flow must be tracked for its replies.
pub(super) fn check_new(
    snap: &Snapshot,
    pkt: &Packet,
    ctx: &Ctx6,
    dst: Ipv6Addr,
    dport: u16,
) -> Result<bool, DropReason> {
    if snap.policy.is_empty() {
        return Ok(false);
    }
    let mut any_isolated = false;
    if ctx.in_kind == PortKind::Pod
        && let Some(pod) = snap.v6.pod_on(pkt.meta.in_port)
    {
        any_isolated |= isolated(snap, pod);
        if !egress_ok(snap, pod, dst, ctx.proto, dport) {
            return Err(DropReason::PolicyEgressDenied);
        }
    }
    if let Some(pod) = snap.v6.pod(dst) {
        any_isolated |= isolated(snap, pod);
        if ctx.in_kind != PortKind::Host && !ingress_ok(snap, pod, ctx.src, ctx.proto, dport) {
            return Err(DropReason::PolicyIngressDenied);
        }
    }
    Ok(any_isolated)
}

/// Whether an untracked packet (an ICMPv6 error of no flow) concerns an isolated pod: its
/// sender for egress or its destination for ingress.
pub(super) fn touches_isolated(snap: &Snapshot, pkt: &Packet, ctx: &Ctx6) -> bool {
    if snap.policy.is_empty() {
        return false;
    }
    let sender = (ctx.in_kind == PortKind::Pod)
        .then(|| snap.v6.pod_on(pkt.meta.in_port))
        .flatten();
    sender.is_some_and(|pod| isolated(snap, pod))
        || snap.v6.pod(ctx.dst).is_some_and(|pod| isolated(snap, pod))
}

/// Decides a tracked flow again after a policy change: its original source (pre-SNAT) against
/// its backend (post-DNAT). A refused flow is ended and its packet dropped.
pub(super) fn recheck(p: &mut Pipeline, snap: &Snapshot, hit: &Hit6) -> Result<(), DropReason> {
    let Some((original, reply)) = p.ct6.tuples(hit.flow) else {
        return Ok(());
    };
    if let Err(reason) = recheck_tuples(snap, &original, &reply) {
        p.ct6.remove(hit.flow);
        return Err(reason);
    }
    p.ct6.stamp_policy(hit.flow, snap.policy.epoch());
    Ok(())
}

fn recheck_tuples(snap: &Snapshot, original: &Tuple6, reply: &Tuple6) -> Result<(), DropReason> {
    let (src, dst, dport, proto) = (original.src, reply.src, reply.sport, original.proto);
    let dport = if proto == PROTO_ICMPV6 { 0 } else { dport };
    if let Some(pod) = snap.v6.pod(src)
        && !egress_ok(snap, pod, dst, proto, dport)
    {
        return Err(DropReason::PolicyEgressDenied);
    }
    let from_node = snap
        .v6
        .node()
        .is_some_and(|n| n.is_own_address(src) || n.is_gateway(src));
    if !from_node
        && let Some(pod) = snap.v6.pod(dst)
        && !ingress_ok(snap, pod, src, proto, dport)
    {
        return Err(DropReason::PolicyIngressDenied);
    }
    Ok(())
}
