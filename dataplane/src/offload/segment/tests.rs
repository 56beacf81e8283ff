#![allow(clippy::unwrap_used, reason = "test")]

use super::*;
use crate::offload::testing::{MSS, check_tcp, super_packet, tcp_frame};
use crate::packet::{Meta, PacketPool};

fn split(frame: &[u8], encap: usize, mss: usize) -> Vec<Packet> {
    let mut pool = PacketPool::with_capacity(64);
    let mut out = Vec::new();
    let n = segment(frame, encap, mss, &Meta::default(), &mut pool, &mut out).unwrap();
    assert_eq!(n, out.len());
    out
}

#[test]
fn segments_have_correct_checksums_sequence_and_flags() {
    let len = 10 * MSS + 300;
    let sp = super_packet(1_000_000, len);
    let segs = split(sp.data(), 0, MSS);
    assert_eq!(segs.len(), 11);
    let mut payload = Vec::new();
    for (i, seg) in segs.iter().enumerate() {
        assert!(!seg.meta.csum_partial && !seg.meta.offload.is_gso());
        let c = check_tcp(seg.data());
        assert_eq!(c.seq, 1_000_000 + (i * MSS) as u32);
        assert_eq!(c.psh, i == 10, "PSH only on the last segment");
        assert_eq!(c.payload.len(), if i == 10 { 300 } else { MSS });
        payload.extend_from_slice(&c.payload);
    }
    let whole = tcp_frame(1_000_000, 7, true, len);
    assert_eq!(payload, whole[66..], "payload in order, nothing lost");
    let first = check_tcp(segs[0].data()).ident;
    assert_eq!(check_tcp(segs[3].data()).ident, first.wrapping_add(3));
}

#[test]
fn resegments_to_a_smaller_mss_and_handles_fin() {
    let mut frame = tcp_frame(5, 9, false, 3000);
    frame[34 + 13] |= 0x01; // FIN on the super-packet
    let segs = split(&frame, 0, 1000);
    assert_eq!(segs.len(), 3);
    for (i, seg) in segs.iter().enumerate() {
        let c = check_tcp(seg.data());
        assert_eq!(c.payload.len(), 1000);
        assert_eq!(c.fin, i == 2, "FIN only on the last segment");
    }
}

#[test]
fn vxlan_segments_have_correct_outer_headers() {
    let sp = super_packet(77, 3 * MSS + 1);
    let inner = sp.data();
    let mut frame = vec![0u8; 50];
    frame[12] = 0x08; // outer EtherType IPv4
    let outer = crate::wire::Ipv4Repr {
        src: std::net::Ipv4Addr::new(192, 168, 50, 2),
        dst: std::net::Ipv4Addr::new(192, 168, 50, 3),
        protocol: crate::wire::ipv4::PROTO_UDP,
        ttl: 64,
        payload_len: 100, // wrong on purpose: segmentation sets it
        dont_frag: true,
        ident: 0,
    };
    outer.emit(&mut frame[14..]).unwrap();
    frame[36..38].copy_from_slice(&4789u16.to_be_bytes());
    frame.extend_from_slice(inner);
    let segs = split(&frame, 50, MSS);
    assert_eq!(segs.len(), 4);
    for seg in &segs {
        let d = seg.data();
        let h = etherparse::PacketHeaders::from_ethernet_slice(d).unwrap();
        let Some(etherparse::NetHeaders::Ipv4(ip, _)) = h.net else {
            panic!("outer IPv4")
        };
        assert_eq!(ip.header_checksum, ip.calc_header_checksum());
        assert_eq!(usize::from(ip.total_len), d.len() - 14);
        let Some(etherparse::TransportHeader::Udp(udp)) = h.transport else {
            panic!("outer UDP")
        };
        assert_eq!(usize::from(udp.length), d.len() - 34);
        assert_eq!(udp.checksum, 0);
        check_tcp(&d[50..]);
    }
}

#[test]
fn vxlan_segments_over_ipv6_have_lengths_and_a_correct_udp_checksum() {
    let sp = super_packet(77, 3 * MSS + 1);
    let mut frame = vec![0u8; 70];
    frame[12..14].copy_from_slice(&[0x86, 0xdd]);
    let (src, dst): (std::net::Ipv6Addr, std::net::Ipv6Addr) = (
        "2001:db8::2".parse().unwrap(),
        "2001:db8::3".parse().unwrap(),
    );
    let outer = crate::wire::Ipv6Repr {
        src,
        dst,
        next_header: crate::wire::ipv4::PROTO_UDP,
        hop_limit: 64,
        payload_len: 100, // wrong on purpose: segmentation sets it
    };
    outer.emit(&mut frame[14..]).unwrap();
    frame[56..58].copy_from_slice(&4789u16.to_be_bytes());
    frame.extend_from_slice(sp.data());
    let segs = split(&frame, 70, MSS);
    assert_eq!(segs.len(), 4);
    for seg in &segs {
        let d = seg.data();
        let h = etherparse::PacketHeaders::from_ethernet_slice(d).unwrap();
        let Some(etherparse::NetHeaders::Ipv6(ip, _)) = h.net else {
            panic!("outer IPv6")
        };
        assert_eq!(usize::from(ip.payload_length), d.len() - 54);
        let Some(etherparse::TransportHeader::Udp(udp)) = h.transport else {
            panic!("outer UDP")
        };
        assert_eq!(usize::from(udp.length), d.len() - 54);
        assert_ne!(udp.checksum, 0);
        let want = udp.calc_checksum_ipv6(&ip, &d[62..]).unwrap();
        assert_eq!(udp.checksum, want, "outer UDP checksum");
        check_tcp(&d[70..]);
    }
}

#[test]
fn malformed_or_unaffordable_input_makes_no_segment() {
    let mut pool = PacketPool::with_capacity(2);
    let mut out = Vec::new();
    let sp = super_packet(1, 5 * MSS);
    let short = segment(sp.data(), 0, MSS, &Meta::default(), &mut pool, &mut out);
    assert_eq!(short, Err(DropReason::TxRingFull));
    let trunc = &sp.data()[..sp.len() - 1];
    assert_eq!(
        segment(trunc, 0, MSS, &Meta::default(), &mut pool, &mut out),
        Err(DropReason::Malformed)
    );
    assert!(out.is_empty());
    assert_eq!(pool.available(), 2);
}
