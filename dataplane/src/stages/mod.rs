//! The per-packet stages of the pipeline. Each is a function over one packet that either
//! hands a parsed context to the next stage or ends the packet with a `Verdict`.
//!
//! Invariants:
//! - Stages read the snapshot and the flow tables; only the conntrack stage inserts.
//! - Offsets in `Ctx` always describe the packet's current bytes: a stage that moves the
//!   frame (decap, encap, reject) re-derives them.
//! - No stage allocates, locks, logs or reads a clock; `now` comes from the driver.

pub mod arp;
pub mod classify;
pub mod conntrack;
pub mod fragment;
pub mod icmp;
pub mod icmp_filter;
pub mod nat;
mod policy_recheck;
pub mod reject;
pub mod route;
pub mod service_rules;
pub mod uplink;
pub mod vxlan;
pub mod vxlan6;

use crate::flow::FlowKey;
use crate::tables::ports::PortKind;

/// What earlier stages learned about the packet, for later stages.
///
/// The layout is fixed (`repr(C)`, the flow key first, at an 8-byte-aligned offset): the batch
/// driver stores a `Ctx` with 16-byte moves and conntrack reads the key's addresses back as
/// one 8-byte word. A key at offset 20 (where the compiler put it once `frag` was added) made
/// that load straddle two halves of a 16-byte store, which the CPU cannot forward: a
/// store-forwarding stall on every conntrack lookup, -10% on `established_10k`
/// (bench/results/pipeline-2026-12-08-perf.md).
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct Ctx {
    /// The flow key as received (before any translation).
    pub key: FlowKey,
    /// Offset of the IPv4 header in the frame.
    pub l3: usize,
    /// Offset of the L4 header in the frame.
    pub l4: usize,
    /// The packet arrived VXLAN-encapsulated from this peer node (already decapsulated).
    pub from_peer: Option<std::net::Ipv4Addr>,
    /// Kind of the port the packet came in on.
    pub in_kind: PortKind,
    /// TCP flags of the segment; for SCTP the type of its first chunk (0 for other protocols).
    pub tcp_flags: u8,
    /// The packet is an ICMP error (its quoted packet is what conntrack matches).
    pub icmp_error: bool,
    /// Conntrack rewrote an address or port: this node proxies the flow, so it may forward
    /// it back out the port it came from (e.g. external client -> NodePort -> remote pod).
    pub translated: bool,
    /// Where the packet stands among the fragments of its datagram (`fragment`).
    pub frag: fragment::Frag,
}

impl Ctx {
    /// A placeholder for a context that classification has not written yet.
    pub const UNSET: Ctx = Ctx {
        key: FlowKey {
            src: std::net::Ipv4Addr::UNSPECIFIED,
            dst: std::net::Ipv4Addr::UNSPECIFIED,
            sport: 0,
            dport: 0,
            proto: crate::flow::L4Proto::Tcp,
        },
        l3: 0,
        l4: 0,
        from_peer: None,
        in_kind: PortKind::Pod,
        tcp_flags: 0,
        icmp_error: false,
        translated: false,
        frag: fragment::Frag::None,
    };
}
