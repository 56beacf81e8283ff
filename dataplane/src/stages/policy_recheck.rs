//! Re-evaluating NetworkPolicy for established flows (security review M5): a policy change
//! cuts the live flows it no longer allows, as Cilium does, instead of leaving them to run
//! until they time out.
//!
//! Each flow remembers the policy epoch it was last allowed under (`Conntrack::stamp_policy`).
//! On a conntrack hit the pipeline compares that with the snapshot's `PolicyTable::epoch`:
//! one compare per packet. When they differ the flow is checked again, lazily, once per flow
//! per policy build, with the inputs the first packet was decided on (user-needs K6): the
//! pre-SNAT source (the original tuple's), the post-DNAT destination and port (the reply
//! tuple's source), ingress unless the flow was started by the host (K7).
//!
//! Invariants:
//! - Allowed: the flow is stamped with the new epoch, so its next packets pay the compare only.
//! - Denied: the packet is dropped as `policy_revoked` and the flow is neither stamped nor
//!   refreshed, so every packet of it, either direction, is dropped while the deny lasts (a
//!   later policy that allows it again resumes it), and it times out as an idle flow would.

use crate::drop::DropReason;
use crate::flow::{Dir, FlowKey};
use crate::pipeline::Pipeline;
use crate::snapshot::Snapshot;
use crate::tables::conntrack::{Hit, flags};

use super::conntrack::check_sides;

/// Whether the flow of `hit` (seen from a packet carrying `key`) still passes policy; call
/// only when `hit.policy_epoch != snap.policy.epoch()`.
#[cold]
pub(super) fn recheck(
    p: &mut Pipeline,
    snap: &Snapshot,
    key: &FlowKey,
    hit: &Hit,
) -> Result<(), DropReason> {
    let (original, reply) = match hit.dir {
        Dir::Original => (*key, hit.xlate.reversed()),
        Dir::Reply => (hit.xlate.reversed(), *key),
    };
    let flow = FlowKey {
        dst: reply.src,
        dport: reply.sport,
        ..original
    };
    let from_host = hit.flags & flags::FROM_HOST != 0;
    let egress = !from_host && snap.ports.pod(flow.src).is_some();
    let ingress = !from_host && snap.ports.pod(flow.dst).is_some();
    check_sides(p, snap, &flow, egress, ingress).map_err(|_| DropReason::PolicyRevoked)?;
    p.ct.stamp_policy(hit, snap.policy.epoch());
    Ok(())
}
