//! Property tests of the checksum module: full sums agree with etherparse, and RFC 1624
//! incremental updates agree with a full recompute, including the ±0 corners where the stored
//! checksum is 0x0000 or 0xffff before or after the rewrite.

use std::net::Ipv4Addr;

use etherparse::checksum::Sum16BitWords;
use etherparse::{Ipv4HeaderSlice, TcpSlice, UdpSlice};
use proptest::prelude::*;

use super::{Flow, build_tcp_frame, build_udp_frame, sample_flow};
use crate::wire::checksum::{
    combine, finish, fold, pseudo_header_v4, sum, update_addr, update_u16, update_u32,
};
use crate::wire::{Ipv4Packet, Ipv4Repr, TcpFlags, TcpPacket, UdpPacket, ipv4};

const L3: usize = 14;
const L4: usize = 34;

/// Which stored checksum is forced to the "zero" result of the ones'-complement sum.
#[derive(Debug, Clone, Copy)]
enum Corner {
    None,
    /// The checksum before the rewrite computes to zero.
    Before,
    /// The checksum after the rewrite computes to zero.
    After,
}

fn corner() -> impl Strategy<Value = Corner> {
    prop_oneof![
        Just(Corner::None),
        Just(Corner::Before),
        Just(Corner::After)
    ]
}

/// Sets the last (word-aligned) two payload bytes so that the L4 checksum of the frame that
/// `build` makes from `payload` computes to zero (before UDP's 0 -> 0xffff mapping).
fn force_zero_l4(payload: &mut [u8], flow: &Flow, proto: u8, build: impl Fn(&[u8]) -> Vec<u8>) {
    let n = payload.len();
    payload[n - 2..].fill(0);
    let mut frame = build(payload);
    let checksum_at = if proto == ipv4::PROTO_UDP { 6 } else { 16 };
    frame[L4 + checksum_at..L4 + checksum_at + 2].fill(0);
    let l4_len = u16::try_from(frame.len() - L4).unwrap();
    let pseudo = pseudo_header_v4(flow.ip_src, flow.ip_dst, proto, l4_len);
    let adjust = !fold(combine(pseudo, sum(&frame[L4..])));
    payload[n - 2..].copy_from_slice(&adjust.to_be_bytes());
}

