//! The conntrack stage: established flows are translated from their entry; the first packet
//! of a flow goes through Service load-balancing, NetworkPolicy and SNAT, then is inserted.
//!
//! Invariants:
//! - Policy is decided on the first packet, on the post-DNAT destination and the pre-SNAT
//!   source (user-needs K6); replies and related ICMP follow the entry (K5); an ICMP error
//!   that relates to no entry is dropped (`icmp_filter`). After a policy change an
//!   established flow is decided again on its next packet (`policy_recheck`).
//! - A flow's backend is decided once: if two workers race on the first packets of one
//!   flow, the insert that loses adopts the winner's translation (A1).
//! - SNAT ports are claimed by inserting the reply tuple, which fails if it is taken, so two
//!   flows can never share one (A2).
//! - A TCP flow starts only with a SYN; any other segment without an entry is dropped as
//!   invalid rather than passed on un-translated (A9); SYN+FIN, SYN+RST and flagless segments
//!   are dropped as `tcp_invalid_flags`, new or tracked.
//! - Entries only for packets that leave (the kernel confirms on output): a first packet's flow
//!   is inserted without evicting anything before routing, and retracted if routing drops the
//!   packet; where the insert would have to evict, it waits for routing's verdict (`confirm`).
//!   The insert stays the race resolution and the SNAT collision check.
//! - A Service flow whose reply tuple is already taken (the same client port reaching the same
//!   backend through another Service) gets its source port remapped, as nf_nat does.
//! - An SCTP flow starts only with an INIT; other first packets are `ct_invalid`.
//! - RSTs are checked against their direction's sequence mark (`tables::conntrack::on_segment`).

use std::net::Ipv4Addr;

use crate::drop::DropReason;
use crate::flow::{FlowKey, L4Proto};
use crate::packet::{Packet, Verdict};
use crate::pipeline::{Pipeline, TraceEvent};
use crate::snapshot::Snapshot;
use crate::tables::conntrack::{
    Hit, InsertError, Inserted, Limited, NewFlow, SegmentSeq, Track, flags, is_bogus,
};
use crate::tables::policy::PolicyVerdict;
use crate::tables::ports::PortKind;
use crate::tables::services::{Frontend, SelectCtx, Selection, Service};
use crate::wire::{Ipv4Packet, TcpFlags, TcpPacket};

use super::Ctx;
use super::icmp_filter::track_error;
use super::policy_recheck;
use super::reject::reject;
use super::service_rules::{self, SourceKind};
use crate::offload::partial::rewrite;

/// How many random SNAT ports to try before giving up on a flow.
const SNAT_ATTEMPTS: usize = 16;
/// Seed of the Maglev flow hash: the same on every node, so ECMP-sprayed packets of one
/// flow pick the same backend everywhere (user-needs D11).
const MAGLEV_SEED: u64 = 0x6d61_676c_6576_0001;

/// Runs conntrack for the packet. `Ok(None)`: translated, go on to routing.
/// `Ok(Some(v))`: finished here (a reject answer).
pub fn track(
    p: &mut Pipeline,
    snap: &Snapshot,
    pkt: &mut Packet,
    ctx: &mut Ctx,
) -> Result<Option<Verdict>, DropReason> {
    if ctx.icmp_error {
        track_error(p, snap, pkt, ctx)?;
        return Ok(None);
    }
    if let Some(hit) = p.ct.lookup(&ctx.key, p.now) {
        if hit.policy_epoch != snap.policy.epoch() {
            policy_recheck::recheck(p, snap, &ctx.key, &hit)?;
        }
        let segment = match ctx.key.proto {
            L4Proto::Tcp => segment_seq(pkt, ctx),
            _ => None,
        };
        match p.ct.on_segment(&hit, ctx.tcp_flags, segment, p.now) {
            Track::Ok => {
                p.trace(|| TraceEvent::ConntrackHit {
                    dir: hit.dir,
                    xlate: hit.xlate,
                });
                rewrite(pkt, ctx.l3, ctx.l4, &ctx.key, &hit.xlate);
                ctx.translated = hit.xlate != ctx.key;
                return Ok(None);
            }
            Track::Invalid if ctx.key.proto == L4Proto::Tcp && is_bogus(ctx.tcp_flags) => {
                return Err(DropReason::TcpInvalidFlags);
            }
            Track::Invalid => return Err(DropReason::CtInvalid),
            Track::RstOutOfWindow => return Err(DropReason::TcpRstOutOfWindow),
            Track::Restart => {
                p.ct.remove(&hit);
            }
        }
    }
    if is_untracked(snap, ctx) {
        p.trace(|| TraceEvent::Untracked);
        return Ok(None);
    }
    new_flow(p, snap, pkt, ctx)
}

