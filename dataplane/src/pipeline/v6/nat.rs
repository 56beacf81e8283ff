//! IPv6 conntrack and Service DNAT (NAT66) on the IPv6 path: runs after the source checks and
//! checksum completion, before routing, so routing and policy see the translated packet.
//!
//! - A packet of a tracked flow is rewritten to the tuple its direction's record gives (the
//!   reply of a DNATed flow gets the ClusterIP and Service port back as its source).
//! - An untracked packet to an IPv6 Service frontend (ClusterIP, port, protocol) starts a flow:
//!   its backend is picked by the packet's symmetric hash, the flow is tracked with the reply tuple
//!   the backend will answer with, and the packet is rewritten to the backend.
//! - Everything else passes untouched and untracked (the stateless path decides); a Service
//!   address without a frontend is still dropped by routing as `ipv6_nat_unsupported`.
//!
//! - A TCP FIN or RST marks its flow closing (short timeout); there is no TCP state machine or
//!   sequence check in IPv6 yet, and new TCP flows are not required to start with a SYN.
//!
//! Invariants: per worker (`Pipeline::ct6`), no allocation; a packet whose flow cannot be tracked
//! is dropped by name (`ct_table_full`, `ct_invalid`), never forwarded untranslated.

use crate::drop::DropReason;
use crate::packet::Packet;
use crate::snapshot::Snapshot;
use crate::tables::conntrack6::{Insert6Error, Tuple6};
use crate::tables::v6::V6Node;
use crate::wire::icmpv6::PROTO_ICMPV6;
use crate::wire::ipv4;
use crate::wire::nat66::{self, Endpoints6};

use super::{Ctx6, Pipeline};

/// Slots of the worker's IPv6 flow table each new flow sweeps for expired flows.
const SWEEP_PER_NEW_FLOW: usize = 4;
/// Slots swept before a full table refuses a new flow.
const SWEEP_WHEN_FULL: usize = 256;

/// Tracks and translates the packet; updates `ctx` to the rewritten addresses and ports.
pub(super) fn translate(
    p: &mut Pipeline,
    snap: &Snapshot,
    pkt: &mut Packet,
    ctx: &mut Ctx6,
    node: &V6Node,
) -> Result<(), DropReason> {
    if ctx.icmp_error || !matches!(ctx.proto, ipv4::PROTO_TCP | ipv4::PROTO_UDP | PROTO_ICMPV6) {
        return Ok(());
    }
    let tuple = Tuple6 {
        src: ctx.src,
        dst: ctx.dst,
        sport: ctx.sport,
        dport: ctx.dport,
        proto: ctx.proto,
    };
    let now = p.now;
    let to = if let Some(hit) = p.ct6.lookup(&tuple, now) {
        if ctx.proto == ipv4::PROTO_TCP && fin_or_rst(pkt, ctx) {
            p.ct6.close(hit.flow);
        }
        hit.rewrite_to
    } else if node.in_service_cidrs(ctx.dst) {
        let Some(backends) = snap.v6.service(ctx.dst, ctx.dport, ctx.proto) else {
            return Ok(());
        };
        let pick = (ctx.symmetric_hash() % backends.len() as u64) as usize;
        let &(ip, port) = backends.get(pick).ok_or(DropReason::Ipv6NatUnsupported)?;
        let reply = Tuple6 {
            src: ip,
            dst: ctx.src,
            sport: port,
            dport: ctx.sport,
            proto: ctx.proto,
        };
        // Each new flow sweeps a few slots; a full table sweeps more before giving up.
        p.ct6.sweep(now, SWEEP_PER_NEW_FLOW);
        let mut inserted = p.ct6.insert(tuple, reply, now);
        if inserted == Err(Insert6Error::Full) && p.ct6.sweep(now, SWEEP_WHEN_FULL) > 0 {
            inserted = p.ct6.insert(tuple, reply, now);
        }
        inserted.map_err(|e| match e {
            Insert6Error::Full => DropReason::CtTableFull,
            _ => DropReason::CtInvalid,
        })?;
        reply.inverse()
    } else {
        return Ok(());
    };
    if to == tuple {
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
    (ctx.src, ctx.dst, ctx.sport, ctx.dport) = (to.src, to.dst, to.sport, to.dport);
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
