//! IPv6 Service load-balancing for a new flow, with kube-proxy's rules as the IPv4 path applies
//! them (`stages::service_rules`): which frontend the packet reaches, which backends it may
//! take, whether the flow is masqueraded, and what an unserved Service address gets.
//!
//! Invariants:
//! - Sources: a pod is whatever came from a pod port or the overlay, or carries a cluster-range
//!   source; the node is the host port; the rest is outside the cluster.
//! - ClusterIP flows are masqueraded unless they come from a pod. NodePort and external
//!   (LoadBalancer IP, externalIP) flows are masqueraded always under externalTrafficPolicy
//!   Cluster; under Local only from the node itself, and outside sources reach only this node's
//!   backends (none: `no_local_endpoint`). A pod flow from the overlay that leaves the node again
//!   (`bounces_off_node`) and a hairpin (the backend is the client) are masqueraded too.
//! - `loadBalancerSourceRanges` filter every source (`lb_source_range`).
//! - A frontend without backends, and an unserved port of a live ClusterIP, are rejected
//!   (ICMPv6 port unreachable, `reject`); an address of the Service range that no ClusterIP
//!   holds is dropped (`service_unallocated`).
//! - The backend is picked by the packet's symmetric hash (the same flow, the same backend).

use std::net::Ipv6Addr;

use crate::drop::DropReason;
use crate::snapshot::Snapshot;
use crate::tables::ports::PortKind;
use crate::tables::v6::{Frontend6, Kind6, V6Node};

use super::Ctx6;

/// Who sent a packet, as kube-proxy tells sources apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Source6 {
    Pod,
    Node,
    Outside,
}

/// What load-balancing decided for a new flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Balance6 {
    /// Not a Service address: no DNAT.
    NotService,
    /// DNAT to this backend; masquerade the flow when `masquerade`.
    Backend {
        ip: Ipv6Addr,
        port: u16,
        masquerade: bool,
    },
    /// Answer with ICMPv6 port unreachable.
    Reject,
}

pub(super) fn source_kind(ctx: &Ctx6, node: &V6Node) -> Source6 {
    match ctx.in_kind {
        PortKind::Pod => Source6::Pod,
        PortKind::Host => Source6::Node,
        PortKind::Uplink if ctx.from_peer.is_some() || node.cluster_cidr.contains(ctx.src) => {
            Source6::Pod
        }
        PortKind::Uplink => Source6::Outside,
    }
}

pub(super) fn balance(snap: &Snapshot, ctx: &Ctx6, node: &V6Node) -> Result<Balance6, DropReason> {
    // Pod-to-pod traffic (neither a Service range nor a frontend address) skips the lookup.
    let in_service_range = node.in_service_cidrs(ctx.dst);
    if !in_service_range && !snap.v6.is_external_address(ctx.dst) {
        return Ok(Balance6::NotService);
    }
    let Some(f) = snap.v6.frontend(ctx.dst, ctx.dport, ctx.proto) else {
        if snap.v6.is_vip(ctx.dst) {
            // kube-proxy: "Reject traffic to invalid ports of ClusterIPs".
            return Ok(Balance6::Reject);
        }
        if in_service_range {
            return Err(DropReason::ServiceUnallocated);
        }
        return Ok(Balance6::NotService);
    };
    if !f.admits(ctx.src) {
        return Err(DropReason::LbSourceRange);
    }
    let source = source_kind(ctx, node);
    let local_only = f.kind != Kind6::ClusterIp && f.external_local && source == Source6::Outside;
    let pool = if local_only { &f.local } else { &f.backends };
    if pool.is_empty() {
        return if f.backends.is_empty() {
            Ok(Balance6::Reject)
        } else {
            Err(DropReason::NoLocalEndpoint)
        };
    }
    let pick = (ctx.symmetric_hash() % pool.len() as u64) as usize;
    let &(ip, port) = pool.get(pick).ok_or(DropReason::NoRoute)?;
    let masquerade =
        masquerade(f, source) || ip == ctx.src || bounces_off_node(snap, ctx, node, ip);
    Ok(Balance6::Backend {
        ip,
        port,
        masquerade,
    })
}

fn masquerade(f: &Frontend6, source: Source6) -> bool {
    match f.kind {
        Kind6::ClusterIp => source != Source6::Pod,
        _ if !f.external_local => true,
        _ => source == Source6::Node,
    }
}

/// A pod flow from the overlay DNATed to a backend off this node again: without masquerade
/// the backend would answer its client directly, past this node's translation.
fn bounces_off_node(snap: &Snapshot, ctx: &Ctx6, node: &V6Node, backend: Ipv6Addr) -> bool {
    ctx.from_peer.is_some() && snap.v6.pod(backend).is_none() && !node.is_own_address(backend)
}