/// Traffic that needs neither NAT nor policy is not tracked (user-needs A13): the node's own
/// traffic to and from the underlay, bridged between the uplink and the host port.
fn is_untracked(snap: &Snapshot, ctx: &Ctx) -> bool {
    let node = &snap.node;
    let dst = ctx.key.dst;
    let cluster = |ip| node.cluster_cidr.contains(ip) || node.in_service_cidrs(ip);
    match ctx.in_kind {
        PortKind::Uplink => {
            ctx.from_peer.is_none()
                && node.is_own_address(dst)
                && !matches!(
                    snap.services.lookup(dst, ctx.key.dport, ctx.key.proto),
                    Frontend::Service { .. }
                )
        }
        PortKind::Host => {
            !cluster(dst)
                && snap.services.lookup(dst, ctx.key.dport, ctx.key.proto) == Frontend::NotService
        }
        PortKind::Pod => false,
    }
}

/// What the load-balancing step decided for a new flow.
struct Balanced {
    dnat: Option<(Ipv4Addr, u16)>,
    service: u32,
    backend: u32,
    /// kube-proxy masquerades the flow (`service_rules::masquerade`).
    masquerade: bool,
    /// The source is outside the cluster (kept in the entry's flags).
    external: bool,
}

fn new_flow(
    p: &mut Pipeline,
    snap: &Snapshot,
    pkt: &mut Packet,
    ctx: &mut Ctx,
) -> Result<Option<Verdict>, DropReason> {
    let key = ctx.key;
    if key.proto == L4Proto::Tcp {
        if is_bogus(ctx.tcp_flags) {
            return Err(DropReason::TcpInvalidFlags);
        }
        if !is_plain_syn(ctx.tcp_flags) {
            return Err(DropReason::CtInvalid);
        }
    }
    // An SCTP association starts only with an INIT (`tables::conntrack::sctp`).
    if key.proto == L4Proto::Sctp && ctx.tcp_flags != crate::wire::sctp::chunk::INIT {
        return Err(DropReason::CtInvalid);
    }
    let lb = match balance(p, snap, ctx)? {
        Ok(lb) => lb,
        Err(()) => {
            p.stats.rejects += 1;
            p.trace(|| TraceEvent::Rejected);
            return Ok(Some(reject(pkt, ctx)));
        }
    };
    let (dst, dport) = lb.dnat.unwrap_or((key.dst, key.dport));
    check_policy(p, snap, ctx, dst, dport)?;

    let node = &snap.node;
    let hairpin = lb.dnat.is_some() && dst == key.src;
    let masquerade = ctx.in_kind == PortKind::Pod
        && node.needs_masquerade(dst)
        && snap.routes.peer(dst).is_none();
    let snat = hairpin || masquerade || lb.masquerade;
    let mut fl = 0u8;
    if lb.dnat.is_some() {
        fl |= flags::DNAT;
    }
    if snat {
        fl |= flags::SNAT;
    }
    if hairpin {
        fl |= flags::HAIRPIN;
    }
    if ctx.in_kind == PortKind::Host {
        fl |= flags::FROM_HOST;
    }
    if lb.external {
        fl |= flags::EXTERNAL;
    }
    let mut flow = NewFlow {
        original: key,
        reply: FlowKey::new(key.proto, dst, dport, key.src, key.sport),
        service: lb.service,
        backend: lb.backend,
        flags: fl,
        tcp_flags: ctx.tcp_flags,
    };
    if key.proto == L4Proto::Icmp {
        flow.reply.sport = flow.reply.dport;
    }
    let placed = if snat {
        flow.reply.dst = service_rules::masquerade_address(snap, dst);
        place_with_random_port(p, snap, &mut flow)?
    } else {
        insert_or_remap(p, snap, &mut flow)?
    };
    let hit = match placed {
        Placed::Now(Inserted::Created(hit)) => {
            p.stats.new_flows += 1;
            p.trace(|| TraceEvent::ConntrackNew {
                original: flow.original,
                reply: flow.reply,
                raced: false,
            });
            p.pending = PendingFlow::Retract(hit);
            mark_first_segment(p, pkt, ctx, &hit);
            p.ct.stamp_policy(&hit, snap.policy.epoch());
            hit.xlate
        }
        Placed::Now(Inserted::Existing(hit)) => {
            p.stats.races_lost += 1;
            p.trace(|| TraceEvent::ConntrackNew {
                original: flow.original,
                reply: hit.xlate.reversed(),
                raced: true,
            });
            p.ct.stamp_policy(&hit, snap.policy.epoch());
            hit.xlate
        }
        Placed::AfterRouting => {
            let seq = match key.proto {
                L4Proto::Tcp => segment_seq(pkt, ctx),
                _ => None,
            };
            p.pending = PendingFlow::Insert(flow, seq, snap.policy.epoch());
            flow.reply.reversed()
        }
    };
    rewrite(pkt, ctx.l3, ctx.l4, &key, &hit);
    ctx.translated = hit != key;
    Ok(None)
}

