//! The IPv6 extension-header chain (RFC 8200 section 4): walks hop-by-hop, routing, fragment and
//! destination-options headers to the upper-layer header.
//!
//! Invariants:
//! - `walk` reads only inside the slice it is given (the IPv6 packet, fixed header included,
//!   trimmed to its payload length) and never panics, whatever the bytes are.
//! - A chain is bounded: at most [`MAX_HEADERS`] extension headers and [`MAX_CHAIN_BYTES`] bytes
//!   of them; longer chains are refused (`TooLong`) rather than walked, so the cost per packet is
//!   bounded and a middlebox-evasion chain (RFC 7112) never reaches the flow key.
//! - Hop-by-hop options are accepted only right after the fixed header (RFC 8200 4.1).
//! - Anything that is not one of the four walked headers ends the walk: it is the upper layer
//!   (TCP, UDP, ICMPv6, SCTP, or something the caller refuses: ESP, AH, mobility, ...).

use super::ipv6::HEADER_LEN;

pub const HOP_BY_HOP: u8 = 0;
pub const ROUTING: u8 = 43;
pub const FRAGMENT: u8 = 44;
pub const DEST_OPTIONS: u8 = 60;
/// "No next header": the packet ends after the chain.
pub const NO_NEXT_HEADER: u8 = 59;

/// Most extension headers a packet may carry.
pub const MAX_HEADERS: usize = 6;
/// Most bytes the extension headers together may take.
pub const MAX_CHAIN_BYTES: usize = 512;

/// Length of the fragment header.
const FRAGMENT_LEN: usize = 8;

/// What a fragment header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragment {
    /// Offset of this fragment's data in 8-byte units.
    pub offset: u16,
    /// More fragments follow.
    pub more: bool,
    pub ident: u32,
}

impl Fragment {
    /// An atomic fragment (offset 0, no more fragments, RFC 6946): the whole datagram.
    pub fn is_atomic(&self) -> bool {
        self.offset == 0 && !self.more
    }
}

/// The walked chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chain {
    /// The upper-layer protocol number (or [`NO_NEXT_HEADER`]).
    pub proto: u8,
    /// Offset of the upper-layer header from the start of the IPv6 header.
    pub l4: usize,
    /// The fragment header, if there was one.
    pub fragment: Option<Fragment>,
    /// The largest "segments left" of the routing headers (0 if none): non-zero asks this hop
    /// to source-route the packet.
    pub segments_left: u8,
}

/// Why a chain was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainError {
    /// A header (or the length it announces) runs past the packet.
    Truncated,
    /// More than [`MAX_HEADERS`] headers or [`MAX_CHAIN_BYTES`] bytes of them.
    TooLong,
    /// Hop-by-hop options anywhere but first.
    HopByHopNotFirst,
}

/// Walks the chain of `packet` (the IPv6 packet from its fixed header on).
pub fn walk(packet: &[u8], first: u8) -> Result<Chain, ChainError> {
    let mut proto = first;
    let mut at = HEADER_LEN;
    let mut fragment = None;
    let mut segments_left = 0;
    let mut count = 0;
    loop {
        let len = match proto {
            HOP_BY_HOP | ROUTING | DEST_OPTIONS => {
                if proto == HOP_BY_HOP && count != 0 {
                    return Err(ChainError::HopByHopNotFirst);
                }
                let hdr = packet.get(at..at + 2).ok_or(ChainError::Truncated)?;
                let len = (usize::from(hdr[1]) + 1) * 8;
                if proto == ROUTING {
                    segments_left =
                        segments_left.max(*packet.get(at + 3).ok_or(ChainError::Truncated)?);
                }
                len
            }
            FRAGMENT => {
                let hdr = packet
                    .get(at..at + FRAGMENT_LEN)
                    .ok_or(ChainError::Truncated)?;
                let word = u16::from_be_bytes([hdr[2], hdr[3]]);
                fragment = Some(Fragment {
                    offset: word >> 3,
                    more: word & 1 == 1,
                    ident: u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]),
                });
                FRAGMENT_LEN
            }
            _ => {
                return Ok(Chain {
                    proto,
                    l4: at,
                    fragment,
                    segments_left,
                });
            }
        };
        count += 1;
        if count > MAX_HEADERS || at + len - HEADER_LEN > MAX_CHAIN_BYTES {
            return Err(ChainError::TooLong);
        }
        if at + len > packet.len() {
            return Err(ChainError::Truncated);
        }
        proto = packet[at];
        at += len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed header (only its length matters to `walk`) followed by `ext`.
    fn packet(ext: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; HEADER_LEN];
        p.extend_from_slice(ext);
        p
    }

    #[test]
    fn no_extension_headers() {
        let p = packet(&[0; 20]);
        let c = walk(&p, 6).unwrap();
        assert_eq!((c.proto, c.l4, c.fragment), (6, 40, None));
    }

    #[test]
    fn walks_hop_by_hop_dest_options_routing_and_fragment() {
        let mut ext = vec![DEST_OPTIONS, 0, 1, 4, 0, 0, 0, 0]; // hop-by-hop, 8 bytes
        ext.extend_from_slice(&[ROUTING, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // dest opts, 16
        ext.extend_from_slice(&[FRAGMENT, 0, 4, 2, 0, 0, 0, 0]); // routing, segments left 2
        ext.extend_from_slice(&[17, 0, 0x00, 0x09, 0, 0, 0x12, 0x34]); // fragment: offset 1, more
        ext.extend_from_slice(&[0; 8]);
        let p = packet(&ext);
        let c = walk(&p, HOP_BY_HOP).unwrap();
        assert_eq!(c.proto, 17);
        assert_eq!(c.l4, 40 + 8 + 16 + 8 + 8);
        assert_eq!(c.segments_left, 2);
        assert_eq!(
            c.fragment,
            Some(Fragment {
                offset: 1,
                more: true,
                ident: 0x1234
            })
        );
        assert!(!c.fragment.unwrap().is_atomic());
    }

    #[test]
    fn refuses_hop_by_hop_after_another_header() {
        let p = packet(&[HOP_BY_HOP, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(walk(&p, DEST_OPTIONS), Err(ChainError::HopByHopNotFirst));
    }

    #[test]
    fn refuses_truncated_headers() {
        let p = packet(&[6, 1, 0, 0, 0, 0, 0, 0]); // announces 16 bytes, has 8
        assert_eq!(walk(&p, DEST_OPTIONS), Err(ChainError::Truncated));
        let p = packet(&[6]);
        assert_eq!(walk(&p, DEST_OPTIONS), Err(ChainError::Truncated));
        let p = packet(&[6, 0, 0]);
        assert_eq!(walk(&p, FRAGMENT), Err(ChainError::Truncated));
    }

    #[test]
    fn refuses_long_chains() {
        let mut ext = Vec::new();
        for _ in 0..MAX_HEADERS {
            ext.extend_from_slice(&[DEST_OPTIONS, 0, 0, 0, 0, 0, 0, 0]);
        }
        ext.extend_from_slice(&[0; 8]);
        let p = packet(&ext);
        assert_eq!(walk(&p, DEST_OPTIONS), Err(ChainError::TooLong));
        // One header announcing more than the byte budget.
        let mut ext = vec![6, 70];
        ext.resize(8 * 71 + 8, 0);
        let p = packet(&ext);
        assert_eq!(walk(&p, DEST_OPTIONS), Err(ChainError::TooLong));
    }
}
