//! Ethernet II frames, optionally with one 802.1Q VLAN tag.
//!
//! Invariant after `EthernetFrame::new_checked`: the buffer holds the whole header, 14 bytes, or
//! 18 when the outer EtherType is 0x8100. `ethertype()` and `set_ethertype()` always address the
//! *effective* EtherType (the one after the tag), so callers never care whether a tag is there.
//! Stacked tags (QinQ, 0x88a8) are not walked: they surface as an unknown EtherType.

use core::fmt;

use super::{Field, Result, WireError, read_u16, write_u16};

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// Tag protocol identifier of an 802.1Q VLAN tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// Length of an untagged Ethernet header.
pub const HEADER_LEN: usize = 14;
/// Length of the header with one 802.1Q tag.
const TAGGED_HEADER_LEN: usize = 18;

const LAYER: &str = "ethernet";

/// A 48-bit Ethernet MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// Group bit set (broadcast included).
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// Group bit clear.
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

mod field {
    use crate::wire::Field;

    pub const DESTINATION: Field = 0..6;
    pub const SOURCE: Field = 6..12;
    pub const ETHERTYPE: Field = 12..14;
    pub const VLAN_TCI: Field = 14..16;
    pub const INNER_ETHERTYPE: Field = 16..18;
}

/// A view of an Ethernet frame.
#[derive(Debug, Clone)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buffer` without checking it; accessors may panic if it is too short.
    pub fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wraps `buffer` after checking that the whole header (tag included) is there.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let data = buffer.as_ref();
        if data.len() < HEADER_LEN {
            return Err(WireError::Truncated { layer: LAYER });
        }
        if read_u16(data, field::ETHERTYPE) == ETHERTYPE_VLAN && data.len() < TAGGED_HEADER_LEN {
            return Err(WireError::Truncated { layer: LAYER });
        }
        Ok(EthernetFrame { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn dst_addr(&self) -> MacAddr {
        mac_at(self.buffer.as_ref(), field::DESTINATION)
    }

    pub fn src_addr(&self) -> MacAddr {
        mac_at(self.buffer.as_ref(), field::SOURCE)
    }

    fn is_tagged(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::ETHERTYPE) == ETHERTYPE_VLAN
    }

    fn ethertype_field(&self) -> Field {
        if self.is_tagged() {
            field::INNER_ETHERTYPE
        } else {
            field::ETHERTYPE
        }
    }

    /// The effective EtherType: the one after the 802.1Q tag when there is one.
    pub fn ethertype(&self) -> u16 {
        read_u16(self.buffer.as_ref(), self.ethertype_field())
    }

    /// The 12-bit VLAN identifier of the 802.1Q tag, if the frame has one.
    pub fn vlan_id(&self) -> Option<u16> {
        self.is_tagged()
            .then(|| read_u16(self.buffer.as_ref(), field::VLAN_TCI) & 0x0fff)
    }

    /// 14, or 18 with an 802.1Q tag.
    pub fn header_len(&self) -> usize {
        if self.is_tagged() {
            TAGGED_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }

    /// Everything after the header (Ethernet padding included: the L3 length says what counts).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    pub fn set_dst_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&addr.0);
    }

    pub fn set_src_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&addr.0);
    }

    /// Sets the effective EtherType (after the tag when there is one).
    pub fn set_ethertype(&mut self, ethertype: u16) {
        let at = self.ethertype_field();
        write_u16(self.buffer.as_mut(), at, ethertype);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }
}

fn mac_at(data: &[u8], field: Field) -> MacAddr {
    let mut mac = [0; 6];
    mac.copy_from_slice(&data[field]);
    MacAddr(mac)
}

/// An untagged Ethernet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetRepr {
    pub src: MacAddr,
    pub dst: MacAddr,
    /// The effective EtherType.
    pub ethertype: u16,
}

impl EthernetRepr {
    /// Reads the addresses and the effective EtherType (a VLAN tag is dropped).
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Self {
        EthernetRepr {
            src: frame.src_addr(),
            dst: frame.dst_addr(),
            ethertype: frame.ethertype(),
        }
    }

