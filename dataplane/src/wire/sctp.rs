//! SCTP (RFC 9260) common header view: ports, verification tag, the CRC32c checksum, and the
//! type of the first chunk (what conntrack steps on, as the kernel's nf_conntrack_proto_sctp
//! does with every chunk).
//!
//! The checksum is CRC32c over the whole SCTP packet with the checksum field zero, stored
//! little-endian (as Linux's `sctp_compute_cksum`). It covers no pseudo-header: rewriting
//! addresses leaves it alone, rewriting ports changes it. `set_ports` keeps whatever error the
//! packet had (CRC is linear: new = stored ^ crc(old) ^ crc(new)), so NAT never turns a damaged
//! packet into a valid one.

use super::{Result, WireError};

pub const HEADER_LEN: usize = 12;
/// Common header plus one chunk header: the least a packet that means anything carries.
pub const MIN_LEN: usize = HEADER_LEN + 4;
const LAYER: &str = "sctp";

/// Chunk types (RFC 9260 §3.2) that conntrack distinguishes.
pub mod chunk {
    pub const DATA: u8 = 0;
    pub const INIT: u8 = 1;
    pub const INIT_ACK: u8 = 2;
    pub const ABORT: u8 = 6;
    pub const SHUTDOWN: u8 = 7;
    pub const SHUTDOWN_ACK: u8 = 8;
    pub const COOKIE_ECHO: u8 = 10;
    pub const COOKIE_ACK: u8 = 11;
    pub const SHUTDOWN_COMPLETE: u8 = 14;
}

mod field {
    use core::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const VTAG: Range<usize> = 4..8;
    pub const CHECKSUM: Range<usize> = 8..12;
    pub const FIRST_CHUNK: usize = 12;
}

/// A view over an SCTP packet (the whole IP payload: the checksum covers all of it).
#[derive(Debug)]
pub struct SctpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

fn u16_at(b: &[u8], r: core::ops::Range<usize>) -> u16 {
    u16::from_be_bytes([b[r.start], b[r.start + 1]])
}

impl<T: AsRef<[u8]>> SctpPacket<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Checks that the common header and one chunk header are there.
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < MIN_LEN {
            return Err(WireError::Truncated { layer: LAYER });
        }
        Ok(Self { buffer })
    }

    pub fn src_port(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::SRC_PORT)
    }

    pub fn dst_port(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::DST_PORT)
    }

    pub fn verification_tag(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VTAG];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    pub fn first_chunk_type(&self) -> u8 {
        self.buffer.as_ref()[field::FIRST_CHUNK]
    }

    fn stored_checksum(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::CHECKSUM];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    /// CRC32c of the packet as if its checksum field were zero.
    fn computed_checksum(&self) -> u32 {
        let b = self.buffer.as_ref();
        let head = crc32c::crc32c_append(0, &b[..field::CHECKSUM.start]);
        let zeros = crc32c::crc32c_append(head, &[0; 4]);
        crc32c::crc32c_append(zeros, &b[field::CHECKSUM.end..])
    }

    pub fn verify_checksum(&self) -> bool {
        self.stored_checksum() == self.computed_checksum()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> SctpPacket<T> {
    fn set_stored_checksum(&mut self, c: u32) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&c.to_le_bytes());
    }

    /// Computes the checksum from scratch (a packet the sender left unfinished).
    pub fn fill_checksum(&mut self) {
        let c = self.computed_checksum();
        self.set_stored_checksum(c);
    }

    /// Rewrites the ports and updates the checksum, keeping any error it had (module doc).
    pub fn set_ports(&mut self, sport: u16, dport: u16) {
        if (sport, dport) == (self.src_port(), self.dst_port()) {
            return;
        }
        let before = self.computed_checksum();
        let stored = self.stored_checksum();
        let b = self.buffer.as_mut();
        b[field::SRC_PORT].copy_from_slice(&sport.to_be_bytes());
        b[field::DST_PORT].copy_from_slice(&dport.to_be_bytes());
        let after = self.computed_checksum();
        self.set_stored_checksum(stored ^ before ^ after);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn init_packet() -> Vec<u8> {
        let mut p = vec![0u8; 32];
        p[0..2].copy_from_slice(&40000u16.to_be_bytes());
        p[2..4].copy_from_slice(&9999u16.to_be_bytes());
        p[12] = chunk::INIT;
        p[14..16].copy_from_slice(&20u16.to_be_bytes());
        p[16..20].copy_from_slice(&0xdead_beefu32.to_be_bytes());
        SctpPacket::new_unchecked(&mut p[..]).fill_checksum();
        p
    }

    #[test]
    fn checksum_is_the_rfc_crc32c_little_endian() {
        // RFC 3720 B.4 check value: CRC32c of 32 zero bytes is 0x8A9136AA.
        assert_eq!(crc32c::crc32c(&[0; 32]), 0x8a91_36aa);
        let p = init_packet();
        let mut zeroed = p.clone();
        zeroed[8..12].fill(0);
        assert_eq!(&p[8..12], &crc32c::crc32c(&zeroed).to_le_bytes());
        assert!(
            SctpPacket::new_checked(&p[..])
                .expect("len")
                .verify_checksum()
        );
    }

    #[test]
    fn set_ports_keeps_a_good_checksum_good_and_a_bad_one_bad() {
        let mut p = init_packet();
        let mut s = SctpPacket::new_checked(&mut p[..]).expect("len");
        s.set_ports(61000, 8080);
        assert_eq!((s.src_port(), s.dst_port()), (61000, 8080));
        assert!(s.verify_checksum());
        let mut bad = init_packet();
        bad[25] ^= 0x40;
        let mut s = SctpPacket::new_checked(&mut bad[..]).expect("len");
        s.set_ports(61000, 8080);
        assert!(!s.verify_checksum(), "NAT must not repair a damaged packet");
    }

    #[test]
    fn short_packets_are_refused() {
        assert!(SctpPacket::new_checked(&[0u8; MIN_LEN - 1][..]).is_err());
    }
}
