//! IPv4 headers (RFC 791), options included in the header length but not interpreted.
//!
//! Invariants after `Ipv4Packet::new_checked`: version 4, IHL >= 5, the header (options included)
//! is inside the buffer, and header_len <= total_len <= buffer length. Bytes past total_len (such as
//! Ethernet padding) are ignored by `payload()`.
//! `Ipv4Packet::new_inner` is for the header quoted inside an ICMP error, which usually carries
//! only the first 8 payload bytes: the same checks except that total_len may exceed the buffer;
//! `payload()` then returns the bytes that are there.

use std::net::Ipv4Addr;

use super::checksum;
use super::{Result, WireError, read_u16, read_u32, write_u16, write_u32};

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;
/// Protocol number of ICMP.
pub const PROTO_ICMP: u8 = 1;
/// Protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// Protocol number of UDP.
pub const PROTO_UDP: u8 = 17;

const LAYER: &str = "ipv4";
const FLAG_DONT_FRAG: u16 = 0x4000;
const FLAG_MORE_FRAGS: u16 = 0x2000;
const FRAG_OFFSET_MASK: u16 = 0x1fff;

mod field {
    use crate::wire::Field;

    pub const VER_IHL: usize = 0;
    pub const TOTAL_LEN: Field = 2..4;
    pub const IDENT: Field = 4..6;
    pub const FLAGS_FRAG: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC_ADDR: Field = 12..16;
    pub const DST_ADDR: Field = 16..20;
}

/// A view of an IPv4 packet.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps `buffer` without checking it; accessors may panic if it is too short.
    pub fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Wraps `buffer` holding a whole packet (trailing bytes allowed).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_inner(buffer)?;
        if usize::from(packet.total_len()) > packet.buffer.as_ref().len() {
            return Err(WireError::Truncated { layer: LAYER });
        }
        Ok(packet)
    }

    /// Wraps `buffer` holding at least a whole header, as quoted in an ICMP error: total_len may
    /// announce more bytes than the buffer has.
    pub fn new_inner(buffer: T) -> Result<Self> {
        let data = buffer.as_ref();
        if data.len() < HEADER_LEN {
            return Err(WireError::Truncated { layer: LAYER });
        }
        let packet = Ipv4Packet { buffer };
        let malformed = |what| Err(WireError::Malformed { layer: LAYER, what });
        if packet.version() != 4 {
            return malformed("version");
        }
        if packet.header_len() < HEADER_LEN {
            return malformed("header length");
        }
        if packet.header_len() > packet.buffer.as_ref().len() {
            return Err(WireError::Truncated { layer: LAYER });
        }
        if usize::from(packet.total_len()) < packet.header_len() {
            return malformed("total length");
        }
        Ok(packet)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes, options included (20..=60).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// Header plus payload, as announced by the header.
    pub fn total_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::TOTAL_LEN)
    }

    pub fn ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::IDENT)
    }

    pub fn dont_frag(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::FLAGS_FRAG) & FLAG_DONT_FRAG != 0
    }

    pub fn more_frags(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::FLAGS_FRAG) & FLAG_MORE_FRAGS != 0
    }

    /// Fragment offset in bytes (the field counts 8-byte units).
    pub fn frag_offset(&self) -> u16 {
        (read_u16(self.buffer.as_ref(), field::FLAGS_FRAG) & FRAG_OFFSET_MASK) * 8
    }

    /// True for any fragment of a fragmented datagram, the first one included.
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(read_u32(self.buffer.as_ref(), field::SRC_ADDR))
    }

    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(read_u32(self.buffer.as_ref(), field::DST_ADDR))
    }

    /// The bytes from the end of the header up to total_len, or to the end of the buffer if that
    /// comes first (a quoted header from `new_inner`).
    pub fn payload(&self) -> &[u8] {
        let range = self.payload_range();
        &self.buffer.as_ref()[range]
    }

    fn payload_range(&self) -> core::ops::Range<usize> {
        let start = self.header_len();
        let end = usize::from(self.total_len()).min(self.buffer.as_ref().len());
        start..end.max(start)
    }

    /// True when the header checksum is correct.
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(&self.buffer.as_ref()[..self.header_len()])) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        write_u32(self.buffer.as_mut(), field::SRC_ADDR, u32::from(addr));
    }

    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        write_u32(self.buffer.as_mut(), field::DST_ADDR, u32::from(addr));
    }

    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    /// Sets total_len; keep it within the buffer for the view's invariant to hold.
    pub fn set_total_len(&mut self, len: u16) {
        write_u16(self.buffer.as_mut(), field::TOTAL_LEN, len);
    }

    pub fn set_ident(&mut self, ident: u16) {
        write_u16(self.buffer.as_mut(), field::IDENT, ident);
    }

    pub fn set_dont_frag(&mut self, dont_frag: bool) {
        let old = read_u16(self.buffer.as_ref(), field::FLAGS_FRAG);
        let new = if dont_frag {
            old | FLAG_DONT_FRAG
        } else {
            old & !FLAG_DONT_FRAG
        };
        write_u16(self.buffer.as_mut(), field::FLAGS_FRAG, new);
    }

    pub fn set_protocol(&mut self, protocol: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = protocol;
    }

    pub fn set_checksum(&mut self, checksum: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, checksum);
    }

    /// Recomputes the header checksum from scratch.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let header_len = self.header_len();
        let sum = checksum::sum(&self.buffer.as_ref()[..header_len]);
        self.set_checksum(checksum::finish(sum));
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.payload_range();
        &mut self.buffer.as_mut()[range]
    }
}

