//! ICMPv4 messages (RFC 792): echo request/reply and the errors the dataplane emits or
//! reverse-translates (destination unreachable, time exceeded, parameter problem).
//!
//! Invariant after `Icmpv4Packet::new_checked`: the 8-byte header is in the buffer. The message is
//! the whole buffer (ICMP has no length field): build the view over the IP payload. For errors,
//! `inner()` holds the quoted IPv4 header and at least 8 bytes of its payload; read it with
//! `Ipv4Packet::new_inner`.

use super::checksum;
use super::{Result, WireError, read_u16, read_u32, write_u16, write_u32};

/// Length of the ICMPv4 header (type, code, checksum, 4 bytes of rest-of-header).
pub const HEADER_LEN: usize = 8;

pub const ECHO_REPLY: u8 = 0;
pub const DEST_UNREACHABLE: u8 = 3;
pub const SOURCE_QUENCH: u8 = 4;
pub const REDIRECT: u8 = 5;
pub const ECHO_REQUEST: u8 = 8;
pub const TIME_EXCEEDED: u8 = 11;
pub const PARAM_PROBLEM: u8 = 12;

/// Destination unreachable code: host unreachable.
pub const CODE_HOST_UNREACHABLE: u8 = 1;
/// Destination unreachable code: port unreachable.
pub const CODE_PORT_UNREACHABLE: u8 = 3;
/// Destination unreachable code: fragmentation needed and DF set (PMTU discovery).
pub const CODE_FRAG_NEEDED: u8 = 4;
/// Destination unreachable code: communication administratively prohibited (RFC 1812).
pub const CODE_ADMIN_PROHIBITED: u8 = 13;

const LAYER: &str = "icmpv4";

mod field {
    use crate::wire::Field;

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    pub const REST_OF_HEADER: Field = 4..8;
    pub const ECHO_IDENT: Field = 4..6;
    pub const ECHO_SEQ: Field = 6..8;
    pub const NEXT_HOP_MTU: Field = 6..8;
}

