//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! A *sum* (`u32`) is an unfolded ones'-complement accumulation of big-endian 16-bit words; sums
//! of disjoint pieces are joined with [`combine`], and [`finish`] turns a sum into the value stored
//! in a checksum field. All values are host order. Arithmetic is modulo 0xffff, so a sum may be
//! carried in any width as long as carries are folded back in, never dropped.
//!
//! Incremental updates use RFC 1624 equation 3, `HC' = ~(~HC + ~m + m')`, which (unlike equation 2)
//! never turns a correct non-zero result into -0 (0xffff). It yields exactly what a full recompute
//! of the rewritten data yields, as long as that data is not all zero (it never is: IPv4 has the
//! version nibble, the UDP/TCP pseudo header the protocol number). UDP's own rule, "a computed 0
//! is sent as 0xffff and a 0 field means no checksum", is applied by
//! [`UdpPacket::update_checksum`](super::udp::UdpPacket::update_checksum), not here.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Ones'-complement sum of `data` as big-endian 16-bit words; an odd trailing byte is padded with
/// a zero byte. The result is not folded.
pub fn sum(data: &[u8]) -> u32 {
    // 32-bit big-endian words are congruent to the sum of their two 16-bit halves (2^16 = 1 mod
    // 0xffff), and a u64 cannot overflow on any slice that fits in memory.
    let mut acc: u64 = 0;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let mut rest = words.remainder().chunks_exact(2);
    for w in &mut rest {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = rest.remainder() {
        acc += u64::from(u16::from_be_bytes([*last, 0]));
    }
    // Fold to 32 bits twice: the first fold leaves at most one carry, the second absorbs it.
    let once = (acc & 0xffff_ffff) + (acc >> 32);
    ((once & 0xffff_ffff) + (once >> 32)) as u32
}

/// Ones'-complement addition of two partial sums.
pub fn combine(a: u32, b: u32) -> u32 {
    let (total, carry) = a.overflowing_add(b);
    // With a carry, `total` is at most u32::MAX - 1, so adding it back cannot overflow.
    total + u32::from(carry)
}

/// Folds the carries of `sum` into 16 bits. Not complemented.
pub fn fold(sum: u32) -> u16 {
    let once = (sum & 0xffff) + (sum >> 16);
    ((once & 0xffff) + (once >> 16)) as u16
}

/// The value to store in a checksum field for data whose sum (field zeroed) is `sum`.
pub fn finish(sum: u32) -> u16 {
    !fold(sum)
}

/// Sum of the IPv4 pseudo header that UDP and TCP checksums cover.
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4_len: u16) -> u32 {
    let [s0, s1, s2, s3] = src.octets();
    let [d0, d1, d2, d3] = dst.octets();
    sum(&[s0, s1, s2, s3, d0, d1, d2, d3, 0, proto]) + u32::from(l4_len) // small enough that no carry is lost
}

/// Sum of the IPv6 pseudo header (RFC 8200 section 8.1) for upper-layer checksums.
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, len: u32) -> u32 {
    let addrs = combine(sum(&src.octets()), sum(&dst.octets()));
    combine(addrs, sum(&len.to_be_bytes()) + u32::from(next_header))
}

/// Updates a stored checksum field after a 16-bit word of the covered data changed from `old` to
/// `new` (RFC 1624 equation 3).
pub fn update_u16(checksum: u16, old: u16, new: u16) -> u16 {
    let sum = u32::from(!checksum) + u32::from(!old) + u32::from(new);
    !fold(sum)
}

/// Updates a stored checksum field after a 32-bit (word-aligned) value changed from `old` to `new`.
pub fn update_u32(checksum: u16, old: u32, new: u32) -> u16 {
    let sum = u32::from(!checksum)
        + u32::from(!(old >> 16) as u16)
        + u32::from(!(old as u16))
        + (new >> 16)
        + (new & 0xffff);
    !fold(sum)
}

/// Updates a stored checksum field after an IPv4 address it covers changed (the IPv4 header
/// checksum, or a UDP/TCP checksum through the pseudo header).
pub fn update_addr(checksum: u16, old: Ipv4Addr, new: Ipv4Addr) -> u16 {
    update_u32(checksum, u32::from(old), u32::from(new))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 1071 section 3 example: words 0x0001 0xf203 0xf4f5 0xf6f7 sum to 0xddf2 (folded).
    #[test]
    fn rfc1071_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data)), 0xddf2);
        assert_eq!(finish(sum(&data)), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
        assert_eq!(sum(&[0xab]), 0xab00);
        assert_eq!(sum(&[]), 0);
    }

    #[test]
    fn combine_matches_sum_of_concatenation() {
        let a = [0xff; 6];
        let b = [0xfe, 0x01, 0x80];
        let whole: Vec<u8> = a.iter().chain(b.iter()).copied().collect();
        assert_eq!(fold(combine(sum(&a), sum(&b))), fold(sum(&whole)));
        assert_eq!(combine(u32::MAX, u32::MAX), u32::MAX);
    }

    #[test]
    fn long_input_keeps_carries() {
        let data = vec![0xff; 200_000];
        // Every word is 0xffff, i.e. -0: the folded sum stays 0xffff.
        assert_eq!(fold(sum(&data)), 0xffff);
    }

    /// RFC 1624 section 4 example: HC = 0xdd2f, m = 0x5555 -> m' = 0x3285 gives HC' = 0x0000.
    #[test]
    fn rfc1624_example() {
        assert_eq!(update_u16(0xdd2f, 0x5555, 0x3285), 0x0000);
    }

    #[test]
    fn pseudo_header_v4_by_hand() {
        let s = pseudo_header_v4(
            Ipv4Addr::new(192, 168, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            17,
            20,
        );
        let expected = 0xc0a8 + 0x0001 + 0x0a00 + 0x0002 + 17 + 20;
        assert_eq!(fold(s), expected);
    }

    #[test]
    fn pseudo_header_v6_by_hand() {
        let src: Ipv6Addr = "fe80::1".parse().unwrap();
        let dst: Ipv6Addr = "ff02::2".parse().unwrap();
        let s = pseudo_header_v6(src, dst, 58, 0x0001_0010);
        let expected: u32 = 0xfe80 + 0x0001 + 0xff02 + 0x0002 + 0x0001 + 0x0010 + 58;
        assert_eq!(fold(s), fold(expected));
    }
}
