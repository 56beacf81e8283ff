//! The module contract: `new_checked` on any prefix of a valid packet, or on random bytes, either
//! fails or yields a view whose every getter and setter runs without panicking.

use std::net::Ipv4Addr;

use proptest::prelude::*;

use super::{build_tcp_frame, build_udp_frame, sample_flow};
use crate::wire::{
    ArpPacket, ArpRepr, EthernetFrame, EthernetRepr, Icmpv4Packet, Ipv4Packet, Ipv4Repr,
    Ipv6Packet, MacAddr, TcpFlags, TcpPacket, UdpPacket, UdpRepr, VxlanPacket, VxlanRepr, arp,
    ethernet, ipv4,
};

/// Runs `check` on a copy of every prefix of `bytes`; returns the prefix lengths it accepted.
fn accepted_prefixes(bytes: &[u8], check: impl Fn(&mut [u8]) -> bool) -> Vec<usize> {
    (0..=bytes.len())
        .filter(|&len| check(&mut bytes[..len].to_vec()))
        .collect()
}

fn ethernet_ok(bytes: &mut [u8]) -> bool {
    let Ok(mut v) = EthernetFrame::new_checked(bytes) else {
        return false;
    };
    let _ = (v.dst_addr(), v.src_addr(), v.ethertype(), v.vlan_id());
    let _ = (v.header_len(), v.payload().len(), EthernetRepr::parse(&v));
    v.set_dst_addr(MacAddr::BROADCAST);
    v.set_src_addr(MacAddr::BROADCAST);
    v.set_ethertype(0x0800);
    v.payload_mut().fill(0);
    true
}

fn arp_ok(bytes: &mut [u8]) -> bool {
    let Ok(mut v) = ArpPacket::new_checked(bytes) else {
        return false;
    };
    let repr = ArpRepr::parse(&v);
    v.set_operation(repr.op);
    v.set_sender_hw(repr.sender_hw);
    v.set_sender_ip(repr.sender_ip);
    v.set_target_hw(repr.target_hw);
    v.set_target_ip(repr.target_ip);
    true
}

fn ipv4_view_ok(mut v: Ipv4Packet<&mut [u8]>) {
    let _ = (
        v.header_len(),
        v.total_len(),
        v.ident(),
        v.dont_frag(),
        v.more_frags(),
    );
    let _ = (
        v.frag_offset(),
        v.is_fragment(),
        v.ttl(),
        v.protocol(),
        v.checksum(),
    );
    let _ = (
        v.src_addr(),
        v.dst_addr(),
        v.payload().len(),
        v.verify_checksum(),
    );
    let _ = Ipv4Repr::parse(&v);
    v.set_src_addr(Ipv4Addr::LOCALHOST);
    v.set_dst_addr(Ipv4Addr::LOCALHOST);
    v.set_ttl(1);
    v.set_ident(1);
    v.set_dont_frag(true);
    v.set_protocol(17);
    v.fill_checksum();
    v.payload_mut().fill(0);
}

fn ipv4_ok(bytes: &mut [u8]) -> bool {
    Ipv4Packet::new_checked(bytes).map(ipv4_view_ok).is_ok()
}

fn ipv4_inner_ok(bytes: &mut [u8]) -> bool {
    Ipv4Packet::new_inner(bytes).map(ipv4_view_ok).is_ok()
}

fn ipv6_ok(bytes: &mut [u8]) -> bool {
    let Ok(mut v) = Ipv6Packet::new_checked(bytes) else {
        return false;
    };
    let _ = (v.next_header(), v.hop_limit(), v.src_addr(), v.dst_addr());
    let _ = (v.payload_len(), v.payload().len());
    v.set_hop_limit(1);
    true
}

fn udp_ok(bytes: &mut [u8]) -> bool {
    let Ok(mut v) = UdpPacket::new_checked(bytes) else {
        return false;
    };
    let a = Ipv4Addr::LOCALHOST;
    let _ = (
        v.src_port(),
        v.dst_port(),
        v.len(),
        v.checksum(),
        v.payload().len(),
    );
    let _ = (v.verify_checksum(a, a), UdpRepr::parse(&v));
    v.set_src_port(1);
    v.set_dst_port(2);
    v.fill_checksum(a, a);
    v.update_checksum(|c| c);
    v.payload_mut().fill(0);
    true
}

fn tcp_ok(bytes: &mut [u8]) -> bool {
    let Ok(mut v) = TcpPacket::new_checked(bytes) else {
        return false;
    };
    let a = Ipv4Addr::LOCALHOST;
    let _ = (
        v.src_port(),
        v.dst_port(),
        v.seq_number(),
        v.ack_number(),
        v.header_len(),
    );
    let _ = (
        v.flags(),
        v.window(),
        v.checksum(),
        v.payload().len(),
        v.verify_checksum(a, a),
    );
    v.set_src_port(1);
    v.set_dst_port(2);
    v.set_seq_number(3);
    v.set_ack_number(4);
    v.set_flags(TcpFlags::RST);
    v.set_window(5);
    v.fill_checksum(a, a);
    v.payload_mut().fill(0);
    true
}

