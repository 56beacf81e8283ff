//! IPv6 conntrack and NAT66 on the IPv6 path: Service DNAT, masquerade to the node's IPv6
//! address, NetworkPolicy's first-packet check, REJECT, and ICMPv6 errors of tracked flows
//! (`related`). Runs after the source checks and checksum completion, before routing, so
//! routing sees the translated packet.
//!
//! - A packet of a tracked flow is rewritten to the tuple its direction's record gives (a
//!   DNATed flow's reply gets the Service address and port back as its source, a masqueraded
//!   flow's reply the pod's address and port as its destination).
//! - An untracked packet starts a flow: load-balancing (`services`), the policy check on the
//!   post-DNAT destination (`policy`), then masquerade where needed: pod traffic leaving the
//!   cluster (`V6Node::needs_masquerade`) and the Service flows kube-proxy masquerades. A flow is
//!   tracked only when it is translated or a policy isolates one of its pods; the rest passes
//!   untracked (the stateless path).
//! - Masquerade takes the node's IPv6 address (`V6Node::masquerade_address`; the pod gateway
//!   toward the node's own address) and a port drawn from the node's SNAT range by the worker's
//!   CSPRNG, retried while the reply tuple is taken, as IPv4 masquerade does
//!   (`snat_ports_exhausted` after `SNAT_ATTEMPTS`); ICMPv6 echo gets its identifier drawn the
//!   same way. A Service flow whose reply tuple is taken has its source port remapped likewise.
//! - A TCP FIN or RST marks its flow closing (short timeout); there is no TCP state machine or
//!   sequence check in IPv6 yet, and new TCP flows are not required to start with a SYN. SCTP
//!   is not tracked: it passes untranslated, and what would need NAT is `ipv6_nat_unsupported`.
//!
//! Invariants: per worker (`Pipeline::ct6`), no allocation; a packet whose flow cannot be tracked
//! is dropped by name (`ct_table_full`, `ct_invalid`, `snat_ports_exhausted`), never forwarded
//! untranslated.

use std::net::Ipv6Addr;

use crate::drop::DropReason;
use crate::packet::{Packet, Verdict};
use crate::pipeline::Pipeline;
use crate::snapshot::Snapshot;
use crate::tables::conntrack6::{Insert6Error, Tuple6};
use crate::tables::ports::PortKind;
use crate::tables::v6::V6Node;
use crate::wire::icmpv6::PROTO_ICMPV6;
use crate::wire::ipv4;
use crate::wire::nat66::{self, Endpoints6};

use super::services::{self, Balance6};
use super::{Ctx6, policy, reject, related};

/// Slots of the worker's IPv6 flow table each new flow sweeps for expired flows.
const SWEEP_PER_NEW_FLOW: usize = 4;
/// Slots swept before a full table refuses a new flow.
const SWEEP_WHEN_FULL: usize = 256;
/// Random SNAT ports tried before a flow is refused.
const SNAT_ATTEMPTS: usize = 16;

/// Tracks and translates the packet; updates `ctx` to the rewritten addresses and ports.
/// `Ok(Some(v))`: finished here (a REJECT answer).
pub(super) fn translate(
    p: &mut Pipeline,
    snap: &Snapshot,
    pkt: &mut Packet,
    ctx: &mut Ctx6,
    node: &V6Node,
) -> Result<Option<Verdict>, DropReason> {
    if ctx.icmp_error {
        related::translate(p, snap, pkt, ctx)?;
        return Ok(None);
    }
    if !matches!(ctx.proto, ipv4::PROTO_TCP | ipv4::PROTO_UDP | PROTO_ICMPV6) {
        untracked(snap, pkt, ctx, node)?;
        return Ok(None);
    }
    let tuple = Tuple6 {
        src: ctx.src,
        dst: ctx.dst,
        sport: ctx.sport,
        dport: ctx.dport,
        proto: ctx.proto,
    };
    if let Some(hit) = p.ct6.lookup(&tuple, p.now) {
        if hit.policy_epoch != snap.policy.epoch() {
            policy::recheck(p, snap, &hit)?;
        }
        if ctx.proto == ipv4::PROTO_TCP && fin_or_rst(pkt, ctx) {
            p.ct6.close(hit.flow);
        }
        apply(pkt, ctx, &tuple, &hit.rewrite_to)?;
        return Ok(None);
    }
    new_flow(p, snap, pkt, ctx, node, tuple)
}

fn new_flow(
    p: &mut Pipeline,
    snap: &Snapshot,
    pkt: &mut Packet,
    ctx: &mut Ctx6,
    node: &V6Node,
    tuple: Tuple6,
) -> Result<Option<Verdict>, DropReason> {
    let (dnat, service_masquerade) = match services::balance(snap, ctx, node)? {
        Balance6::NotService => (None, false),
        Balance6::Reject => return reject::reject(p, snap, pkt, ctx).map(Some),
        Balance6::Backend {
            ip,
            port,
            masquerade,
        } => (Some((ip, port)), masquerade),
    };
    let (dst, dport) = dnat.unwrap_or((ctx.dst, ctx.dport));
    let isolated = policy::check_new(snap, pkt, ctx, dst, dport)?;
    let leaves_cluster = ctx.in_kind == PortKind::Pod
        && node.needs_masquerade(dst)
        && snap.v6.peer_by_ip6(dst).is_none();
    if dnat.is_none() && !leaves_cluster && !isolated {
        return Ok(None);
    }
    let mut reply = Tuple6 {
        src: dst,
        dst: ctx.src,
        sport: dport,
        dport: ctx.sport,
        proto: ctx.proto,
    };
    if ctx.proto == PROTO_ICMPV6 {
        // Echo is keyed by its identifier as both ports.
        reply.sport = reply.dport;
    }
    let flow = if leaves_cluster || service_masquerade {
        reply.dst = masquerade_address(node, dst, leaves_cluster)?;
        insert_with_random_port(p, snap, tuple, &mut reply)?
    } else {
        match insert(p, tuple, reply) {
            Err(Insert6Error::ReplyTaken) if dnat.is_some() => {
                insert_with_random_port(p, snap, tuple, &mut reply)?
            }
            other => other.map_err(insert_drop)?,
        }
    };
    p.ct6.stamp_policy(flow, snap.policy.epoch());
    apply(pkt, ctx, &tuple, &reply.inverse())?;
    Ok(None)
}

