//! VXLAN headers (RFC 7348): 8 bytes after the outer UDP header, then the inner Ethernet frame.
//!
//! Invariants after `VxlanPacket::new_checked`: the 8-byte header is in the buffer and its I flag
//! (a valid VNI) is set. Other flag and reserved bits are ignored on receipt, as RFC 7348 asks.

use super::{Result, WireError, ethernet, ipv4, ipv6, read_u32, udp, write_u32};

/// Length of the VXLAN header.
pub const HEADER_LEN: usize = 8;
/// Bytes VXLAN adds in front of an inner frame over IPv4: outer Ethernet, IPv4, UDP and VXLAN
/// headers (so pod MTU = underlay MTU - 50).
pub const OVERHEAD_V4: usize =
    ethernet::HEADER_LEN + ipv4::HEADER_LEN + udp::HEADER_LEN + HEADER_LEN;
/// Bytes VXLAN adds over IPv6: outer Ethernet, IPv6 (no extension headers), UDP and VXLAN
/// headers (pod MTU = underlay MTU - 70).
pub const OVERHEAD_V6: usize =
    ethernet::HEADER_LEN + ipv6::HEADER_LEN + udp::HEADER_LEN + HEADER_LEN;
/// UDP port of the Linux kernel and flannel.
pub const DEFAULT_PORT: u16 = 8472;
/// UDP port assigned by IANA.
pub const IANA_PORT: u16 = 4789;

const LAYER: &str = "vxlan";
const FLAG_VNI_VALID: u8 = 0x08;
const VNI_MAX: u32 = 0x00ff_ffff;

mod field {
    use crate::wire::Field;

    pub const FLAGS: usize = 0;
    /// Flags byte plus 24 reserved bits.
    pub const FLAGS_WORD: Field = 0..4;
    /// VNI in the top 24 bits, 8 reserved bits below.
    pub const VNI_WORD: Field = 4..8;
}

/// A view of a VXLAN packet.
#[derive(Debug, Clone)]
pub struct VxlanPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VxlanPacket<T> {
    /// Wraps `buffer` without checking it; accessors may panic if it is too short.
    pub fn new_unchecked(buffer: T) -> Self {
        VxlanPacket { buffer }
    }

    /// Wraps `buffer` after checking the length and the I flag.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let data = buffer.as_ref();
        if data.len() < HEADER_LEN {
            return Err(WireError::Truncated { layer: LAYER });
        }
        if data[field::FLAGS] & FLAG_VNI_VALID == 0 {
            return Err(WireError::Malformed {
                layer: LAYER,
                what: "I flag",
            });
        }
        Ok(VxlanPacket { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The 24-bit VXLAN network identifier.
    pub fn vni(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::VNI_WORD) >> 8
    }

    /// The inner Ethernet frame.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VxlanPacket<T> {
    /// Writes the low 24 bits of `vni`; the reserved byte after it is cleared.
    pub fn set_vni(&mut self, vni: u32) {
        write_u32(self.buffer.as_mut(), field::VNI_WORD, (vni & VNI_MAX) << 8);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// A VXLAN header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanRepr {
    /// 24-bit VNI.
    pub vni: u32,
}

impl VxlanRepr {
    pub fn parse<T: AsRef<[u8]>>(packet: &VxlanPacket<T>) -> Self {
        VxlanRepr { vni: packet.vni() }
    }

    /// Writes the header (I flag set, reserved bits zero) at the front of `buf`; a VNI wider
    /// than 24 bits is `Malformed`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        let header = buf
            .get_mut(..HEADER_LEN)
            .ok_or(WireError::Truncated { layer: LAYER })?;
        if self.vni > VNI_MAX {
            return Err(WireError::Malformed {
                layer: LAYER,
                what: "vni",
            });
        }
        write_u32(header, field::FLAGS_WORD, u32::from(FLAG_VNI_VALID) << 24);
        VxlanPacket::new_unchecked(header).set_vni(self.vni);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// flannel's header for VNI 1, followed by the start of an inner frame.
    const PACKET: [u8; 10] = [0x08, 0, 0, 0, 0, 0, 0x01, 0, 0xaa, 0xbb];

    #[test]
    fn deconstruct() {
        let vxlan = VxlanPacket::new_checked(&PACKET[..]).unwrap();
        assert_eq!(vxlan.vni(), 1);
        assert_eq!(vxlan.payload(), &[0xaa, 0xbb]);
        let mut bytes = PACKET;
        bytes[4..8].copy_from_slice(&[0xab, 0xcd, 0xef, 0x77]); // reserved byte ignored
        assert_eq!(
            VxlanPacket::new_checked(&bytes[..]).unwrap().vni(),
            0xab_cdef
        );
    }

    #[test]
    fn emit_matches_literal() {
        let mut buf = [0xff; 10];
        VxlanRepr { vni: 1 }.emit(&mut buf).unwrap();
        assert_eq!(&buf[..8], &PACKET[..8]);
        assert!(VxlanRepr { vni: 1 << 24 }.emit(&mut buf).is_err());
        assert!(VxlanRepr { vni: 1 }.emit(&mut buf[..7]).is_err());
    }

    #[test]
    fn set_vni_and_payload_mut() {
        let mut bytes = PACKET;
        let mut vxlan = VxlanPacket::new_checked(&mut bytes[..]).unwrap();
        vxlan.set_vni(0x12_3456);
        vxlan.payload_mut()[0] = 0x01;
        assert_eq!(&bytes[4..9], &[0x12, 0x34, 0x56, 0x00, 0x01]);
    }

    #[test]
    fn requires_i_flag() {
        let mut bytes = PACKET;
        bytes[0] = 0x00;
        assert_eq!(
            VxlanPacket::new_checked(&bytes[..]).unwrap_err(),
            WireError::Malformed {
                layer: "vxlan",
                what: "I flag"
            }
        );
        assert!(VxlanPacket::new_checked(&PACKET[..7]).is_err());
    }

    #[test]
    fn overhead_is_fifty_bytes() {
        assert_eq!(OVERHEAD_V4, 50);
        assert_eq!(OVERHEAD_V6, 70);
    }
}