/// A first packet's flow, between conntrack and routing's verdict (see the module doc).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) enum PendingFlow {
    #[default]
    None,
    /// Inserted by this packet: take it out again if the packet is dropped.
    Retract(Hit),
    /// Not inserted yet (that needs eviction): insert it if the packet leaves. With the first
    /// segment's sequence numbers (TCP), for its first mark, and the policy epoch it was
    /// allowed under.
    Insert(NewFlow, Option<SegmentSeq>, u8),
}

/// Where a first packet's flow stands after the conntrack stage.
enum Placed {
    Now(Inserted),
    /// Inserting it would evict: wait for routing's verdict.
    AfterRouting,
}

/// After routing: keeps a first packet's flow only if the packet leaves (module doc). Returns
/// the packet's final verdict.
pub fn confirm(p: &mut Pipeline, verdict: Verdict) -> Verdict {
    let leaves = !matches!(verdict, Verdict::Drop(_));
    match std::mem::take(&mut p.pending) {
        PendingFlow::None => verdict,
        PendingFlow::Retract(hit) => {
            if !leaves {
                p.ct.retract(&hit);
            }
            verdict
        }
        PendingFlow::Insert(..) if !leaves => verdict,
        PendingFlow::Insert(flow, seq, policy_epoch) => match p.ct.insert(&flow, p.now) {
            Ok(Inserted::Created(hit)) => {
                p.ct.stamp_policy(&hit, policy_epoch);
                if seq.is_some() {
                    p.ct.on_segment(&hit, flow.tcp_flags, seq, p.now);
                }
                p.stats.new_flows += 1;
                p.trace(|| TraceEvent::ConntrackNew {
                    original: flow.original,
                    reply: flow.reply,
                    raced: false,
                });
                verdict
            }
            // Another worker inserted the same translation meanwhile: the packet fits it.
            Ok(Inserted::Existing(hit)) if hit.xlate == flow.reply.reversed() => {
                p.stats.races_lost += 1;
                verdict
            }
            // A race lost to another translation, already applied and routed: rare (it needs a
            // full table and two workers on one new flow), the sender retransmits.
            Ok(Inserted::Existing(_)) | Err(InsertError::ReplyTaken) => {
                Verdict::Drop(DropReason::CtInvalid)
            }
            Err(e) => Verdict::Drop(insert_drop(e)),
        },
    }
}

fn insert_drop(e: InsertError) -> DropReason {
    match e {
        InsertError::ReplyTaken => DropReason::CtInvalid,
        InsertError::Full => DropReason::CtTableFull,
        InsertError::Limited(Limited::Source) => DropReason::CtSourceLimit,
        InsertError::Limited(Limited::Destination) => DropReason::CtDestinationLimit,
    }
}

/// Inserts `flow` if that evicts nothing; `Ok(None)`: it needs room, insert after routing.
fn try_place(p: &Pipeline, flow: &NewFlow) -> Result<Option<Inserted>, InsertError> {
    match p.ct.insert_without_eviction(flow, p.now) {
        Ok(ins) => Ok(Some(ins)),
        Err(InsertError::Full) => Ok(None),
        Err(e) => Err(e),
    }
}

