//! NAT66 rewrites on packets built by etherparse, checked by summing the whole segment again.
#![allow(clippy::unwrap_used, reason = "tests: literals")]

use std::net::Ipv6Addr;

use etherparse::{IcmpEchoHeader, Icmpv6Type, PacketBuilder};

use super::*;
use crate::wire::checksum::{combine, finish, pseudo_header_v6, sum};

const HDR: usize = 40;

fn ip(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

const CLIENT: &str = "fd00:10:244:1::a";
const SERVICE: &str = "fd00:10:96::10";
const BACKEND: &str = "fd00:10:244:2::7";

fn build(proto: u8, payload_len: usize) -> Vec<u8> {
    let b = PacketBuilder::ipv6(ip(CLIENT).octets(), ip(SERVICE).octets(), 64);
    let payload: Vec<u8> = (0..payload_len).map(|i| (i * 7) as u8).collect();
    let mut out = Vec::new();
    match proto {
        PROTO_TCP => b
            .tcp(40000, 80, 1, 65535)
            .syn()
            .write(&mut out, &payload)
            .unwrap(),
        PROTO_UDP => b.udp(40000, 53).write(&mut out, &payload).unwrap(),
        _ => b
            .icmpv6(Icmpv6Type::EchoRequest(IcmpEchoHeader { id: 7, seq: 1 }))
            .write(&mut out, &payload)
            .unwrap(),
    }
    out
}

/// The upper-layer checksum verifies: the segment plus pseudo header sums to all ones.
fn verifies(pkt: &[u8], proto: u8) -> bool {
    let src = read_addr(&pkt[8..24]);
    let dst = read_addr(&pkt[24..40]);
    let seg = &pkt[HDR..];
    let pseudo = pseudo_header_v6(src, dst, proto, seg.len() as u32);
    finish(combine(pseudo, sum(seg))) == 0
}

fn dnat() -> Endpoints6 {
    Endpoints6 {
        src: ip(CLIENT),
        dst: ip(BACKEND),
        sport: 40000,
        dport: 8080,
    }
}

#[test]
fn tcp_and_udp_dnat_keep_the_checksum_valid() {
    for proto in [PROTO_TCP, PROTO_UDP] {
        for len in [0, 1, 33, 200] {
            let mut pkt = build(proto, len);
            assert!(verifies(&pkt, proto), "fixture valid");
            let before = pkt.clone();
            rewrite(&mut pkt, HDR, proto, &dnat()).unwrap();
            assert!(verifies(&pkt, proto), "proto {proto} len {len}");
            assert_ne!(pkt, before);
            assert_eq!(read_addr(&pkt[24..40]), ip(BACKEND));
            assert_eq!(u16::from_be_bytes([pkt[HDR + 2], pkt[HDR + 3]]), 8080);
            // Payload untouched.
            let l4_len = if proto == PROTO_TCP { 20 } else { 8 };
            assert_eq!(pkt[HDR + l4_len..], before[HDR + l4_len..]);
        }
    }
}

#[test]
fn reverse_translation_restores_the_original_bytes() {
    for proto in [PROTO_TCP, PROTO_UDP, PROTO_ICMPV6] {
        let original = build(proto, 40);
        let mut pkt = original.clone();
        rewrite(&mut pkt, HDR, proto, &dnat()).unwrap();
        let back = Endpoints6 {
            src: ip(CLIENT),
            dst: ip(SERVICE),
            sport: 40000,
            dport: if proto == PROTO_UDP { 53 } else { 80 },
        };
        let back = if proto == PROTO_ICMPV6 {
            Endpoints6 { sport: 7, ..back }
        } else {
            back
        };
        rewrite(&mut pkt, HDR, proto, &back).unwrap();
        assert!(verifies(&pkt, proto));
        if proto == PROTO_UDP {
            // 0xffff and 0x0000 are the same sum; only UDP forbids 0.
            assert_eq!(pkt[..HDR + 6], original[..HDR + 6]);
            assert_eq!(pkt[HDR + 8..], original[HDR + 8..]);
        } else {
            assert_eq!(pkt, original, "proto {proto}");
        }
    }
}

#[test]
fn icmpv6_echo_rewrites_addresses_and_identifier() {
    let mut pkt = build(PROTO_ICMPV6, 56);
    let to = Endpoints6 {
        src: ip("2001:db8::1"),
        dst: ip(BACKEND),
        sport: 0x1234,
        dport: 0x1234,
    };
    rewrite(&mut pkt, HDR, PROTO_ICMPV6, &to).unwrap();
    assert!(verifies(&pkt, PROTO_ICMPV6));
    assert_eq!(read_addr(&pkt[8..24]), to.src);
    assert_eq!(u16::from_be_bytes([pkt[HDR + 4], pkt[HDR + 5]]), 0x1234);
}

#[test]
fn refused_packets_are_left_unwritten() {
    // Neighbour solicitation: not echo.
    let mut ns = build(PROTO_ICMPV6, 8);
    ns[HDR] = 135;
    let before = ns.clone();
    assert!(rewrite(&mut ns, HDR, PROTO_ICMPV6, &dnat()).is_err());
    assert_eq!(ns, before);
    // A zero UDP checksum.
    let mut udp = build(PROTO_UDP, 8);
    udp[HDR + 6..HDR + 8].fill(0);
    let before = udp.clone();
    assert!(rewrite(&mut udp, HDR, PROTO_UDP, &dnat()).is_err());
    assert_eq!(udp, before);
    // Truncated TCP header, unknown protocol, l4 inside the fixed header.
    let tcp = build(PROTO_TCP, 0);
    let mut short = tcp[..HDR + 10].to_vec();
    assert!(rewrite(&mut short, HDR, PROTO_TCP, &dnat()).is_err());
    let mut any = tcp.clone();
    assert!(rewrite(&mut any, HDR, 132, &dnat()).is_err());
    assert!(rewrite(&mut any, 20, PROTO_TCP, &dnat()).is_err());
    assert_eq!(any, tcp);
}

#[test]
fn update_addr6_matches_a_full_recompute() {
    let data_old = [ip(CLIENT).octets(), ip(SERVICE).octets()].concat();
    let data_new = [ip(CLIENT).octets(), ip(BACKEND).octets()].concat();
    let old = finish(sum(&data_old));
    let new = update_addr6(old, ip(SERVICE), ip(BACKEND));
    assert_eq!(fold(u32::from(new)), finish(sum(&data_new)));
}
