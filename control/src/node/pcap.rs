//! The classic pcap format (what tcpdump and tshark read): a global header, then one record
//! per frame. Microsecond timestamps, link type Ethernet, little-endian.
//!
//! Invariant: a record's captured and original lengths are the frame's length (frames are
//! never truncated here).

use super::observe::Frame;

/// The pcap global header: microsecond timestamps, Ethernet, 65535-byte snapshots.
pub fn pcap_header() -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    h[16..20].copy_from_slice(&65_535u32.to_le_bytes());
    h[20..24].copy_from_slice(&1u32.to_le_bytes());
    h
}

/// One pcap record: header and frame.
pub fn pcap_record(frame: &Frame, out: &mut Vec<u8>) {
    let len = u32::try_from(frame.data.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&(frame.at.as_secs() as u32).to_le_bytes());
    out.extend_from_slice(&frame.at.subsec_micros().to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&frame.data);
}