fn placed(found: Option<Inserted>) -> Placed {
    found.map_or(Placed::AfterRouting, Placed::Now)
}

/// Inserts a flow that keeps its source. A Service flow whose reply tuple clashes with a live
/// flow (the client reused its port toward the same backend through another frontend) gets
/// its source port remapped to a free one, as the kernel's nf_nat does, instead of a drop.
fn insert_or_remap(
    p: &mut Pipeline,
    snap: &Snapshot,
    flow: &mut NewFlow,
) -> Result<Placed, DropReason> {
    match try_place(p, flow) {
        Ok(found) => return Ok(placed(found)),
        Err(InsertError::ReplyTaken) if flow.flags & flags::DNAT != 0 => {}
        Err(e) => return Err(insert_drop(e)),
    }
    flow.flags |= flags::SNAT;
    place_with_random_port(p, snap, flow)
}

/// Gives a new TCP flow its first sequence mark from its SYN, so that an RST is judged
/// against the sequence space from the start (the SYN's sender is the one it names).
fn mark_first_segment(p: &Pipeline, pkt: &Packet, ctx: &Ctx, hit: &Hit) {
    if ctx.key.proto == L4Proto::Tcp {
        p.ct.on_segment(hit, ctx.tcp_flags, segment_seq(pkt, ctx), p.now);
    }
}

/// The sequence number and length of a TCP segment (for the RST checks of conntrack).
fn segment_seq(pkt: &Packet, ctx: &Ctx) -> Option<SegmentSeq> {
    let data = pkt.data();
    let ip = Ipv4Packet::new_checked(data.get(ctx.l3..)?).ok()?;
    let tcp = TcpPacket::new_checked(data.get(ctx.l4..)?).ok()?;
    let headers = ip.header_len() + tcp.header_len();
    let payload = usize::from(ip.total_len()).saturating_sub(headers);
    let flags = tcp.flags();
    let controls =
        u32::from(flags.contains(TcpFlags::SYN)) + u32::from(flags.contains(TcpFlags::FIN));
    Some(SegmentSeq {
        seq: tcp.seq_number(),
        len: u32::try_from(payload)
            .unwrap_or(u32::MAX)
            .saturating_add(controls),
    })
}

fn is_plain_syn(tcp_flags: u8) -> bool {
    let f = TcpFlags(tcp_flags);
    f.contains(TcpFlags::SYN) && !f.contains(TcpFlags::ACK) && !f.contains(TcpFlags::RST)
}

/// Service load-balancing for a first packet. `Ok(Err(()))` means "reject the connection".
fn balance(
    p: &mut Pipeline,
    snap: &Snapshot,
    ctx: &Ctx,
) -> Result<Result<Balanced, ()>, DropReason> {
    let key = ctx.key;
    let none = Balanced {
        dnat: None,
        service: 0,
        backend: 0,
        masquerade: false,
        external: false,
    };
    let (id, kind) = match snap.services.lookup(key.dst, key.dport, key.proto) {
        Frontend::NotService if service_rules::unallocated_service_address(snap, key.dst) => {
            return Err(DropReason::ServiceUnallocated);
        }
        Frontend::NotService => return Ok(Ok(none)),
        // kube-proxy: "Reject traffic to invalid ports of ClusterIPs".
        Frontend::VipOtherPort => return Ok(Err(())),
        Frontend::Service { id, kind } => (id, kind),
    };
    let svc = snap.services.service(id).ok_or(DropReason::NoRoute)?;
    let source = service_rules::source_kind(snap, ctx);
    let from_cluster = source.in_cluster();
    if !service_rules::source_admitted(svc, kind, key.src, key.dst, snap.node.node_ip) {
        return Err(DropReason::LbSourceRange);
    }
    let sel = SelectCtx {
        kind,
        from_cluster,
        flow_hash: key.hash_seeded(MAGLEV_SEED),
        random: p.rng.next_u64(),
    };
    let pinned = affinity_backend(p, svc, &sel, id, key.src);
    let index = match pinned {
        Some(i) => i,
        None => match svc.select(&sel) {
            Selection::Backend(i) => i,
            Selection::Reject => return Ok(Err(())),
            Selection::Drop => return Err(DropReason::NoLocalEndpoint),
        },
    };
    let b = svc
        .backends()
        .get(index as usize)
        .ok_or(DropReason::NoRoute)?;
    if svc.affinity_timeout().is_some() {
        p.affinity.set(id, key.src, b.ip, b.port, p.now);
    }
    p.trace(|| TraceEvent::Service {
        id,
        kind,
        backend: (b.ip, b.port),
    });
    Ok(Ok(Balanced {
        dnat: Some((b.ip, b.port)),
        service: id,
        backend: index,
        masquerade: service_rules::masquerade(svc, kind, source)
            || service_rules::bounces_off_node(snap, ctx, b.ip),
        external: source == SourceKind::Outside,
    }))
}

