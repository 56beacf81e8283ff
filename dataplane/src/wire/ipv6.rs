//! IPv6 fixed headers (RFC 8200). Extension headers are walked by [`super::ipv6_ext`]:
//! `next_header()` is whatever follows the fixed header and `payload()` starts right after it.
//!
//! Invariants after `Ipv6Packet::new_checked`: version 6, the 40-byte header is in the buffer and
//! payload_len <= buffer length - 40 (trailing bytes are ignored by `payload()`).

use std::net::Ipv6Addr;

use super::{Field, Result, WireError, read_u16, write_u16};

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;

const LAYER: &str = "ipv6";

mod field {
    use crate::wire::Field;

    pub const VER_TC_FLOW: usize = 0;
    pub const PAYLOAD_LEN: Field = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Field = 8..24;
    pub const DST_ADDR: Field = 24..40;
}

/// A view of an IPv6 packet.
#[derive(Debug, Clone)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps `buffer` without checking it; accessors may panic if it is too short.
    pub fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    /// Wraps `buffer` after checking the version and that header and payload are inside it.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let data = buffer.as_ref();
        if data.len() < HEADER_LEN {
            return Err(WireError::Truncated { layer: LAYER });
        }
        if data[field::VER_TC_FLOW] >> 4 != 6 {
            return Err(WireError::Malformed {
                layer: LAYER,
                what: "version",
            });
        }
        if usize::from(read_u16(data, field::PAYLOAD_LEN)) > data.len() - HEADER_LEN {
            return Err(WireError::Truncated { layer: LAYER });
        }
        Ok(Ipv6Packet { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Bytes after the fixed header, extension headers included.
    pub fn payload_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::PAYLOAD_LEN)
    }

    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_HEADER]
    }

    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    pub fn src_addr(&self) -> Ipv6Addr {
        addr_at(self.buffer.as_ref(), field::SRC_ADDR)
    }

    pub fn dst_addr(&self) -> Ipv6Addr {
        addr_at(self.buffer.as_ref(), field::DST_ADDR)
    }

    /// The payload_len bytes after the fixed header.
    pub fn payload(&self) -> &[u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &self.buffer.as_ref()[HEADER_LEN..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    pub fn set_hop_limit(&mut self, hop_limit: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = hop_limit;
    }

    pub fn set_src_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    pub fn set_dst_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }
}

/// The fixed header's fields that the dataplane writes (traffic class and flow label zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Repr {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub next_header: u8,
    pub hop_limit: u8,
    /// Bytes after the fixed header.
    pub payload_len: u16,
}

impl Ipv6Repr {
    /// Writes the fixed header into the first [`HEADER_LEN`] bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        let out = buf
            .get_mut(..HEADER_LEN)
            .ok_or(WireError::Truncated { layer: LAYER })?;
        out[..4].copy_from_slice(&[0x60, 0, 0, 0]);
        write_u16(out, field::PAYLOAD_LEN, self.payload_len);
        out[field::NEXT_HEADER] = self.next_header;
        out[field::HOP_LIMIT] = self.hop_limit;
        out[field::SRC_ADDR].copy_from_slice(&self.src.octets());
        out[field::DST_ADDR].copy_from_slice(&self.dst.octets());
        Ok(())
    }
}

fn addr_at(data: &[u8], field: Field) -> Ipv6Addr {
    let mut octets = [0; 16];
    octets.copy_from_slice(&data[field]);
    Ipv6Addr::from(octets)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ICMPv6 echo request fe80::1 -> ff02::1, hop limit 255, flow label 0x12345, 8-byte body.
    const PACKET: [u8; 48] = [
        0x60, 0x01, 0x23, 0x45, 0x00, 0x08, 0x3a, 0xff, // ver, tc, flow, len 8, ICMPv6, hops
        0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // src
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // dst
        0x80, 0x00, 0x12, 0x34, 0x00, 0x07, 0x00, 0x01, // body
    ];

    #[test]
    fn deconstruct() {
        let mut bytes = PACKET.to_vec();
        bytes.push(0); // trailing byte ignored
        let ip = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(ip.payload_len(), 8);
        assert_eq!(ip.next_header(), 58);
        assert_eq!(ip.hop_limit(), 255);
        assert_eq!(ip.src_addr(), "fe80::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(ip.dst_addr(), "ff02::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(ip.payload(), &PACKET[40..]);
    }

    #[test]
    fn set_hop_limit_writes_byte_7() {
        let mut bytes = PACKET;
        Ipv6Packet::new_checked(&mut bytes[..])
            .unwrap()
            .set_hop_limit(64);
        assert_eq!(bytes[7], 64);
        assert_eq!(&bytes[..7], &PACKET[..7]);
    }

    #[test]
    fn repr_emits_what_the_view_reads() {
        let repr = Ipv6Repr {
            src: "fd00::1".parse().unwrap(),
            dst: "fd00::2".parse().unwrap(),
            next_header: 17,
            hop_limit: 63,
            payload_len: 8,
        };
        let mut buf = [0xffu8; 48];
        repr.emit(&mut buf).unwrap();
        let ip = Ipv6Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(
            (
                ip.src_addr(),
                ip.dst_addr(),
                ip.next_header(),
                ip.hop_limit(),
                ip.payload_len()
            ),
            (repr.src, repr.dst, 17, 63, 8)
        );
        assert_eq!(&buf[..4], &[0x60, 0, 0, 0]);
        assert!(repr.emit(&mut [0; 39]).is_err());
    }

    #[test]
    fn rejects_wrong_version_and_short_payload() {
        let mut bytes = PACKET;
        bytes[0] = 0x45;
        assert_eq!(
            Ipv6Packet::new_checked(&bytes[..]).unwrap_err(),
            WireError::Malformed {
                layer: "ipv6",
                what: "version"
            }
        );
        assert_eq!(
            Ipv6Packet::new_checked(&PACKET[..47]).unwrap_err(),
            WireError::Truncated { layer: "ipv6" }
        );
    }
}