/// The fields of an IPv4 header that the dataplane reads or writes; DSCP/ECN, options and
/// fragmentation are not represented (emit writes zero for them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub ttl: u8,
    /// Bytes after the header (total_len - header_len).
    pub payload_len: u16,
    pub dont_frag: bool,
    pub ident: u16,
}

impl Ipv4Repr {
    /// Reads the summary. The checksum is not verified: see `Ipv4Packet::verify_checksum`.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Self {
        // header_len (at most 60) <= total_len after new_checked/new_inner; saturate otherwise.
        let header_len = packet.header_len() as u16;
        Ipv4Repr {
            src: packet.src_addr(),
            dst: packet.dst_addr(),
            protocol: packet.protocol(),
            ttl: packet.ttl(),
            payload_len: packet.total_len().saturating_sub(header_len),
            dont_frag: packet.dont_frag(),
            ident: packet.ident(),
        }
    }

    /// Writes a 20-byte header with a correct checksum at the front of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        let header = buf
            .get_mut(..HEADER_LEN)
            .ok_or(WireError::Truncated { layer: LAYER })?;
        let total_len =
            self.payload_len
                .checked_add(HEADER_LEN as u16)
                .ok_or(WireError::Malformed {
                    layer: LAYER,
                    what: "payload length",
                })?;
        // The header is assembled as ten 16-bit words and summed in registers, then stored:
        // summing it back from memory right after narrower stores is a store-forwarding stall
        // (a load spanning two stores cannot be forwarded), once per VXLAN-encapsulated packet.
        let (src, dst) = (u32::from(self.src), u32::from(self.dst));
        let flags_frag = if self.dont_frag { FLAG_DONT_FRAG } else { 0 };
        let mut words: [u16; 10] = [
            0x4500, // version 4, 5 words, DSCP/ECN 0
            total_len,
            self.ident,
            flags_frag,
            u16::from_be_bytes([self.ttl, self.protocol]),
            0, // the checksum
            (src >> 16) as u16,
            src as u16,
            (dst >> 16) as u16,
            dst as u16,
        ];
        let sum: u32 = words.iter().map(|&w| u32::from(w)).sum();
        words[5] = checksum::finish(sum);
        for (bytes, word) in header.chunks_exact_mut(2).zip(words) {
            bytes.copy_from_slice(&word.to_be_bytes());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A UDP datagram header: 192.168.0.1 -> 192.168.0.199, total length 115, DF, TTL 64,
    /// checksum 0xb861 (the worked example of the IPv4 header checksum on Wikipedia).
    const HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    fn packet_bytes() -> Vec<u8> {
        let mut bytes = HEADER.to_vec();
        bytes.extend((0..95).map(|i| i as u8));
        bytes
    }

    #[test]
    fn deconstruct() {
        let mut bytes = packet_bytes();
        bytes.extend([0, 0, 0]); // trailing padding is allowed and ignored
        let ip = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(ip.header_len(), 20);
        assert_eq!(ip.total_len(), 115);
        assert_eq!(ip.ident(), 0);
        assert!(ip.dont_frag() && !ip.more_frags() && !ip.is_fragment());
        assert_eq!(ip.frag_offset(), 0);
        assert_eq!(ip.ttl(), 64);
        assert_eq!(ip.protocol(), PROTO_UDP);
        assert_eq!(ip.checksum(), 0xb861);
        assert_eq!(ip.src_addr(), Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(ip.dst_addr(), Ipv4Addr::new(192, 168, 0, 199));
        assert_eq!(ip.payload(), &packet_bytes()[20..]);
        assert!(ip.verify_checksum());
    }

    #[test]
    fn fill_checksum_matches_literal() {
        let mut bytes = packet_bytes();
        let mut ip = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        ip.set_checksum(0x1234);
        assert!(!ip.verify_checksum());
        ip.fill_checksum();
        assert_eq!(ip.checksum(), 0xb861);
    }

    #[test]
    fn fragment_fields() {
        let mut bytes = packet_bytes();
        bytes[6..8].copy_from_slice(&[0x20, 0xb9]); // MF, offset 185 units
        let ip = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert!(ip.more_frags() && !ip.dont_frag() && ip.is_fragment());
        assert_eq!(ip.frag_offset(), 1480);
        bytes[6..8].copy_from_slice(&[0x00, 0x01]); // last fragment, offset 8 bytes
        assert!(Ipv4Packet::new_checked(&bytes[..]).unwrap().is_fragment());
    }

    #[test]
    fn setters_write_the_documented_bytes() {
        let mut bytes = packet_bytes();
        let mut ip = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        ip.set_src_addr(Ipv4Addr::new(10, 96, 0, 10));
        ip.set_dst_addr(Ipv4Addr::new(10, 244, 2, 7));
        ip.set_ttl(63);
        ip.set_ident(0xbeef);
        ip.set_dont_frag(false);
        ip.set_protocol(PROTO_TCP);
        ip.set_total_len(40);
        ip.payload_mut()[0] = 0xff;
        assert_eq!(
            &bytes[..21],
            &[
                0x45, 0x00, 0x00, 40, 0xbe, 0xef, 0x00, 0x00, 63, 6, 0xb8, 0x61, 10, 96, 0, 10, 10,
                244, 2, 7, 0xff
            ]
        );
    }

    #[test]
    fn rejects_bad_headers() {
        let err = |bytes: &[u8]| Ipv4Packet::new_checked(bytes).unwrap_err();
        let malformed = |what| WireError::Malformed {
            layer: "ipv4",
            what,
        };
        let mut bytes = packet_bytes();
        bytes[0] = 0x65;
        assert_eq!(err(&bytes), malformed("version"));
        bytes[0] = 0x44;
        assert_eq!(err(&bytes), malformed("header length"));
        bytes[0] = 0x45;
        bytes[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(err(&bytes), malformed("total length"));
        bytes[2..4].copy_from_slice(&116u16.to_be_bytes());
        assert_eq!(err(&bytes), WireError::Truncated { layer: "ipv4" });
        bytes[0] = 0x4f; // a 60-byte header does not fit in 40 bytes
        bytes.truncate(40);
        assert_eq!(err(&bytes), WireError::Truncated { layer: "ipv4" });
    }

    #[test]
    fn options_count_in_header_len() {
        let mut bytes = packet_bytes();
        bytes[0] = 0x46;
        let ip = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(ip.header_len(), 24);
        assert_eq!(ip.payload(), &packet_bytes()[24..]);
    }

    /// An ICMP error quotes the offending header and 8 bytes of its payload (RFC 792).
    #[test]
    fn new_inner_accepts_header_plus_eight_bytes() {
        let quoted = &packet_bytes()[..28];
        assert_eq!(
            Ipv4Packet::new_checked(quoted).unwrap_err(),
            WireError::Truncated { layer: "ipv4" }
        );
        let inner = Ipv4Packet::new_inner(quoted).unwrap();
        assert_eq!(inner.total_len(), 115);
        assert_eq!(inner.payload(), &packet_bytes()[20..28]);
        assert_eq!(inner.dst_addr(), Ipv4Addr::new(192, 168, 0, 199));
        assert!(inner.verify_checksum());
        assert!(Ipv4Packet::new_inner(&quoted[..19]).is_err());
    }

    #[test]
    fn emit_writes_header_with_checksum() {
        let repr = Ipv4Repr::parse(&Ipv4Packet::new_checked(&packet_bytes()[..]).unwrap());
        assert_eq!(repr.payload_len, 95);
        let mut buf = [0xff; 20];
        repr.emit(&mut buf).unwrap();
        assert_eq!(buf, HEADER);
        let too_long = Ipv4Repr {
            payload_len: u16::MAX - 19,
            ..repr
        };
        assert!(too_long.emit(&mut buf).is_err());
        assert!(repr.emit(&mut buf[..19]).is_err());
    }

    #[test]
    fn every_emitted_header_parses_back_with_a_valid_checksum() {
        let base = Ipv4Repr::parse(&Ipv4Packet::new_checked(&packet_bytes()[..]).unwrap());
        for (ident, dont_frag, ttl, src, payload_len) in [
            (0, true, 64, Ipv4Addr::new(10, 0, 0, 1), 0),
            (
                0xffff,
                false,
                1,
                Ipv4Addr::new(255, 255, 255, 255),
                u16::MAX - 20,
            ),
            (0x1234, true, 255, Ipv4Addr::new(192, 168, 50, 3), 1430),
        ] {
            let repr = Ipv4Repr {
                ident,
                dont_frag,
                ttl,
                src,
                payload_len,
                ..base
            };
            let mut buf = [0xa5; 20];
            repr.emit(&mut buf).unwrap();
            let ip = Ipv4Packet::new_unchecked(&buf[..]);
            assert!(ip.verify_checksum(), "{repr:?}");
            assert_eq!(Ipv4Repr::parse(&ip), repr);
        }
    }
}