/// The backend a ClientIP affinity entry pins, if it is still one `select` could pick
/// for this flow (usable, and local where a Local policy applies: user-needs E2, D9).
fn affinity_backend(
    p: &Pipeline,
    svc: &Service,
    sel: &SelectCtx,
    id: u32,
    client: Ipv4Addr,
) -> Option<u32> {
    let timeout = svc.affinity_timeout()?;
    let (ip, port) = p.affinity.get(id, client, timeout, p.now)?;
    svc.selectable(sel, ip, port)
}

fn check_policy(
    p: &mut Pipeline,
    snap: &Snapshot,
    ctx: &Ctx,
    dst: Ipv4Addr,
    dport: u16,
) -> Result<(), DropReason> {
    let flow = FlowKey {
        dst,
        dport,
        ..ctx.key
    };
    // Node-local traffic is always allowed, recognised by the port it came from (K7).
    let egress = ctx.in_kind == PortKind::Pod;
    let ingress = ctx.in_kind != PortKind::Host && snap.ports.pod(dst).is_some();
    check_sides(p, snap, &flow, egress, ingress).map_err(|side| match side {
        PolicySide::Egress => DropReason::PolicyEgressDenied,
        PolicySide::Ingress => DropReason::PolicyIngressDenied,
    })
}

/// The side of NetworkPolicy that refused a flow.
pub(super) enum PolicySide {
    Egress,
    Ingress,
}

/// Checks `flow` (pre-SNAT source, post-DNAT destination and port) against the egress policy
/// of its source pod (when `egress`), then the ingress policy of its destination pod (when
/// `ingress`), tracing each verdict; the first-packet path and the re-check share it.
pub(super) fn check_sides(
    p: &mut Pipeline,
    snap: &Snapshot,
    flow: &FlowKey,
    egress: bool,
    ingress: bool,
) -> Result<(), PolicySide> {
    if egress {
        let v = snap
            .policy
            .check_egress(flow.src, flow.dst, flow.proto, flow.dport);
        p.trace(|| TraceEvent::Policy {
            ingress: false,
            pod: flow.src,
            verdict: v,
        });
        if let PolicyVerdict::Denied(_) = v {
            return Err(PolicySide::Egress);
        }
    }
    if ingress {
        let v = snap
            .policy
            .check_ingress(flow.dst, flow.src, flow.proto, flow.dport);
        p.trace(|| TraceEvent::Policy {
            ingress: true,
            pod: flow.dst,
            verdict: v,
        });
        if let PolicyVerdict::Denied(_) = v {
            return Err(PolicySide::Ingress);
        }
    }
    Ok(())
}

/// Places `flow` with its reply port (the ICMP id too) drawn at random from the node's SNAT
/// range, retrying while the reply tuple is taken: the insert is the collision check.
fn place_with_random_port(
    p: &mut Pipeline,
    snap: &Snapshot,
    flow: &mut NewFlow,
) -> Result<Placed, DropReason> {
    for _ in 0..SNAT_ATTEMPTS {
        let port = p.snat_rng.port(snap.node.snat_ports);
        flow.reply.dport = port;
        if flow.original.proto == L4Proto::Icmp {
            flow.reply.sport = port;
        }
        match try_place(p, flow) {
            Ok(found) => {
                let ip = flow.reply.dst;
                p.trace(|| TraceEvent::Snat { ip, port });
                return Ok(placed(found));
            }
            Err(InsertError::ReplyTaken) => continue,
            Err(e) => return Err(insert_drop(e)),
        }
    }
    Err(DropReason::SnatPortsExhausted)
}