/// What a packet that the IPv6 flow table does not track (SCTP) may do: nothing that needs NAT,
/// and only what policy allows, checked per packet.
fn untracked(snap: &Snapshot, pkt: &Packet, ctx: &Ctx6, node: &V6Node) -> Result<(), DropReason> {
    let needs_nat = node.in_service_cidrs(ctx.dst)
        || snap.v6.frontend(ctx.dst, ctx.dport, ctx.proto).is_some()
        || (ctx.in_kind == PortKind::Pod
            && node.needs_masquerade(ctx.dst)
            && snap.v6.peer_by_ip6(ctx.dst).is_none());
    if needs_nat {
        return Err(DropReason::Ipv6NatUnsupported);
    }
    policy::check_new(snap, pkt, ctx, ctx.dst, ctx.dport).map(|_| ())
}

/// The source a masqueraded flow toward `dst` takes: the node's IPv6 address, or the pod
/// gateway toward the node itself (its kernel drops packets from its own address) and, for
/// flows that stay inside the cluster, on a node without an IPv6 address.
fn masquerade_address(
    node: &V6Node,
    dst: Ipv6Addr,
    leaves_cluster: bool,
) -> Result<Ipv6Addr, DropReason> {
    if node.is_own_address(dst) {
        return Ok(node.gateway_ip);
    }
    match node.masquerade_address() {
        Some(ip) => Ok(ip),
        None if leaves_cluster => Err(DropReason::Ipv6NoNodeAddress),
        None => Ok(node.gateway_ip),
    }
}

/// Tracks the flow with its reply port (the echo identifier too) drawn from the node's SNAT
/// range, retrying while the reply tuple is taken: the insert is the collision check.
fn insert_with_random_port(
    p: &mut Pipeline,
    snap: &Snapshot,
    original: Tuple6,
    reply: &mut Tuple6,
) -> Result<u32, DropReason> {
    for _ in 0..SNAT_ATTEMPTS {
        let port = p.snat_rng.port(snap.node.snat_ports);
        reply.dport = port;
        if reply.proto == PROTO_ICMPV6 {
            reply.sport = port;
        }
        match insert(p, original, *reply) {
            Ok(flow) => return Ok(flow),
            Err(Insert6Error::ReplyTaken) => continue,
            Err(e) => return Err(insert_drop(e)),
        }
    }
    Err(DropReason::SnatPortsExhausted)
}

/// Inserts a flow; each new flow sweeps a few slots, a full table sweeps more before giving up.
fn insert(p: &mut Pipeline, original: Tuple6, reply: Tuple6) -> Result<u32, Insert6Error> {
    let now = p.now;
    p.ct6.sweep(now, SWEEP_PER_NEW_FLOW);
    let mut inserted = p.ct6.insert(original, reply, now);
    if inserted == Err(Insert6Error::Full) && p.ct6.sweep(now, SWEEP_WHEN_FULL) > 0 {
        inserted = p.ct6.insert(original, reply, now);
    }
    inserted
}

fn insert_drop(e: Insert6Error) -> DropReason {
    match e {
        Insert6Error::Full => DropReason::CtTableFull,
        _ => DropReason::CtInvalid,
    }
}

/// Rewrites the packet from `from` to `to` and records the new tuple in `ctx`.
fn apply(pkt: &mut Packet, ctx: &mut Ctx6, from: &Tuple6, to: &Tuple6) -> Result<(), DropReason> {
    if to == from {
        return Ok(());
    }
    let ends = Endpoints6 {
        src: to.src,
        dst: to.dst,
        sport: to.sport,
        dport: to.dport,
    };
    let l4 = ctx.l4 - ctx.l3;
    nat66::rewrite(&mut pkt.data_mut()[ctx.l3..], l4, ctx.proto, &ends)
        .map_err(|_| DropReason::Malformed)?;
    ctx.before = Some(*from);
    (ctx.src, ctx.dst, ctx.sport, ctx.dport) = (to.src, to.dst, to.sport, to.dport);
    ctx.translated = true;
    Ok(())
}

/// The TCP segment at `ctx.l4` carries FIN or RST.
fn fin_or_rst(pkt: &Packet, ctx: &Ctx6) -> bool {
    const FLAGS: usize = 13;
    const FIN: u8 = 0x01;
    const RST: u8 = 0x04;
    pkt.data()
        .get(ctx.l4 + FLAGS)
        .is_some_and(|f| f & (FIN | RST) != 0)
}
