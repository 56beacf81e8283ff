//! Which ICMP errors pass (the conntrack stage's path for errors): an error is forwarded only
//! as part of a flow it is about, like the kernel's RELATED, and never as a channel of its own.
//!
//! Invariants:
//! - An error passes only if its quoted packet belongs to a tracked flow (it is then
//!   reverse-translated to that flow's endpoint, `icmp::translate_error`), or to the node's own
//!   untracked traffic with the underlay (user-needs A13: the host's kernel matches those
//!   against its sockets, as it would without us). Everything else is `icmp_error_unmatched`.
//! - Flows exist only where policy allowed them, so a matched error follows its flow's
//!   verdict; an error about another pod's flow is no way past an egress-isolated pod's
//!   policy: a pod may only send errors about packets it received (quoted destination =
//!   its own address).
//! - Redirects never get here (classify drops them as `icmp_redirect`).

use std::net::Ipv4Addr;

use crate::drop::DropReason;
use crate::flow::FlowKey;
use crate::packet::Packet;
use crate::pipeline::{Pipeline, TraceEvent};
use crate::snapshot::Snapshot;
use crate::tables::ports::PortKind;

use super::Ctx;
use super::icmp::{quoted_key, translate_error};

/// Decides an ICMP error: `Ok` to route it on (translated when it matched a flow).
pub fn track_error(
    p: &mut Pipeline,
    snap: &Snapshot,
    pkt: &mut Packet,
    ctx: &mut Ctx,
) -> Result<(), DropReason> {
    let (quoted, _, _) = quoted_key(pkt.data(), ctx.l4)?;
    if ctx.in_kind == PortKind::Pod && quoted.dst != ctx.key.src {
        return Err(DropReason::IcmpErrorUnmatched);
    }
    let related = translate_error(&p.ct, pkt.data_mut(), ctx.l3, ctx.l4, p.now)?;
    ctx.translated = related;
    p.trace(|| TraceEvent::IcmpRelated { tracked: related });
    if related || about_host_traffic(snap, ctx, &quoted) {
        Ok(())
    } else {
        Err(DropReason::IcmpErrorUnmatched)
    }
}

/// The error and the packet it quotes are both traffic between the node's own stack and the
/// underlay, which is not tracked: an error from the underlay to the node IP about a packet
/// the node sent outside the cluster, or the node's error about a packet the underlay sent it.
fn about_host_traffic(snap: &Snapshot, ctx: &Ctx, quoted: &FlowKey) -> bool {
    let node = &snap.node;
    let outside = |ip: Ipv4Addr| {
        !node.cluster_cidr.contains(ip)
            && !node.in_service_cidrs(ip)
            && !snap.services.is_vip(ip)
            && snap.ports.pod(ip).is_none()
    };
    match ctx.in_kind {
        PortKind::Uplink => {
            ctx.from_peer.is_none()
                && ctx.key.dst == node.node_ip
                && quoted.src == node.node_ip
                && outside(quoted.dst)
        }
        PortKind::Host => {
            outside(ctx.key.dst) && quoted.dst == node.node_ip && quoted.src == ctx.key.dst
        }
        PortKind::Pod => false,
    }
}