/// A view of an ICMPv4 message.
#[derive(Debug, Clone)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// Wraps `buffer` without checking it; accessors may panic if it is too short.
    pub fn new_unchecked(buffer: T) -> Self {
        Icmpv4Packet { buffer }
    }

    /// Wraps `buffer` (one whole message) after checking that the header is there.
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated { layer: LAYER });
        }
        Ok(Icmpv4Packet { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Identifier of an echo request or reply (bytes 4..6).
    pub fn echo_ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// Sequence number of an echo request or reply (bytes 6..8).
    pub fn echo_seq(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ECHO_SEQ)
    }

    /// MTU of the next hop in a "fragmentation needed" error (RFC 1191, bytes 6..8).
    pub fn next_hop_mtu(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::NEXT_HOP_MTU)
    }

    /// Bytes 4..8 as one value.
    pub fn rest_of_header(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::REST_OF_HEADER)
    }

    /// True for messages that quote an offending IPv4 packet (types 3, 4, 5, 11, 12).
    pub fn is_error(&self) -> bool {
        matches!(
            self.msg_type(),
            DEST_UNREACHABLE | SOURCE_QUENCH | REDIRECT | TIME_EXCEEDED | PARAM_PROBLEM
        )
    }

    /// True for an echo request or reply.
    pub fn is_echo(&self) -> bool {
        matches!(self.msg_type(), ECHO_REQUEST | ECHO_REPLY)
    }

    /// Bytes 8..: the quoted IPv4 packet of an error, the data of an echo.
    pub fn inner(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// True when the checksum over the whole message is correct.
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(self.buffer.as_ref())) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    pub fn set_msg_type(&mut self, msg_type: u8) {
        self.buffer.as_mut()[field::TYPE] = msg_type;
    }

    pub fn set_code(&mut self, code: u8) {
        self.buffer.as_mut()[field::CODE] = code;
    }

    pub fn set_checksum(&mut self, checksum: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, checksum);
    }

    pub fn set_echo_ident(&mut self, ident: u16) {
        write_u16(self.buffer.as_mut(), field::ECHO_IDENT, ident);
    }

    pub fn set_echo_seq(&mut self, seq: u16) {
        write_u16(self.buffer.as_mut(), field::ECHO_SEQ, seq);
    }

    pub fn set_next_hop_mtu(&mut self, mtu: u16) {
        write_u16(self.buffer.as_mut(), field::NEXT_HOP_MTU, mtu);
    }

    /// Writes bytes 4..8 at once (e.g. zero for port unreachable).
    pub fn set_rest_of_header(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::REST_OF_HEADER, value);
    }

    /// Recomputes the checksum over the whole message.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let value = checksum::finish(checksum::sum(self.buffer.as_ref()));
        self.set_checksum(value);
    }

    pub fn inner_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv4::{Ipv4Packet, PROTO_UDP};
    use std::net::Ipv4Addr;

    /// Echo request, ident 0x1234, seq 1, data "abcdefgh"; checksum 0x5435 computed with an
    /// independent script.
    const ECHO: [u8; 16] = [
        0x08, 0x00, 0x54, 0x35, 0x12, 0x34, 0x00, 0x01, b'a', b'b', b'c', b'd', b'e', b'f', b'g',
        b'h',
    ];

    #[test]
    fn deconstruct_echo() {
        let icmp = Icmpv4Packet::new_checked(&ECHO[..]).unwrap();
        assert_eq!(icmp.msg_type(), ECHO_REQUEST);
        assert_eq!(icmp.code(), 0);
        assert_eq!(icmp.checksum(), 0x5435);
        assert_eq!(icmp.echo_ident(), 0x1234);
        assert_eq!(icmp.echo_seq(), 1);
        assert_eq!(icmp.rest_of_header(), 0x1234_0001);
        assert!(icmp.is_echo() && !icmp.is_error());
        assert_eq!(icmp.inner(), b"abcdefgh");
        assert!(icmp.verify_checksum());
    }

    #[test]
    fn echo_request_to_reply() {
        let mut bytes = ECHO;
        let mut icmp = Icmpv4Packet::new_checked(&mut bytes[..]).unwrap();
        icmp.set_msg_type(ECHO_REPLY);
        icmp.fill_checksum();
        // Type 8 -> 0 lowers the first word by 0x0800: the checksum rises by 0x0800.
        assert_eq!(icmp.checksum(), 0x5c35);
        assert!(icmp.verify_checksum());
    }

    /// "Fragmentation needed, next-hop MTU 1450" quoting a UDP packet's header and 8 bytes.
    #[test]
    fn frag_needed_error_quotes_inner_packet() {
        let quoted: [u8; 28] = [
            0x45, 0x00, 0x05, 0xdc, 0x00, 0x01, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 10, 244, 1, 5,
            10, 244, 2, 9, 0x9c, 0x40, 0x00, 0x35, 0x05, 0xc8, 0x00, 0x00,
        ];
        let mut bytes = [0u8; 36];
        bytes[8..].copy_from_slice(&quoted);
        let mut icmp = Icmpv4Packet::new_checked(&mut bytes[..]).unwrap();
        icmp.set_msg_type(DEST_UNREACHABLE);
        icmp.set_code(CODE_FRAG_NEEDED);
        icmp.set_rest_of_header(0xffff_ffff);
        icmp.set_rest_of_header(0);
        icmp.set_next_hop_mtu(1450);
        icmp.fill_checksum();
        assert_eq!(&bytes[..2], &[3, 4]);
        assert_eq!(&bytes[4..8], &[0, 0, 0x05, 0xaa]);
        let icmp = Icmpv4Packet::new_checked(&bytes[..]).unwrap();
        assert!(icmp.is_error() && icmp.verify_checksum());
        assert_eq!(icmp.next_hop_mtu(), 1450);
        let inner = Ipv4Packet::new_inner(icmp.inner()).unwrap();
        assert_eq!(inner.protocol(), PROTO_UDP);
        assert_eq!(inner.src_addr(), Ipv4Addr::new(10, 244, 1, 5));
        assert_eq!(inner.payload(), &quoted[20..]);
    }

    #[test]
    fn inner_mut_and_echo_setters() {
        let mut bytes = ECHO;
        let mut icmp = Icmpv4Packet::new_checked(&mut bytes[..]).unwrap();
        icmp.set_echo_ident(0xabcd);
        icmp.set_echo_seq(0x0102);
        icmp.inner_mut()[0] = b'z';
        assert_eq!(&bytes[4..9], &[0xab, 0xcd, 0x01, 0x02, b'z']);
        assert!(Icmpv4Packet::new_checked(&ECHO[..7]).is_err());
    }
}
