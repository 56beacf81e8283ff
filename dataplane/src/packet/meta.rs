//! Per-packet metadata: where the packet came from and what the pipeline decided.
//!
//! Invariant: `Meta::default()` is the state of a freshly received packet; the I/O backend
//! sets `in_port` (and `csum_partial` when the device says the L4 checksum is unfinished, and
//! `offload` when the device hands over a virtio-net header).

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

/// Segmentation and checksum offload state of a packet, in the virtio-net header's terms
/// (see `offload::vnet`). All zero: a plain frame with complete checksums.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offload {
    /// `gso_type` as the device gave it (0: not a super-packet; 1: TCPv4; see `offload::vnet`).
    pub gso_type: u8,
    /// Payload bytes per segment (the MSS) of a super-packet; routing lowers it to fit the path.
    pub gso_size: u16,
    /// The device's `hdr_len` (checked to lie within the frame; not trusted for parsing).
    pub hdr_len: u16,
    /// Offset of the L4 header in the frame where the L4 checksum starts (with `csum_partial`).
    pub csum_start: u16,
    /// Offset of the checksum field from `csum_start`.
    pub csum_offset: u16,
    /// Bytes of outer headers (VXLAN) prepended in front of the super-packet's own frame.
    pub encap_len: u8,
}

impl Offload {
    /// Whether the packet is a GSO super-packet (to be segmented or passed on whole).
    #[inline]
    pub fn is_gso(&self) -> bool {
        self.gso_type != 0
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Meta {
    pub in_port: PortId,
    /// The L4 checksum field holds only the pseudo-header sum (veth/TAP CHECKSUM_PARTIAL);
    /// the pipeline completes it before any rewrite, except on a GSO super-packet, where it
    /// stays partial and NAT adjusts the pseudo-header sum.
    pub csum_partial: bool,
    pub offload: Offload,
    pub verdict: Verdict,
}
