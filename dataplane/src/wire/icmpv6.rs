//! ICMPv6 (RFC 4443) and the neighbour-discovery messages the node answers (RFC 4861): the
//! message view, its checksum over the IPv6 pseudo header, and neighbour solicitation /
//! advertisement bodies.
//!
//! Invariant after `Icmpv6Packet::new_checked`: the 4-byte type/code/checksum header is in the
//! buffer; the message is the whole buffer (build the view over the upper-layer bytes). Body
//! accessors (`ns_target`, `source_link_addr`) return `None` rather than read past it.

use std::net::Ipv6Addr;

use super::checksum;
use super::{MacAddr, Result, WireError, read_u16, write_u16};

/// Length of the header every ICMPv6 message has (type, code, checksum, 4 bytes of body).
pub const HEADER_LEN: usize = 8;
/// The IPv6 next-header value of ICMPv6.
pub const PROTO_ICMPV6: u8 = 58;

pub const DEST_UNREACHABLE: u8 = 1;
pub const PACKET_TOO_BIG: u8 = 2;
pub const TIME_EXCEEDED: u8 = 3;
pub const PARAM_PROBLEM: u8 = 4;
pub const ECHO_REQUEST: u8 = 128;
pub const ECHO_REPLY: u8 = 129;
pub const ROUTER_SOLICIT: u8 = 133;
pub const ROUTER_ADVERT: u8 = 134;
pub const NEIGHBOR_SOLICIT: u8 = 135;
pub const NEIGHBOR_ADVERT: u8 = 136;
pub const REDIRECT: u8 = 137;

/// Destination unreachable code: port unreachable.
pub const CODE_PORT_UNREACHABLE: u8 = 4;
/// Time exceeded code: hop limit exceeded in transit.
pub const CODE_HOP_LIMIT: u8 = 0;

/// Hop limit every NDP message must carry (RFC 4861 6.1.2, 7.1.1): proof it is on-link.
pub const NDP_HOP_LIMIT: u8 = 255;

/// Bytes of a neighbour solicitation/advertisement before its options.
pub const ND_BODY_LEN: usize = 24;
/// A neighbour advertisement with one target link-layer address option.
pub const NA_LEN: usize = ND_BODY_LEN + 8;

/// NA flags (byte 4): router, solicited, override.
pub const NA_FLAG_ROUTER: u8 = 0x80;
pub const NA_FLAG_SOLICITED: u8 = 0x40;
pub const NA_FLAG_OVERRIDE: u8 = 0x20;

const OPT_SOURCE_LL: u8 = 1;
const OPT_TARGET_LL: u8 = 2;

const LAYER: &str = "icmpv6";

mod field {
    use crate::wire::Field;

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    pub const ECHO_IDENT: Field = 4..6;
    pub const MTU: Field = 4..8;
    pub const ND_FLAGS: usize = 4;
    pub const ND_TARGET: Field = 8..24;
}

