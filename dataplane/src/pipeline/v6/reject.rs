//! REJECT in IPv6: a new flow to a Service frontend without endpoints, or to an unserved port
//! of a live ClusterIP, is answered with ICMPv6 destination unreachable, code port unreachable
//! (kube-proxy's `reject` in IPv6 answers TCP the same way), from the address the client used,
//! quoting the packet as received so the client's stack matches it to its socket.
//!
//! Invariants: counted in `PipelineStats::rejects` like IPv4's REJECT (and not rate-limited,
//! like it); never sent about an ICMPv6 error (those never start flows) nor to a multicast or
//! unspecified source (refused before); routed like locally originated traffic.

use crate::drop::DropReason;
use crate::packet::{Packet, Verdict};
use crate::pipeline::{Pipeline, TraceEvent};
use crate::snapshot::Snapshot;
use crate::wire::icmpv6;

use super::Ctx6;
use super::error::make_error;
use super::route::route;

pub(super) fn reject(
    p: &mut Pipeline,
    snap: &Snapshot,
    pkt: &mut Packet,
    ctx: &Ctx6,
) -> Result<Verdict, DropReason> {
    let unreachable = (icmpv6::DEST_UNREACHABLE, icmpv6::CODE_PORT_UNREACHABLE, 0);
    let answer = make_error(pkt, ctx, unreachable, ctx.dst)?;
    p.stats.rejects += 1;
    p.trace(|| TraceEvent::Rejected);
    route(p, snap, pkt, &answer, false)
}
