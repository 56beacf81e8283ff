//! Per-packet metadata: where the packet came from and what the pipeline decided.
//!
//! Invariant: `Meta::default()` is the state of a freshly received packet; the I/O backend
//! sets `in_port` (and `csum_partial` when the device says the L4 checksum is unfinished).

use crate::drop::DropReason;

/// Index of a port in the node's port table (uplink, host, pods).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PortId(pub u16);

/// The pipeline's decision for one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Verdict {
    /// Not decided yet.
    #[default]
    Pending,
    /// Transmit on this port.
    Tx(PortId),
    /// Discard, counted under this reason.
    Drop(DropReason),
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Meta {
    pub in_port: PortId,
    /// The L4 checksum field holds only the pseudo-header sum (veth/TAP CHECKSUM_PARTIAL);
    /// the pipeline completes it before any rewrite.
    pub csum_partial: bool,
    pub verdict: Verdict,
}