    /// Writes an untagged 14-byte header at the front of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        let header = buf
            .get_mut(..HEADER_LEN)
            .ok_or(WireError::Truncated { layer: LAYER })?;
        // Written field by field: `set_ethertype` would read whatever stale bytes `buf` holds
        // to look for a tag.
        header[field::DESTINATION].copy_from_slice(&self.dst.0);
        header[field::SOURCE].copy_from_slice(&self.src.0);
        write_u16(header, field::ETHERTYPE, self.ethertype);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ARP request broadcast from 52:54:00:12:34:56, with 802.1Q tag VLAN 100 (PCP 5).
    const TAGGED: [u8; 22] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // src
        0x81, 0x00, 0xa0, 0x64, // 802.1Q, PCP 5, VID 100
        0x08, 0x06, // ARP
        0xde, 0xad, 0xbe, 0xef,
    ];

    #[test]
    fn deconstruct_tagged() {
        let frame = EthernetFrame::new_checked(&TAGGED[..]).unwrap();
        assert_eq!(frame.dst_addr(), MacAddr::BROADCAST);
        assert_eq!(
            frame.src_addr(),
            MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56])
        );
        assert_eq!(frame.ethertype(), 0x0806);
        assert_eq!(frame.vlan_id(), Some(100));
        assert_eq!(frame.header_len(), 18);
        assert_eq!(frame.payload(), &[0xde, 0xad, 0xbe, 0xef]);
    }

    #[test]
    fn set_ethertype_targets_the_inner_type_when_tagged() {
        let mut bytes = TAGGED;
        let mut frame = EthernetFrame::new_checked(&mut bytes[..]).unwrap();
        frame.set_ethertype(0x0800);
        frame.payload_mut()[0] = 0x45;
        assert_eq!(&bytes[12..19], &[0x81, 0x00, 0xa0, 0x64, 0x08, 0x00, 0x45]);
    }

    #[test]
    fn untagged_frame() {
        let mut bytes = [0u8; 15];
        bytes[12..14].copy_from_slice(&[0x86, 0xdd]);
        let frame = EthernetFrame::new_checked(&bytes[..]).unwrap();
        assert_eq!(frame.ethertype(), ETHERTYPE_IPV6);
        assert_eq!(frame.vlan_id(), None);
        assert_eq!(frame.header_len(), 14);
        assert_eq!(frame.payload().len(), 1);
    }

    #[test]
    fn tag_must_fit() {
        assert_eq!(
            EthernetFrame::new_checked(&TAGGED[..17]).unwrap_err(),
            WireError::Truncated { layer: "ethernet" }
        );
        assert!(EthernetFrame::new_checked(&TAGGED[..18]).is_ok());
    }

    #[test]
    fn emit_writes_untagged_header() {
        let repr = EthernetRepr {
            src: MacAddr([2, 0, 0, 0, 0, 1]),
            dst: MacAddr([2, 0, 0, 0, 0, 2]),
            ethertype: ETHERTYPE_IPV4,
        };
        let mut buf = [0xaa; 16];
        buf[12..14].copy_from_slice(&[0x81, 0x00]); // a stale tag must not move the EtherType
        repr.emit(&mut buf).unwrap();
        assert_eq!(
            buf,
            [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00, 0xaa, 0xaa]
        );
        assert!(repr.emit(&mut [0; 13]).is_err());
    }

    #[test]
    fn mac_classes_and_display() {
        let mac = MacAddr([0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb]);
        assert!(mac.is_multicast() && !mac.is_unicast() && !mac.is_broadcast());
        assert!(MacAddr::BROADCAST.is_broadcast() && MacAddr::BROADCAST.is_multicast());
        assert!(MacAddr([0x52, 0, 0, 0, 0, 1]).is_unicast());
        assert_eq!(mac.to_string(), "01:00:5e:00:00:fb");
    }
}
