//! kube-proxy's per-flow Service rules besides the backend choice: which sources count as
//! "local", which sources `loadBalancerSourceRanges` admits, whether a Service flow is
//! masqueraded and to which address, and what happens to an address of the Service CIDR that
//! no Service port serves. The full table these rules produce is `control/SEMANTICS.md`.
//!
//! Invariants (each is a rule of kube-proxy's nftables proxier, pkg/proxy/nftables/proxier.go):
//! - A source is a pod when it is in the cluster CIDR (kube-proxy's `detect-local-mode
//!   ClusterCIDR`), which includes every packet that came over the overlay; the node itself is
//!   whatever arrives on the host port; anything else, other nodes' own addresses included, is
//!   outside the cluster.
//! - ClusterIP traffic is masqueraded unless it comes from a pod, whatever the
//!   internalTrafficPolicy ("masquerade off-cluster traffic to a service VIP").
//! - NodePort, externalIP and LoadBalancer traffic is masqueraded always under
//!   externalTrafficPolicy Cluster; under Local only when it comes from the node itself (pods
//!   and the node short-circuit to all endpoints, outside sources keep their address); a pod
//!   flow from another node that is sent off this node again is masqueraded too
//!   (`bounces_off_node`).
//! - `loadBalancerSourceRanges` filter every source, pods and the node included; a source equal
//!   to the LB IP passes when a listed range holds the node's IP (a node reaching its own VIP).
//! - A packet to an address of the Service CIDR that no Service holds is dropped
//!   (`service_unallocated`); one to an unserved port of a live ClusterIP is rejected.
//! - The masquerade address is the node IP, except toward the node's own address (a hostNetwork
//!   endpoint on this node), where it is the pod gateway: the node's kernel drops a packet that
//!   arrives with one of its own addresses as source.

use std::net::Ipv4Addr;

use crate::snapshot::Snapshot;
use crate::tables::ports::PortKind;
use crate::tables::services::{FrontendKind, Service};

use super::Ctx;

/// Who sent a packet, as kube-proxy tells sources apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// A pod of the cluster (any node): the source is in the cluster CIDR.
    Pod,
    /// This node's own stack (host-network processes, hostNetwork pods).
    Node,
    /// Neither: external clients and other nodes' own addresses.
    Outside,
}

impl SourceKind {
    /// Pods and this node get Cluster semantics on external front ends (user-needs D3).
    pub fn in_cluster(self) -> bool {
        self != SourceKind::Outside
    }
}

pub fn source_kind(snap: &Snapshot, ctx: &Ctx) -> SourceKind {
    match ctx.in_kind {
        PortKind::Pod => SourceKind::Pod,
        PortKind::Host => SourceKind::Node,
        PortKind::Uplink
            if ctx.from_peer.is_some() || snap.node.cluster_cidr.contains(ctx.key.src) =>
        {
            SourceKind::Pod
        }
        PortKind::Uplink => SourceKind::Outside,
    }
}

/// Whether a new flow to `svc` through a front end of `kind` is masqueraded (hairpin aside).
pub fn masquerade(svc: &Service, kind: FrontendKind, source: SourceKind) -> bool {
    match kind {
        FrontendKind::ClusterIp => source != SourceKind::Pod,
        _ if !svc.external_local() => true,
        _ => source == SourceKind::Node,
    }
}

/// A pod's flow that came over the overlay and is DNATed to an endpoint off this node again
/// (a pod of node B reaching node A's NodePort under externalTrafficPolicy Local, sent back to
/// an endpoint on B): without masquerade the endpoint would answer its neighbour directly and
/// the reply would miss this node's translation. kube-proxy leaves this to the CNI (flannel
/// masquerades pod -> node traffic); ferroplane keeps pod sources, so it masquerades here.
pub fn bounces_off_node(snap: &Snapshot, ctx: &Ctx, backend: Ipv4Addr) -> bool {
    ctx.from_peer.is_some()
        && snap.ports.pod(backend).is_none()
        && !snap.node.is_own_address(backend)
}

/// Whether `loadBalancerSourceRanges` admit `src` reaching `dst` through a front end of `kind`.
pub fn source_admitted(
    svc: &Service,
    kind: FrontendKind,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    node_ip: Ipv4Addr,
) -> bool {
    svc.source_allowed(kind, src) || (src == dst && svc.source_allowed(kind, node_ip))
}

/// The address a masqueraded flow toward `dst` (after DNAT) takes as its source.
pub fn masquerade_address(snap: &Snapshot, dst: Ipv4Addr) -> Ipv4Addr {
    if snap.node.is_own_address(dst) {
        snap.node.gateway_ip
    } else {
        snap.node.node_ip
    }
}

/// An address of the Service CIDR that no front end holds (checked after the front-end lookup
/// found nothing).
pub fn unallocated_service_address(snap: &Snapshot, dst: Ipv4Addr) -> bool {
    snap.node.in_service_cidrs(dst) && !snap.services.is_vip(dst)
}
