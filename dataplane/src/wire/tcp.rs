//! TCP segments (RFC 9293) over IPv4. Options are covered by the header length, not interpreted.
//!
//! Invariants after `TcpPacket::new_checked`: the header (options included) is in the buffer, the
//! data offset is at least 5 and the buffer is at most 65535 bytes. TCP has no length field: the
//! segment is the whole buffer, so build the view over the IP payload (`Ipv4Packet::payload`),
//! never over a frame with padding.

use core::ops::BitOr;
use std::net::Ipv4Addr;

use super::checksum;
use super::ipv4::PROTO_TCP;
use super::{Result, WireError, read_u16, read_u32, write_u16, write_u32};

/// Length of a TCP header without options.
pub const HEADER_LEN: usize = 20;

const LAYER: &str = "tcp";
const MAX_SEGMENT_LEN: usize = u16::MAX as usize;

/// The control bits of byte 13 of the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: TcpFlags = TcpFlags(0x01);
    pub const SYN: TcpFlags = TcpFlags(0x02);
    pub const RST: TcpFlags = TcpFlags(0x04);
    pub const PSH: TcpFlags = TcpFlags(0x08);
    pub const ACK: TcpFlags = TcpFlags(0x10);
    pub const URG: TcpFlags = TcpFlags(0x20);
    pub const ECE: TcpFlags = TcpFlags(0x40);
    pub const CWR: TcpFlags = TcpFlags(0x80);

    /// True if every bit of `flags` is set in `self`.
    pub fn contains(self, flags: TcpFlags) -> bool {
        self.0 & flags.0 == flags.0
    }
}

