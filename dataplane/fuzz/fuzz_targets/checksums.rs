//! RFC 1071 checksums for the fuzz targets, written independently of the dataplane's, so that
//! mutated frames can be made to pass checksum checks and transmitted frames can be checked.
#![allow(dead_code)]

use std::net::Ipv4Addr;

pub const VXLAN_PORT: u16 = 8472;

/// Ones-complement checksum over `chunks` (an odd chunk is padded with a zero byte).
pub fn sum(chunks: &[&[u8]]) -> u16 {
    let mut acc: u32 = 0;
    for c in chunks {
        let mut it = c.chunks_exact(2);
        for w in &mut it {
            acc += u32::from(u16::from_be_bytes([w[0], w[1]]));
        }
        if let [b] = it.remainder() {
            acc += u32::from(*b) << 8;
        }
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

pub fn pseudo(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> [u8; 12] {
    let mut p = [0u8; 12];
    p[..4].copy_from_slice(&src.octets());
    p[4..8].copy_from_slice(&dst.octets());
    p[9] = proto;
    p[10..12].copy_from_slice(&(len as u16).to_be_bytes());
    p
}

/// Writes the L4 checksum of `l4` (carried in IPv4 `src` -> `dst`, protocol `proto`).
pub fn fix_l4(l4: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr, proto: u8) {
    let at = match proto {
        6 if l4.len() >= 20 => 16,
        17 if l4.len() >= 8 => 6,
        1 if l4.len() >= 4 => 2,
        _ => return,
    };
    l4[at..at + 2].fill(0);
    let c = if proto == 1 {
        sum(&[l4])
    } else {
        sum(&[&pseudo(src, dst, proto, l4.len()), l4])
    };
    let c = if proto == 17 && c == 0 { 0xffff } else { c };
    l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

/// Fixes the header checksum (and, with `l4`, the L4 checksum) of the IPv4 packet that
/// starts `ip`, as far as its lengths are in range. Returns (header length, total length,
/// protocol) when they are.
pub fn fix_ipv4(ip: &mut [u8], l4: bool) -> Option<(usize, usize, u8)> {
    if ip.first()? >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    if ihl < 20 || ip.len() < ihl {
        return None;
    }
    ip[10..12].fill(0);
    let c = sum(&[&ip[..ihl]]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if total < ihl || total > ip.len() {
        return None;
    }
    let proto = ip[9];
    let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
    if l4 && !fragment {
        let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
        fix_l4(&mut ip[ihl..total], src, dst, proto);
    }
    Some((ihl, total, proto))
}

/// Fixes the checksums of an Ethernet/IPv4 frame and, for VXLAN, of the inner frame first.
pub fn fix_frame(frame: &mut [u8], l4: bool) {
    if frame.get(12..14) != Some(&[0x08, 0x00][..]) {
        return;
    }
    let Some(ip) = frame.get_mut(14..) else {
        return;
    };
    // Inner first: the outer UDP checksum covers it.
    if let Some(&vihl) = ip.first() {
        let ihl = usize::from(vihl & 0x0f) * 4;
        let is_vxlan = ip.get(9) == Some(&17)
            && ip.get(ihl + 2..ihl + 4) == Some(&VXLAN_PORT.to_be_bytes()[..]);
        if is_vxlan && let Some(inner) = ip.get_mut(ihl + 16..) {
            if inner.get(12..14) == Some(&[0x08, 0x00][..])
                && let Some(inner_ip) = inner.get_mut(14..)
            {
                fix_ipv4(inner_ip, l4);
            }
        }
    }
    fix_ipv4(ip, l4);
}