/// A view of an ICMPv6 message.
#[derive(Debug, Clone)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// Wraps `buffer` without checking it; accessors may panic if it is too short.
    pub fn new_unchecked(buffer: T) -> Self {
        Icmpv6Packet { buffer }
    }

    /// Wraps `buffer` (one whole message) after checking that the header is there.
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated { layer: LAYER });
        }
        Ok(Icmpv6Packet { buffer })
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

    /// Errors are types 0..=127 (RFC 4443 2.1).
    pub fn is_error(&self) -> bool {
        self.msg_type() < 128
    }

    pub fn is_echo(&self) -> bool {
        matches!(self.msg_type(), ECHO_REQUEST | ECHO_REPLY)
    }

    /// Router and neighbour discovery, and redirects (types 133..=137).
    pub fn is_ndp(&self) -> bool {
        (ROUTER_SOLICIT..=REDIRECT).contains(&self.msg_type())
    }

    pub fn echo_ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// Whether the checksum is right for a message from `src` to `dst`.
    pub fn verify_checksum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        let data = self.buffer.as_ref();
        let sum = checksum::combine(pseudo(src, dst, data.len()), checksum::sum(data));
        checksum::fold(sum) == 0xffff
    }

    /// The target address of a neighbour solicitation or advertisement.
    pub fn nd_target(&self) -> Option<Ipv6Addr> {
        let t = self.buffer.as_ref().get(field::ND_TARGET)?;
        let mut octets = [0; 16];
        octets.copy_from_slice(t);
        Some(Ipv6Addr::from(octets))
    }

    /// The source link-layer address option of a solicitation, if it carries one.
    pub fn source_link_addr(&self) -> Option<MacAddr> {
        let mut opts = self.buffer.as_ref().get(ND_BODY_LEN..)?;
        while opts.len() >= 8 {
            let len = usize::from(opts[1]) * 8;
            if len == 0 || len > opts.len() {
                return None;
            }
            if opts[0] == OPT_SOURCE_LL && len == 8 {
                let mut mac = [0; 6];
                mac.copy_from_slice(&opts[2..8]);
                return Some(MacAddr(mac));
            }
            opts = &opts[len..];
        }
        None
    }

    /// The whole message.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Computes and stores the checksum of a message from `src` to `dst`.
    pub fn fill_checksum(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let sum = checksum::combine(pseudo(src, dst, data.len()), checksum::sum(data));
        self.set_checksum(checksum::finish(sum));
    }
}

fn pseudo(src: Ipv6Addr, dst: Ipv6Addr, len: usize) -> u32 {
    checksum::pseudo_header_v6(src, dst, PROTO_ICMPV6, len as u32)
}

/// Writes a neighbour advertisement for `target` at `mac` (with the target link-layer address
/// option) into the first [`NA_LEN`] bytes of `buf`; the checksum is left zero.
pub fn emit_neighbor_advert(
    buf: &mut [u8],
    target: Ipv6Addr,
    mac: MacAddr,
    flags: u8,
) -> Result<()> {
    let out = buf
        .get_mut(..NA_LEN)
        .ok_or(WireError::Truncated { layer: LAYER })?;
    out.fill(0);
    out[field::TYPE] = NEIGHBOR_ADVERT;
    out[field::ND_FLAGS] = flags;
    out[field::ND_TARGET].copy_from_slice(&target.octets());
    out[ND_BODY_LEN] = OPT_TARGET_LL;
    out[ND_BODY_LEN + 1] = 1;
    out[ND_BODY_LEN + 2..NA_LEN].copy_from_slice(&mac.0);
    Ok(())
}

/// Writes the 8-byte header of an error message (type, code, and the 32-bit field after the
/// checksum: the MTU for packet-too-big, the pointer for parameter problems, else 0).
pub fn emit_error_header(buf: &mut [u8], msg_type: u8, code: u8, value: u32) -> Result<()> {
    let out = buf
        .get_mut(..HEADER_LEN)
        .ok_or(WireError::Truncated { layer: LAYER })?;
    out[field::TYPE] = msg_type;
    out[field::CODE] = code;
    out[field::CHECKSUM].fill(0);
    out[field::MTU].copy_from_slice(&value.to_be_bytes());
    Ok(())
}

/// The solicited-node multicast address of `addr` (ff02::1:ffXX:XXXX, RFC 4291 2.7.1).
pub fn solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