fn even_payload() -> impl Strategy<Value = Vec<u8>> {
    (1usize..150).prop_flat_map(|words| proptest::collection::vec(any::<u8>(), words * 2))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn full_sum_matches_etherparse(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        let theirs = Sum16BitWords::new().add_slice(&data).ones_complement().to_be();
        prop_assert_eq!(finish(sum(&data)), theirs);
    }

    #[test]
    fn sums_of_even_splits_combine(data in proptest::collection::vec(any::<u8>(), 0..200), cut in any::<usize>()) {
        let cut = (cut % (data.len() / 2 + 1)) * 2;
        let (a, b) = data.split_at(cut);
        prop_assert_eq!(fold(combine(sum(a), sum(b))), fold(sum(&data)));
    }

    /// Generic data: a rewritten 16- or 32-bit word updated incrementally equals a recompute,
    /// except that all-zero data recomputes to 0xffff where the update gives 0x0000 (the same
    /// value in ones' complement; no real header is all zero).
    #[test]
    fn update_matches_recompute_on_any_data(
        mut data in proptest::collection::vec(any::<u8>(), 4..64).prop_map(|mut d| { d.truncate(d.len() & !3); d }),
        at in any::<usize>(),
        new in any::<u32>(),
        wide in any::<bool>(),
    ) {
        let stored = finish(sum(&data));
        let at = (at % (data.len() / 4)) * 4;
        let updated = if wide {
            let old = u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
            data[at..at + 4].copy_from_slice(&new.to_be_bytes());
            update_u32(stored, old, new)
        } else {
            let old = u16::from_be_bytes([data[at], data[at + 1]]);
            data[at..at + 2].copy_from_slice(&(new as u16).to_be_bytes());
            update_u16(stored, old, new as u16)
        };
        let recomputed = finish(sum(&data));
        if data.iter().all(|&b| b == 0) {
            prop_assert_eq!((updated, recomputed), (0x0000, 0xffff));
        } else {
            prop_assert_eq!(updated, recomputed);
        }
    }

    /// Router-style rewrites of an IPv4 header (TTL, addresses, ident) keep the checksum equal to
    /// our full recompute and to etherparse's.
    #[test]
    fn ipv4_header_rewrites(
        (src, dst, new_src) in (any::<u32>(), any::<u32>(), any::<u32>()),
        (ttl, protocol, payload_len) in (1u8.., any::<u8>(), 0u16..1500),
        new_ident in any::<u16>(),
        corner in corner(),
    ) {
        let (src, dst, new_src) = (Ipv4Addr::from(src), Ipv4Addr::from(dst), Ipv4Addr::from(new_src));
        let repr = |src, ident| Ipv4Repr { src, dst, protocol, ttl, payload_len, dont_frag: true, ident };
        let header = |r: Ipv4Repr| { let mut b = [0u8; 20]; r.emit(&mut b).unwrap(); b };
        // The ident that makes a header's checksum compute to zero is that header's checksum
        // with ident 0; the "after" header has TTL - 1, the new source and `new_ident`.
        let zero_ident = |r: Ipv4Repr| u16::from_be_bytes(header(Ipv4Repr { ident: 0, ..r })[10..12].try_into().unwrap());
        let old_ident = match corner {
            Corner::Before => zero_ident(repr(src, 0)),
            _ => 0x1234,
        };
        let new_ident = match corner {
            Corner::After => zero_ident(Ipv4Repr { ttl: ttl - 1, ..repr(new_src, 0) }),
            _ => new_ident,
        };
        let mut bytes = header(repr(src, old_ident));
        let mut ip = Ipv4Packet::new_unchecked(&mut bytes[..]);
        if matches!(corner, Corner::Before) {
            prop_assert_eq!(ip.checksum(), 0);
        }
        let mut c = ip.checksum();
        c = update_u16(c, u16::from_be_bytes([ttl, protocol]), u16::from_be_bytes([ttl - 1, protocol]));
        ip.set_ttl(ttl - 1);
        c = update_addr(c, src, new_src);
        ip.set_src_addr(new_src);
        c = update_u16(c, old_ident, new_ident);
        ip.set_ident(new_ident);
        ip.set_checksum(c);
        prop_assert!(ip.verify_checksum());
        let mut recomputed = bytes;
        Ipv4Packet::new_unchecked(&mut recomputed[..]).fill_checksum();
        prop_assert_eq!(bytes, recomputed);
        let theirs = Ipv4HeaderSlice::from_slice(&bytes).unwrap().to_header().calc_header_checksum();
        prop_assert_eq!(c, theirs);
        if matches!(corner, Corner::After) {
            prop_assert_eq!(c, 0);
        }
    }

    /// SNAT of a UDP flow (source address and port): the incrementally updated frame is byte for
    /// byte the frame built from scratch for the translated flow.
    #[test]
    fn udp_snat_rewrite(
        (new_ip, new_port) in (any::<u32>().prop_map(Ipv4Addr::from), any::<u16>()),
        mut payload in even_payload(),
        corner in corner(),
    ) {
        let flow = sample_flow();
        let post = Flow { ip_src: new_ip, src_port: new_port, ..flow.clone() };
        match corner {
            Corner::None => {}
            Corner::Before => force_zero_l4(&mut payload, &flow, ipv4::PROTO_UDP, |p| build_udp_frame(&flow, p)),
            Corner::After => force_zero_l4(&mut payload, &post, ipv4::PROTO_UDP, |p| build_udp_frame(&post, p)),
        }
        let mut frame = build_udp_frame(&flow, &payload);
        let mut ip = Ipv4Packet::new_checked(&mut frame[L3..]).unwrap();
        ip.set_checksum(update_addr(ip.checksum(), flow.ip_src, new_ip));
        ip.set_src_addr(new_ip);
        let mut udp = UdpPacket::new_checked(&mut frame[L4..]).unwrap();
        if matches!(corner, Corner::Before) {
            prop_assert_eq!(udp.checksum(), 0xffff);
        }
        udp.update_checksum(|c| update_u16(update_addr(c, flow.ip_src, new_ip), flow.src_port, new_port));
        udp.set_src_port(new_port);
        if matches!(corner, Corner::After) {
            prop_assert_eq!(udp.checksum(), 0xffff);
        }
        prop_assert_eq!(&frame, &build_udp_frame(&post, &payload));
        let theirs = UdpSlice::from_slice(&frame[L4..]).unwrap().to_header()
            .calc_checksum_ipv4_raw(new_ip.octets(), flow.ip_dst.octets(), &payload).unwrap();
        prop_assert_eq!(u16::from_be_bytes([frame[L4 + 6], frame[L4 + 7]]), theirs);
    }

    /// DNAT of a TCP flow (destination address and port), same oracle as for UDP. TCP stores a
    /// computed zero as 0x0000.
    #[test]
    fn tcp_dnat_rewrite(
        (new_ip, new_port) in (any::<u32>().prop_map(Ipv4Addr::from), any::<u16>()),
        (seq, ack, flags) in (any::<u32>(), any::<u32>(), any::<u8>()),
        mut payload in even_payload(),
        corner in corner(),
    ) {
        let flow = Flow { dst_port: 80, ..sample_flow() };
        let post = Flow { ip_dst: new_ip, dst_port: new_port, ..flow.clone() };
        let build = |f: &Flow, p: &[u8]| build_tcp_frame(f, seq, ack, TcpFlags(flags), 1000, p);
        match corner {
            Corner::None => {}
            Corner::Before => force_zero_l4(&mut payload, &flow, ipv4::PROTO_TCP, |p| build(&flow, p)),
            Corner::After => force_zero_l4(&mut payload, &post, ipv4::PROTO_TCP, |p| build(&post, p)),
        }
        let mut frame = build(&flow, &payload);
        let mut ip = Ipv4Packet::new_checked(&mut frame[L3..]).unwrap();
        ip.set_checksum(update_addr(ip.checksum(), flow.ip_dst, new_ip));
        ip.set_dst_addr(new_ip);
        let mut tcp = TcpPacket::new_checked(&mut frame[L4..]).unwrap();
        if matches!(corner, Corner::Before) {
            prop_assert_eq!(tcp.checksum(), 0);
        }
        let c = update_u16(update_addr(tcp.checksum(), flow.ip_dst, new_ip), flow.dst_port, new_port);
        tcp.set_checksum(c);
        tcp.set_dst_port(new_port);
        prop_assert!(tcp.verify_checksum(flow.ip_src, new_ip));
        if matches!(corner, Corner::After) {
            prop_assert_eq!(c, 0);
        }
        prop_assert_eq!(&frame, &build(&post, &payload));
        let theirs = TcpSlice::from_slice(&frame[L4..]).unwrap()
            .calc_checksum_ipv4(flow.ip_src.octets(), new_ip.octets()).unwrap();
        prop_assert_eq!(c, theirs);
    }
}
