//! Segmentation and user-space GRO, structure-aware: a TCP super-packet built from the input
//! (sequence, ACK, flags, options length, payload, segment size, VXLAN or not) with correct
//! checksums, then segmented; the segments (some mutated by the input, checksums fixed again
//! or not) go through the coalescing rules and are merged as the TAP writer merges them.
//! Oracles: no panic; every segment has correct checksums and the super-packet's payload in
//! order; a merged run finishes to a correct TCP checksum and carries its segments' payloads
//! in sequence order.
#![no_main]

mod checksums;

use std::net::Ipv4Addr;

use dataplane::offload::{coalesce, segment};
use dataplane::packet::{Meta, Packet, PacketPool};
use libfuzzer_sys::fuzz_target;

const SRC: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 5);
const DST: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 7);

/// Ethernet + IPv4 + TCP with `opts` option bytes (NOPs) and `payload`, checksums complete.
fn tcp_frame(seq: u32, ack: u32, flags: u8, opts: usize, payload: &[u8]) -> Vec<u8> {
    let thl = 20 + opts;
    let total = 20 + thl + payload.len();
    let mut f = vec![0u8; 14 + total];
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&SRC.octets());
    ip[16..20].copy_from_slice(&DST.octets());
    let t = &mut ip[20..];
    t[..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&5201u16.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&ack.to_be_bytes());
    t[12] = ((thl / 4) as u8) << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&1000u16.to_be_bytes());
    t[20..thl].fill(1);
    t[thl..].copy_from_slice(payload);
    checksums::fix_ipv4(ip, true);
    f
}

fn vxlan_outer(inner_len: usize) -> Vec<u8> {
    let mut f = vec![0u8; 50];
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    f[16..18].copy_from_slice(&((36 + inner_len) as u16).to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    f[36..38].copy_from_slice(&checksums::VXLAN_PORT.to_be_bytes());
    f
}

fn tcp_valid(frame: &[u8]) -> bool {
    let ip = &frame[14..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let tcp = &ip[ihl..];
    checksums::sum(&[&ip[..ihl]]) == 0
        && checksums::sum(&[&checksums::pseudo(SRC, DST, 6, tcp.len()), tcp]) == 0
}

fuzz_target!(|data: &[u8]| {
    let [a, b, c, d, e, f, g, h, rest @ ..] = data else {
        return;
    };
    let seq = u32::from_be_bytes([*a, *b, *c, *d]);
    let ack = u32::from(*e);
    let flags = 0x10 | (f & 0xe9); // ACK plus any of FIN, PSH, ECE, CWR, URG
    let opts = usize::from(g % 11) * 4;
    let mss = 1 + usize::from(*h) * 8;
    let vxlan = h & 1 == 1;
    let (mutations, payload) = rest.split_at(rest.len().min(8));
    let payload: Vec<u8> = payload.iter().cycle().take(payload.len() * 40).copied().collect();
    let inner = tcp_frame(seq, ack, flags, opts, &payload);
    let mut frame = if vxlan { vxlan_outer(inner.len()) } else { Vec::new() };
    let encap = frame.len();
    frame.extend_from_slice(&inner);
    if frame.len() > dataplane::packet::MAX_SUPER_FRAME {
        return;
    }
    let mut pool = PacketPool::with_capacity(4096);
    let mut segs = Vec::new();
    let Ok(n) = segment::segment(&frame, encap, mss, &Meta::default(), &mut pool, &mut segs)
    else {
        return;
    };
    assert_eq!(n, segs.len());
    let mut joined = Vec::new();
    for s in &segs {
        let inner = &s.data()[encap..];
        assert!(tcp_valid(inner), "segment checksums");
        let thl = usize::from(inner[34 + 12] >> 4) * 4;
        assert!(inner.len() - 34 - thl <= mss);
        joined.extend_from_slice(&inner[34 + thl..]);
    }
    assert_eq!(joined, payload, "payload in order");
    if encap > 0 {
        return;
    }
    // Mutate some segments (a byte, then maybe fix the checksums again) and coalesce.
    let mut segs: Vec<Packet> = segs;
    for m in mutations.chunks(2) {
        if let [which, byte] = m
            && let Some(s) = segs.get_mut(usize::from(*which) % n)
        {
            let at = usize::from(*byte) % s.len();
            s.data_mut()[at] ^= which | 1;
            if byte & 1 == 1 {
                checksums::fix_frame(s.data_mut(), true);
            }
        }
    }
    let mut i = 0;
    while i < segs.len() {
        let len = coalesce::run(&segs[i..]);
        if len > 1 {
            let (head, rest) = segs[i..i + len].split_first_mut().unwrap();
            let total = coalesce::payload_of(head).len()
                + rest.iter().map(|p| coalesce::payload_of(p).len()).sum::<usize>();
            let psh = rest.last().is_some_and(coalesce::has_psh);
            let hdr = coalesce::merge_head(head, total, psh);
            let mut merged = head.data().to_vec();
            for p in rest.iter() {
                merged.extend_from_slice(coalesce::payload_of(p));
            }
            // Finish the partial checksum as the receiver would, then check it.
            let l4 = usize::from(hdr.csum_start);
            let c = checksums::sum(&[&merged[l4..]]);
            merged[l4 + 16..l4 + 18].copy_from_slice(&c.to_be_bytes());
            assert!(tcp_valid(&merged), "merged checksum");
            assert!(merged.len() - 14 <= 65_535);
        }
        i += len;
    }
});
