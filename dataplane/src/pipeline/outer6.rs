//! IPv6 frames at the Ethernet dispatch: IPv6-outer VXLAN from the uplink is decapsulated
//! (`stages::vxlan6`) and its inner frame goes the way of its own family (IPv4:
//! classification, the uplink's source check against that peer, then conntrack and routing;
//! IPv6: the `v6` path as from that peer); every other IPv6 frame goes to `v6` as it is.
//!
//! Invariant: an inner IPv4 packet of IPv6-outer VXLAN gets the same checks as one of
//! IPv4-outer VXLAN (`stages::uplink`): its source must be the peer's pod or the peer itself.

use crate::drop::DropReason;
use crate::packet::Packet;
use crate::snapshot::Snapshot;
use crate::stages::{Ctx, classify, uplink, vxlan6};
use crate::tables::ports::PortKind;
use crate::tables::routes::PeerAddr;
use crate::wire::ethernet;

use super::{Front, Pipeline, TraceEvent, parse_ethernet, v6};

impl Pipeline {
    /// The IPv6 frame at `l3`: decapsulated if it is VXLAN for this node, else the IPv6 path.
    pub(super) fn front_ipv6(
        &mut self,
        snap: &Snapshot,
        pkt: &mut Packet,
        in_kind: PortKind,
        l3: usize,
        ctx: &mut Ctx,
    ) -> Result<Front, DropReason> {
        let peer = if in_kind == PortKind::Uplink {
            vxlan6::decap(snap, pkt, l3)?
        } else {
            None
        };
        let Some(peer) = peer else {
            return v6::front(self, snap, pkt, in_kind, l3, None).map(Front::Done);
        };
        let node_ip = peer.node_ip;
        self.trace(|| TraceEvent::Decapsulated { from: node_ip });
        let (inner_type, inner_l3) = parse_ethernet(pkt)?;
        match inner_type {
            ethernet::ETHERTYPE_IPV6 => {
                let from = peer.node_ip6.map(PeerAddr::V6);
                v6::front(self, snap, pkt, in_kind, inner_l3, from).map(Front::Done)
            }
            ethernet::ETHERTYPE_IPV4 => {
                classify::ipv4(snap, pkt, in_kind, inner_l3, ctx)?;
                ctx.from_peer = Some(node_ip);
                if !uplink::inner_source_ok(snap, peer, ctx.key.src) {
                    return Err(DropReason::SpoofedSource);
                }
                self.trace(|| TraceEvent::Parsed { key: ctx.key });
                Ok(Front::Ip)
            }
            _ => Err(DropReason::UnsupportedProtocol),
        }
    }
}