impl BitOr for TcpFlags {
    type Output = TcpFlags;

    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

mod field {
    use crate::wire::Field;

    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const SEQ_NUMBER: Field = 4..8;
    pub const ACK_NUMBER: Field = 8..12;
    pub const DATA_OFFSET: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: Field = 14..16;
    pub const CHECKSUM: Field = 16..18;
}

/// A view of a TCP segment.
#[derive(Debug, Clone)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps `buffer` without checking it; accessors may panic if it is too short.
    pub fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    /// Wraps `buffer` (one whole segment) after checking that the header is inside it.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let data = buffer.as_ref();
        if data.len() < HEADER_LEN {
            return Err(WireError::Truncated { layer: LAYER });
        }
        if data.len() > MAX_SEGMENT_LEN {
            return Err(WireError::Malformed {
                layer: LAYER,
                what: "segment longer than 65535 bytes",
            });
        }
        let packet = TcpPacket { buffer };
        if packet.header_len() < HEADER_LEN {
            return Err(WireError::Malformed {
                layer: LAYER,
                what: "data offset",
            });
        }
        if packet.header_len() > packet.buffer.as_ref().len() {
            return Err(WireError::Truncated { layer: LAYER });
        }
        Ok(packet)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn src_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    pub fn dst_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    pub fn seq_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::SEQ_NUMBER)
    }

    pub fn ack_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::ACK_NUMBER)
    }

    /// Header length in bytes, options included (20..=60).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFFSET] >> 4) * 4
    }

    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buffer.as_ref()[field::FLAGS])
    }

    pub fn window(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::WINDOW)
    }

    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The bytes after the header (options excluded).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// Sum over pseudo header and segment (checksum field as stored).
    fn full_sum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u32 {
        let segment = self.buffer.as_ref();
        // new_checked bounds the segment to 65535 bytes, so the length fits the pseudo header.
        let len = u16::try_from(segment.len()).unwrap_or(u16::MAX);
        let pseudo = checksum::pseudo_header_v4(src, dst, PROTO_TCP, len);
        checksum::combine(pseudo, checksum::sum(segment))
    }

    /// True if the checksum is correct for these IPv4 addresses.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        checksum::fold(self.full_sum(src, dst)) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    pub fn set_src_port(&mut self, port: u16) {
        write_u16(self.buffer.as_mut(), field::SRC_PORT, port);
    }

    pub fn set_dst_port(&mut self, port: u16) {
        write_u16(self.buffer.as_mut(), field::DST_PORT, port);
    }

    pub fn set_seq_number(&mut self, seq: u32) {
        write_u32(self.buffer.as_mut(), field::SEQ_NUMBER, seq);
    }

    pub fn set_ack_number(&mut self, ack: u32) {
        write_u32(self.buffer.as_mut(), field::ACK_NUMBER, ack);
    }

    /// Writes all eight control bits.
    pub fn set_flags(&mut self, flags: TcpFlags) {
        self.buffer.as_mut()[field::FLAGS] = flags.0;
    }

    pub fn set_window(&mut self, window: u16) {
        write_u16(self.buffer.as_mut(), field::WINDOW, window);
    }

    /// Sets the data offset from a header length in bytes: a multiple of 4 in 20..=60 (other
    /// values are rounded down to a multiple of 4 and keep only the low 4 bits of the offset).
    pub fn set_header_len(&mut self, len: usize) {
        let offset = ((len / 4) as u8 & 0x0f) << 4;
        let byte = &mut self.buffer.as_mut()[field::DATA_OFFSET];
        *byte = offset | (*byte & 0x0f);
    }

    pub fn set_checksum(&mut self, checksum: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, checksum);
    }

    /// Recomputes the checksum over pseudo header and the whole segment.
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let value = checksum::finish(self.full_sum(src, dst));
        self.set_checksum(value);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 5);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

    /// A SYN 10.244.1.5:40000 -> 10.96.0.10:80, seq 0x01020304, window 64240, MSS 1460 option;
    /// checksum 0xe63c computed with an independent script.
    const SYN: [u8; 24] = [
        0x9c, 0x40, 0x00, 0x50, 0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x00,
        0x00, // ports, seq, ack
        0x60, 0x02, 0xfa, 0xf0, 0xe6, 0x3c, 0x00, 0x00, // offset 6, SYN, window, csum, urg
        0x02, 0x04, 0x05, 0xb4, // MSS 1460
    ];

    #[test]
    fn deconstruct() {
        let tcp = TcpPacket::new_checked(&SYN[..]).unwrap();
        assert_eq!(tcp.src_port(), 40000);
        assert_eq!(tcp.dst_port(), 80);
        assert_eq!(tcp.seq_number(), 0x0102_0304);
        assert_eq!(tcp.ack_number(), 0);
        assert_eq!(tcp.header_len(), 24);
        assert_eq!(tcp.flags(), TcpFlags::SYN);
        assert!(tcp.flags().contains(TcpFlags::SYN) && !tcp.flags().contains(TcpFlags::ACK));
        assert_eq!(tcp.window(), 64240);
        assert_eq!(tcp.checksum(), 0xe63c);
        assert!(tcp.payload().is_empty());
        assert!(tcp.verify_checksum(SRC, DST));
        assert!(!tcp.verify_checksum(DST, Ipv4Addr::new(10, 96, 0, 11)));
    }

    #[test]
    fn setters_and_fill_checksum() {
        let mut bytes = SYN;
        let mut tcp = TcpPacket::new_checked(&mut bytes[..]).unwrap();
        tcp.set_checksum(0);
        tcp.fill_checksum(SRC, DST);
        assert_eq!(tcp.checksum(), 0xe63c);
        tcp.set_src_port(80);
        tcp.set_dst_port(40000);
        tcp.set_seq_number(7);
        tcp.set_ack_number(0x0102_0305);
        tcp.set_flags(TcpFlags::SYN | TcpFlags::ACK);
        tcp.set_window(1);
        tcp.set_header_len(20);
        assert!(tcp.payload_mut().len() == 4);
        assert_eq!(
            &bytes[..16],
            &[0, 80, 0x9c, 0x40, 0, 0, 0, 7, 1, 2, 3, 5, 0x50, 0x12, 0, 1]
        );
    }

    #[test]
    fn set_header_len_keeps_low_bits() {
        let mut bytes = SYN;
        bytes[12] = 0x61; // NS bit set
        let mut tcp = TcpPacket::new_checked(&mut bytes[..]).unwrap();
        tcp.set_header_len(20);
        assert_eq!(bytes[12], 0x51);
    }

    #[test]
    fn rejects_bad_offsets() {
        let mut bytes = SYN;
        bytes[12] = 0x40;
        assert_eq!(
            TcpPacket::new_checked(&bytes[..]).unwrap_err(),
            WireError::Malformed {
                layer: "tcp",
                what: "data offset"
            }
        );
        bytes[12] = 0x70; // 28-byte header in 24 bytes
        assert_eq!(
            TcpPacket::new_checked(&bytes[..]).unwrap_err(),
            WireError::Truncated { layer: "tcp" }
        );
        let huge = vec![0x50; MAX_SEGMENT_LEN + 1];
        assert!(TcpPacket::new_checked(&huge[..]).is_err());
    }
}
