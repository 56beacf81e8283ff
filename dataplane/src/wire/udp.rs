//! UDP datagrams (RFC 768) over IPv4.
//!
//! Invariants after `UdpPacket::new_checked`: the 8-byte header is in the buffer and
//! 8 <= length field <= buffer length; `payload()` ends at the length field.
//! Checksum rules: a zero field means "no checksum" (verification passes, updates leave it zero);
//! a computed zero is sent as 0xffff.

use std::net::Ipv4Addr;

use super::checksum;
use super::ipv4::PROTO_UDP;
use super::{Result, WireError, read_u16, write_u16};

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

const LAYER: &str = "udp";

mod field {
    use crate::wire::Field;

    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;
}

/// A view of a UDP datagram.
#[derive(Debug, Clone)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps `buffer` without checking it; accessors may panic if it is too short.
    pub fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// Wraps `buffer` after checking the header and the length field against it.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let data = buffer.as_ref();
        if data.len() < HEADER_LEN {
            return Err(WireError::Truncated { layer: LAYER });
        }
        let len = usize::from(read_u16(data, field::LENGTH));
        if len < HEADER_LEN {
            return Err(WireError::Malformed {
                layer: LAYER,
                what: "length",
            });
        }
        if len > data.len() {
            return Err(WireError::Truncated { layer: LAYER });
        }
        Ok(UdpPacket { buffer })
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

    /// The length field: header plus payload.
    #[allow(clippy::len_without_is_empty)] // a datagram is never empty: it has a header
    pub fn len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The bytes after the header, up to the length field.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.datagram_end()]
    }

    fn datagram_end(&self) -> usize {
        usize::from(self.len()).max(HEADER_LEN)
    }

    /// Sum over pseudo header and datagram (checksum field as stored).
    fn full_sum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u32 {
        let datagram = &self.buffer.as_ref()[..self.datagram_end()];
        let pseudo = checksum::pseudo_header_v4(src, dst, PROTO_UDP, self.len());
        checksum::combine(pseudo, checksum::sum(datagram))
    }

    /// True if the checksum is correct for these IPv4 addresses, or absent (zero).
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.checksum() == 0 || checksum::fold(self.full_sum(src, dst)) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    pub fn set_src_port(&mut self, port: u16) {
        write_u16(self.buffer.as_mut(), field::SRC_PORT, port);
    }

    pub fn set_dst_port(&mut self, port: u16) {
        write_u16(self.buffer.as_mut(), field::DST_PORT, port);
    }

    /// Sets the length field; keep it within the buffer for the view's invariant to hold.
    pub fn set_len(&mut self, len: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    pub fn set_checksum(&mut self, checksum: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, checksum);
    }

    /// Recomputes the checksum over pseudo header and datagram; a computed 0 is sent as 0xffff.
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let value = checksum::finish(self.full_sum(src, dst));
        self.set_checksum(if value == 0 { 0xffff } else { value });
    }

    /// Applies an incremental update such as `|c| checksum::update_addr(c, old, new)` to the
    /// checksum field, keeping UDP's rules: an absent (zero) checksum stays absent, and a result
    /// of 0 is stored as 0xffff.
    pub fn update_checksum(&mut self, update: impl FnOnce(u16) -> u16) {
        let old = self.checksum();
        if old == 0 {
            return;
        }
        let new = update(old);
        self.set_checksum(if new == 0 { 0xffff } else { new });
    }

    /// The bytes after the header, up to the length field.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.datagram_end();
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// A UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpRepr {
    pub src_port: u16,
    pub dst_port: u16,
    /// Bytes after the header.
    pub payload_len: u16,
}

impl UdpRepr {
    /// Reads the summary. The checksum is not verified: see `UdpPacket::verify_checksum`.
    pub fn parse<T: AsRef<[u8]>>(packet: &UdpPacket<T>) -> Self {
        UdpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload_len: packet.len().saturating_sub(HEADER_LEN as u16),
        }
    }

    /// Writes the 8-byte header with a zero (absent) checksum at the front of `buf`; call
    /// `UdpPacket::fill_checksum` once the payload is in place to add one.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        let header = buf
            .get_mut(..HEADER_LEN)
            .ok_or(WireError::Truncated { layer: LAYER })?;
        let len = self
            .payload_len
            .checked_add(HEADER_LEN as u16)
            .ok_or(WireError::Malformed {
                layer: LAYER,
                what: "payload length",
            })?;
        let mut packet = UdpPacket::new_unchecked(header);
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len(len);
        packet.set_checksum(0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 5);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

    /// A DNS query for example.com A, 10.244.1.5:40000 -> 10.96.0.10:53; checksum 0x6333
    /// computed with an independent script.
    const DATAGRAM: [u8; 37] = [
        0x9c, 0x40, 0x00, 0x35, 0x00, 0x25, 0x63, 0x33, // header
        0x1a, 0x2b, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // DNS header
        0x07, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 0x03, b'c', b'o', b'm', 0x00, // name
        0x00, 0x01, 0x00, 0x01, // A, IN
    ];

    #[test]
    fn deconstruct() {
        let mut bytes = DATAGRAM.to_vec();
        bytes.extend([0xaa, 0xbb]); // bytes past the length field are not payload
        let udp = UdpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(udp.src_port(), 40000);
        assert_eq!(udp.dst_port(), 53);
        assert_eq!(udp.len(), 37);
        assert_eq!(udp.checksum(), 0x6333);
        assert_eq!(udp.payload(), &DATAGRAM[8..]);
        assert!(udp.verify_checksum(SRC, DST));
        assert!(!udp.verify_checksum(SRC, Ipv4Addr::new(10, 96, 0, 11)));
    }

    #[test]
    fn fill_checksum_matches_literal() {
        let mut bytes = DATAGRAM;
        let mut udp = UdpPacket::new_checked(&mut bytes[..]).unwrap();
        udp.set_checksum(0xdead);
        udp.fill_checksum(SRC, DST);
        assert_eq!(udp.checksum(), 0x6333);
    }

    #[test]
    fn zero_checksum_means_absent() {
        let mut bytes = DATAGRAM;
        bytes[6..8].copy_from_slice(&[0, 0]);
        let mut udp = UdpPacket::new_checked(&mut bytes[..]).unwrap();
        assert!(udp.verify_checksum(Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED));
        udp.update_checksum(|c| checksum::update_u16(c, 40000, 1234));
        assert_eq!(udp.checksum(), 0);
    }

    #[test]
    fn length_field_is_checked() {
        let mut bytes = DATAGRAM;
        bytes[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(
            UdpPacket::new_checked(&bytes[..]).unwrap_err(),
            WireError::Malformed {
                layer: "udp",
                what: "length"
            }
        );
        assert_eq!(
            UdpPacket::new_checked(&DATAGRAM[..36]).unwrap_err(),
            WireError::Truncated { layer: "udp" }
        );
    }

    #[test]
    fn emit_and_parse() {
        let repr = UdpRepr::parse(&UdpPacket::new_checked(&DATAGRAM[..]).unwrap());
        assert_eq!(
            repr,
            UdpRepr {
                src_port: 40000,
                dst_port: 53,
                payload_len: 29
            }
        );
        let mut buf = DATAGRAM;
        repr.emit(&mut buf).unwrap();
        assert_eq!(&buf[..8], &[0x9c, 0x40, 0x00, 0x35, 0x00, 0x25, 0x00, 0x00]);
        assert!(repr.emit(&mut buf[..7]).is_err());
    }
}
