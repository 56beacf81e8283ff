//! The virtio-net header (`struct virtio_net_hdr_v1`, 12 bytes, little-endian on the hosts we
//! run on) that a TAP opened with IFF_VNET_HDR puts in front of every frame, and the checks
//! of what it claims against the frame it describes.
//!
//! Invariants:
//! - A header that lies is dropped with a named reason before any stage reads the frame
//!   (`check_frame`: unknown GSO type, gso_size 0, hdr_len or csum_start/offset past the
//!   frame: `vnet_header_invalid`) or right after the frame is parsed (`check_l4`: a GSO type
//!   the frame is not, or a checksum start that is not its L4 header: `gso_type_mismatch`).
//! - Only TCPv4 super-packets are accepted (TSO4). TCPv6 ones parse but IPv6 is not forwarded;
//!   UDP GSO (USO) is not enabled on the device, so a UDP super-packet is a lie.

use crate::drop::DropReason;
use crate::flow::L4Proto;
use crate::packet::{Meta, Offload, Packet};

/// Size of `struct virtio_net_hdr_v1`.
pub const HDR_LEN: usize = 12;
/// `flags`: the L4 checksum field holds only the pseudo-header sum.
pub const F_NEEDS_CSUM: u8 = 1;
/// `gso_type` values.
pub const GSO_NONE: u8 = 0;
pub const GSO_TCPV4: u8 = 1;
pub const GSO_UDP: u8 = 3;
pub const GSO_TCPV6: u8 = 4;
pub const GSO_UDP_L4: u8 = 5;
/// `gso_type` bit: the super-packet carries ECN (CWR on the first segment only).
pub const GSO_ECN: u8 = 0x80;
/// Offset of the checksum field in a TCP header.
pub const TCP_CSUM_OFFSET: u16 = 16;

/// A parsed header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHeader {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHeader {
    /// What every plain frame carries: checksums complete, no segmentation.
    pub const NONE: [u8; HDR_LEN] = [0; HDR_LEN];

    pub fn parse(b: &[u8; HDR_LEN]) -> Self {
        let word = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Self {
            flags: b[0],
            gso_type: b[1],
            hdr_len: word(2),
            gso_size: word(4),
            csum_start: word(6),
            csum_offset: word(8),
        }
    }

    pub fn to_bytes(self) -> [u8; HDR_LEN] {
        let mut b = [0u8; HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b
    }

    /// Writes what the header says into a received packet's metadata (unchecked: the
    /// pipeline checks it, `check_frame`).
    pub fn apply(self, meta: &mut Meta) {
        meta.csum_partial = self.flags & F_NEEDS_CSUM != 0;
        meta.offload = Offload {
            gso_type: self.gso_type,
            gso_size: self.gso_size,
            hdr_len: self.hdr_len,
            csum_start: self.csum_start,
            csum_offset: self.csum_offset,
            encap_len: 0,
        };
    }

    /// The header for a TCPv4 super-packet whose TCP header is at `l4` and `tcp_header_len`
    /// long, in segments of `gso_size` payload bytes, checksum field holding the seed.
    pub fn tcpv4(l4: u16, tcp_header_len: u16, gso_size: u16) -> Self {
        Self {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: l4 + tcp_header_len,
            gso_size,
            csum_start: l4,
            csum_offset: TCP_CSUM_OFFSET,
        }
    }
}

impl VnetHeader {
    /// The header to send `pkt` with: all zero for a plain frame (checksums complete), TCPv4
    /// GSO for a super-packet passed through whole.
    pub fn for_transmit(pkt: &Packet) -> Self {
        let o = &pkt.meta.offload;
        if !o.is_gso() {
            return Self::default();
        }
        let l4 = usize::from(o.csum_start);
        let tcp_header = pkt
            .data()
            .get(l4 + 12)
            .map_or(20, |offset| u16::from(offset >> 4) * 4);
        Self::tcpv4(o.csum_start, tcp_header, o.gso_size)
    }
}

/// Checks the device's claims against the frame's length, before the frame is parsed.
/// Only for packets that carry offload state (`meta.offload` not all zero).
pub fn check_frame(meta: &Meta, frame_len: usize) -> Result<(), DropReason> {
    let o = &meta.offload;
    let invalid = Err(DropReason::VnetHeaderInvalid);
    match o.gso_type & !GSO_ECN {
        GSO_NONE => {}
        GSO_TCPV4 | GSO_TCPV6 | GSO_UDP | GSO_UDP_L4 => {
            if o.gso_size == 0 || !meta.csum_partial {
                return invalid;
            }
        }
        _ => return invalid,
    }
    if usize::from(o.hdr_len) > frame_len {
        return invalid;
    }
    if meta.csum_partial
        && (o.csum_start != 0 || o.csum_offset != 0)
        && usize::from(o.csum_start) + usize::from(o.csum_offset) + 2 > frame_len
    {
        return invalid;
    }
    Ok(())
}

/// Checks, once the frame is parsed as IPv4 with its L4 header at `l4`, that a GSO type is
/// TCPv4 on a TCP segment that is not a fragment, and that a device-given checksum start is
/// the L4 header with the protocol's checksum offset.
pub fn check_l4(meta: &Meta, l4: usize, proto: L4Proto, fragment: bool) -> Result<(), DropReason> {
    let o = &meta.offload;
    let mismatch = Err(DropReason::GsoTypeMismatch);
    if o.is_gso() && (o.gso_type & !GSO_ECN != GSO_TCPV4 || proto != L4Proto::Tcp || fragment) {
        return mismatch;
    }
    if meta.csum_partial && (o.csum_start != 0 || o.csum_offset != 0) {
        let offset = match proto {
            L4Proto::Tcp => TCP_CSUM_OFFSET,
            L4Proto::Udp => 6,
            L4Proto::Icmp => 2,
            L4Proto::Sctp => 8,
        };
        if usize::from(o.csum_start) != l4 || o.csum_offset != offset {
            return mismatch;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