fn icmp_ok(bytes: &mut [u8]) -> bool {
    let Ok(mut v) = Icmpv4Packet::new_checked(bytes) else {
        return false;
    };
    let _ = (
        v.msg_type(),
        v.code(),
        v.checksum(),
        v.echo_ident(),
        v.echo_seq(),
    );
    let _ = (v.next_hop_mtu(), v.is_error(), v.is_echo(), v.inner().len());
    let _ = v.verify_checksum();
    v.set_msg_type(3);
    v.set_code(4);
    v.set_echo_ident(1);
    v.set_echo_seq(2);
    v.set_next_hop_mtu(1450);
    v.set_rest_of_header(0);
    v.fill_checksum();
    v.inner_mut().fill(0);
    true
}

fn vxlan_ok(bytes: &mut [u8]) -> bool {
    let Ok(mut v) = VxlanPacket::new_checked(bytes) else {
        return false;
    };
    let _ = (v.vni(), v.payload().len(), VxlanRepr::parse(&v));
    v.set_vni(u32::MAX);
    v.payload_mut().fill(0);
    true
}

const L3: usize = ethernet::HEADER_LEN;
const L4: usize = L3 + ipv4::HEADER_LEN;

#[test]
fn every_prefix_of_a_udp_frame() {
    let frame = build_udp_frame(&sample_flow(), b"some payload bytes");
    let full = frame.len();
    assert_eq!(
        accepted_prefixes(&frame, ethernet_ok),
        (14..=full).collect::<Vec<_>>()
    );
    // IPv4 and UDP carry lengths: only the whole packet is accepted.
    assert_eq!(accepted_prefixes(&frame[L3..], ipv4_ok), vec![full - L3]);
    assert_eq!(accepted_prefixes(&frame[L4..], udp_ok), vec![full - L4]);
    // A quoted header needs the header only.
    assert_eq!(
        accepted_prefixes(&frame[L3..], ipv4_inner_ok),
        (20..=full - L3).collect::<Vec<_>>()
    );
}

#[test]
fn every_prefix_of_a_tcp_frame() {
    let mut frame = build_tcp_frame(&sample_flow(), 1, 2, TcpFlags::ACK, 3, b"data");
    frame[L4 + 12] = 0x60; // 24-byte header: options must fit too
    let tcp_len = frame.len() - L4;
    assert_eq!(
        accepted_prefixes(&frame[L3..], ipv4_ok),
        vec![frame.len() - L3]
    );
    // TCP has no length field: any prefix holding the header is a (shorter) segment.
    assert_eq!(
        accepted_prefixes(&frame[L4..], tcp_ok),
        (24..=tcp_len).collect::<Vec<_>>()
    );
}

#[test]
fn every_prefix_of_the_other_headers() {
    let mut tagged = vec![0u8; 30];
    tagged[12..16].copy_from_slice(&[0x81, 0x00, 0x00, 0x05]);
    assert_eq!(
        accepted_prefixes(&tagged, ethernet_ok),
        (18..=30).collect::<Vec<_>>()
    );

    let mut arp_bytes = [0u8; 30];
    let repr = ArpRepr {
        op: arp::ARP_REQUEST,
        sender_hw: MacAddr([2, 0, 0, 0, 0, 1]),
        sender_ip: Ipv4Addr::new(10, 0, 0, 1),
        target_hw: MacAddr([0; 6]),
        target_ip: Ipv4Addr::new(10, 0, 0, 2),
    };
    repr.emit(&mut arp_bytes).unwrap();
    assert_eq!(accepted_prefixes(&arp_bytes, arp_ok), vec![28, 29, 30]);

    let mut ipv6 = vec![0u8; 50];
    ipv6[0] = 0x60;
    ipv6[5] = 10;
    assert_eq!(accepted_prefixes(&ipv6, ipv6_ok), vec![50]);

    let icmp = [8u8, 0, 0, 0, 0, 1, 0, 1, 0xaa, 0xbb];
    assert_eq!(
        accepted_prefixes(&icmp, icmp_ok),
        (8..=10).collect::<Vec<_>>()
    );

    let mut vxlan = [0u8; 12];
    VxlanRepr { vni: 1 }.emit(&mut vxlan).unwrap();
    assert_eq!(
        accepted_prefixes(&vxlan, vxlan_ok),
        (8..=12).collect::<Vec<_>>()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Random bytes, biased towards plausible first bytes, never make a view panic.
    #[test]
    fn random_bytes_never_panic(
        first in prop_oneof![Just(0x45u8), Just(0x4f), Just(0x60), Just(0x08), any::<u8>()],
        mut bytes in proptest::collection::vec(any::<u8>(), 0..120),
    ) {
        if let Some(b) = bytes.first_mut() {
            *b = first;
        }
        let checks: [fn(&mut [u8]) -> bool; 9] = [
            ethernet_ok, arp_ok, ipv4_ok, ipv4_inner_ok, ipv6_ok, udp_ok, tcp_ok, icmp_ok, vxlan_ok,
        ];
        for check in checks {
            check(&mut bytes.clone());
        }
        // Tagged Ethernet with random tail lengths.
        let mut tagged = bytes.clone();
        if tagged.len() >= 14 {
            tagged[12..14].copy_from_slice(&[0x81, 0x00]);
        }
        ethernet_ok(&mut tagged);
    }
}