/// The Ethernet multicast address of an IPv6 multicast address (33:33 + its low 32 bits).
pub fn multicast_mac(addr: Ipv6Addr) -> MacAddr {
    let o = addr.octets();
    MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    /// A neighbour solicitation from fe80::2 for fd00::1 with a source link-layer option, as a
    /// host sends it; checksum computed by etherparse.
    fn solicitation() -> (Vec<u8>, Ipv6Addr, Ipv6Addr) {
        use etherparse::{Icmpv6Header, Icmpv6Type};
        let src = ip("fe80::2");
        let dst = solicited_node(ip("fd00::1"));
        let mut body = vec![0u8; 4];
        body.extend_from_slice(&ip("fd00::1").octets());
        body.extend_from_slice(&[1, 1, 2, 0, 0, 0, 0, 9]);
        let header = Icmpv6Header::with_checksum(
            Icmpv6Type::Unknown {
                type_u8: NEIGHBOR_SOLICIT,
                code_u8: 0,
                bytes5to8: [0; 4],
            },
            src.octets(),
            dst.octets(),
            &body[4..],
        )
        .unwrap();
        let mut msg = header.to_bytes().to_vec();
        msg.extend_from_slice(&body[4..]);
        (msg, src, dst)
    }

    #[test]
    fn reads_a_solicitation_and_checks_its_checksum() {
        let (msg, src, dst) = solicitation();
        let p = Icmpv6Packet::new_checked(&msg[..]).unwrap();
        assert_eq!(p.msg_type(), NEIGHBOR_SOLICIT);
        assert!(p.is_ndp() && !p.is_error());
        assert!(p.verify_checksum(src, dst));
        assert!(
            !p.verify_checksum(ip("fe80::3"), dst),
            "the pseudo header is covered"
        );
        assert_eq!(p.nd_target(), Some(ip("fd00::1")));
        assert_eq!(p.source_link_addr(), Some(MacAddr([2, 0, 0, 0, 0, 9])));
        let mut bad = msg.clone();
        bad[10] ^= 1;
        assert!(
            !Icmpv6Packet::new_checked(&bad[..])
                .unwrap()
                .verify_checksum(src, dst)
        );
    }

    #[test]
    fn advert_round_trips_and_its_checksum_verifies() {
        let mut buf = [0xaau8; NA_LEN];
        let mac = MacAddr([2, 1, 2, 3, 4, 5]);
        emit_neighbor_advert(&mut buf, ip("fd00::1"), mac, NA_FLAG_SOLICITED).unwrap();
        let mut p = Icmpv6Packet::new_checked(&mut buf[..]).unwrap();
        p.fill_checksum(ip("fd00::1"), ip("fe80::2"));
        assert!(p.verify_checksum(ip("fd00::1"), ip("fe80::2")));
        assert_eq!(p.msg_type(), NEIGHBOR_ADVERT);
        assert_eq!(p.nd_target(), Some(ip("fd00::1")));
        assert_eq!(buf[4], NA_FLAG_SOLICITED);
        assert_eq!(&buf[26..32], &mac.0);
        assert!(emit_neighbor_advert(&mut [0; 31], ip("::1"), mac, 0).is_err());
    }

    #[test]
    fn options_that_lie_about_their_length_are_ignored() {
        let mut msg = vec![NEIGHBOR_SOLICIT, 0, 0, 0, 0, 0, 0, 0];
        msg.extend_from_slice(&[0; 16]);
        msg.extend_from_slice(&[1, 0, 2, 0, 0, 0, 0, 9]); // length 0
        assert_eq!(
            Icmpv6Packet::new_checked(&msg[..])
                .unwrap()
                .source_link_addr(),
            None
        );
        msg[25] = 2; // 16 bytes announced, 8 present
        assert_eq!(
            Icmpv6Packet::new_checked(&msg[..])
                .unwrap()
                .source_link_addr(),
            None
        );
        assert_eq!(
            Icmpv6Packet::new_checked(&msg[..20]).unwrap().nd_target(),
            None
        );
    }

    #[test]
    fn multicast_addresses() {
        assert_eq!(solicited_node(ip("fd00::12:3456")), ip("ff02::1:ff12:3456"));
        assert_eq!(
            multicast_mac(ip("ff02::1:ff12:3456")),
            MacAddr([0x33, 0x33, 0xff, 0x12, 0x34, 0x56])
        );
    }
}
