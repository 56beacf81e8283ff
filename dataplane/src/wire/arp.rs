//! ARP for IPv4 over Ethernet (RFC 826), the only kind a node dataplane answers or forwards.
//!
//! Invariant after `ArpPacket::new_checked`: the buffer holds at least 28 bytes and the fixed
//! fields say Ethernet/IPv4 (htype 1, ptype 0x0800, hlen 6, plen 4), so every address getter reads
//! a MAC or an IPv4 address at a fixed offset. Other ARP variants are `Malformed`.

use std::net::Ipv4Addr;

use super::ethernet::{ETHERTYPE_IPV4, MacAddr};
use super::{Result, WireError, read_u16, read_u32, write_u16, write_u32};

/// Operation code of a request.
pub const ARP_REQUEST: u16 = 1;
/// Operation code of a reply.
pub const ARP_REPLY: u16 = 2;
/// Length of an Ethernet/IPv4 ARP packet.
pub const ARP_LEN: usize = 28;

const HTYPE_ETHERNET: u16 = 1;
const LAYER: &str = "arp";

mod field {
    use crate::wire::Field;

    pub const HTYPE: Field = 0..2;
    pub const PTYPE: Field = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPERATION: Field = 6..8;
    pub const SENDER_HW: Field = 8..14;
    pub const SENDER_IP: Field = 14..18;
    pub const TARGET_HW: Field = 18..24;
    pub const TARGET_IP: Field = 24..28;
}

/// A view of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps `buffer` without checking it; accessors may panic if it is too short.
    pub fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    /// Wraps `buffer` after checking its length and that it is Ethernet/IPv4 ARP.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let data = buffer.as_ref();
        if data.len() < ARP_LEN {
            return Err(WireError::Truncated { layer: LAYER });
        }
        let malformed = |what| Err(WireError::Malformed { layer: LAYER, what });
        if read_u16(data, field::HTYPE) != HTYPE_ETHERNET {
            return malformed("hardware type");
        }
        if read_u16(data, field::PTYPE) != ETHERTYPE_IPV4 {
            return malformed("protocol type");
        }
        if data[field::HLEN] != 6 {
            return malformed("hardware address length");
        }
        if data[field::PLEN] != 4 {
            return malformed("protocol address length");
        }
        Ok(ArpPacket { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// [`ARP_REQUEST`], [`ARP_REPLY`] or another code.
    pub fn operation(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::OPERATION)
    }

    pub fn sender_hw(&self) -> MacAddr {
        let mut mac = [0; 6];
        mac.copy_from_slice(&self.buffer.as_ref()[field::SENDER_HW]);
        MacAddr(mac)
    }

    pub fn sender_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(read_u32(self.buffer.as_ref(), field::SENDER_IP))
    }

    pub fn target_hw(&self) -> MacAddr {
        let mut mac = [0; 6];
        mac.copy_from_slice(&self.buffer.as_ref()[field::TARGET_HW]);
        MacAddr(mac)
    }

    pub fn target_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(read_u32(self.buffer.as_ref(), field::TARGET_IP))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    pub fn set_operation(&mut self, op: u16) {
        write_u16(self.buffer.as_mut(), field::OPERATION, op);
    }

    pub fn set_sender_hw(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::SENDER_HW].copy_from_slice(&mac.0);
    }

    pub fn set_sender_ip(&mut self, ip: Ipv4Addr) {
        write_u32(self.buffer.as_mut(), field::SENDER_IP, u32::from(ip));
    }

    pub fn set_target_hw(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::TARGET_HW].copy_from_slice(&mac.0);
    }

    pub fn set_target_ip(&mut self, ip: Ipv4Addr) {
        write_u32(self.buffer.as_mut(), field::TARGET_IP, u32::from(ip));
    }
}

/// The content of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRepr {
    pub op: u16,
    pub sender_hw: MacAddr,
    pub sender_ip: Ipv4Addr,
    pub target_hw: MacAddr,
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    pub fn parse<T: AsRef<[u8]>>(packet: &ArpPacket<T>) -> Self {
        ArpRepr {
            op: packet.operation(),
            sender_hw: packet.sender_hw(),
            sender_ip: packet.sender_ip(),
            target_hw: packet.target_hw(),
            target_ip: packet.target_ip(),
        }
    }

    /// Writes the 28-byte packet, fixed fields included, at the front of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        let bytes = buf
            .get_mut(..ARP_LEN)
            .ok_or(WireError::Truncated { layer: LAYER })?;
        write_u16(bytes, field::HTYPE, HTYPE_ETHERNET);
        write_u16(bytes, field::PTYPE, ETHERTYPE_IPV4);
        bytes[field::HLEN] = 6;
        bytes[field::PLEN] = 4;
        let mut packet = ArpPacket::new_unchecked(bytes);
        packet.set_operation(self.op);
        packet.set_sender_hw(self.sender_hw);
        packet.set_sender_ip(self.sender_ip);
        packet.set_target_hw(self.target_hw);
        packet.set_target_ip(self.target_ip);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "Who has 10.244.1.5? Tell 10.244.1.1", from 52:54:00:12:34:56.
    const REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // eth/ipv4, request
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x0a, 0xf4, 0x01, 0x01, // sender
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0xf4, 0x01, 0x05, // target
    ];

    #[test]
    fn deconstruct() {
        let arp = ArpPacket::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(arp.operation(), ARP_REQUEST);
        assert_eq!(
            arp.sender_hw(),
            MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56])
        );
        assert_eq!(arp.sender_ip(), Ipv4Addr::new(10, 244, 1, 1));
        assert_eq!(arp.target_hw(), MacAddr([0; 6]));
        assert_eq!(arp.target_ip(), Ipv4Addr::new(10, 244, 1, 5));
    }

    #[test]
    fn emit_reproduces_literal() {
        let repr = ArpRepr::parse(&ArpPacket::new_checked(&REQUEST[..]).unwrap());
        let mut buf = [0xee; 30];
        repr.emit(&mut buf).unwrap();
        assert_eq!(&buf[..28], &REQUEST[..]);
        assert_eq!(&buf[28..], &[0xee, 0xee]);
    }

    #[test]
    fn turn_request_into_reply_in_place() {
        let mut bytes = REQUEST;
        let mut arp = ArpPacket::new_checked(&mut bytes[..]).unwrap();
        let mac = MacAddr([0x02, 0, 0, 0, 0, 0x05]);
        arp.set_operation(ARP_REPLY);
        arp.set_target_hw(arp.sender_hw());
        arp.set_target_ip(arp.sender_ip());
        arp.set_sender_hw(mac);
        arp.set_sender_ip(Ipv4Addr::new(10, 244, 1, 5));
        assert_eq!(&bytes[6..8], &[0x00, 0x02]);
        assert_eq!(&bytes[8..18], &[0x02, 0, 0, 0, 0, 5, 10, 244, 1, 5]);
        assert_eq!(&bytes[18..28], &REQUEST[8..18]);
    }

    #[test]
    fn rejects_other_arp_kinds() {
        let malformed = |offset: usize, value: u8, what| {
            let mut bytes = REQUEST;
            bytes[offset] = value;
            assert_eq!(
                ArpPacket::new_checked(&bytes[..]).unwrap_err(),
                WireError::Malformed { layer: "arp", what }
            );
        };
        malformed(1, 6, "hardware type"); // IEEE 802
        malformed(2, 0x86, "protocol type");
        malformed(4, 8, "hardware address length");
        malformed(5, 16, "protocol address length");
    }
}
