//! Property tests: `Repr::emit` then `new_checked` + `Repr::parse` gives back the same Repr, and
//! emitting the parsed Repr gives back the same bytes. Bytes after the header are never touched.

use std::net::Ipv4Addr;

use etherparse::Ipv4HeaderSlice;
use proptest::prelude::*;

use crate::wire::{
    ArpPacket, ArpRepr, EthernetFrame, EthernetRepr, Ipv4Packet, Ipv4Repr, MacAddr, UdpPacket,
    UdpRepr, VxlanPacket, VxlanRepr, arp, ethernet, ipv4, udp, vxlan,
};

fn mac() -> impl Strategy<Value = MacAddr> {
    any::<[u8; 6]>().prop_map(MacAddr)
}

fn ip() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}

/// A buffer of `header_len + extra` random-looking bytes; returns it and a copy of its tail.
fn buffer(header_len: usize, extra: usize, fill: u8) -> (Vec<u8>, Vec<u8>) {
    let buf: Vec<u8> = (0..header_len + extra)
        .map(|i| fill.wrapping_add(i as u8))
        .collect();
    let tail = buf[header_len..].to_vec();
    (buf, tail)
}

proptest! {
    #[test]
    fn ethernet_repr_round_trip(
        repr in (mac(), mac(), any::<u16>()).prop_filter("tag", |t| t.2 != ethernet::ETHERTYPE_VLAN)
            .prop_map(|(src, dst, ethertype)| EthernetRepr { src, dst, ethertype }),
        extra in 0usize..64,
        fill in any::<u8>(),
    ) {
        let (mut buf, tail) = buffer(ethernet::HEADER_LEN, extra, fill);
        repr.emit(&mut buf).unwrap();
        let frame = EthernetFrame::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(EthernetRepr::parse(&frame), repr);
        prop_assert_eq!(frame.payload(), &tail[..]);
        let mut again = buf.clone();
        EthernetRepr::parse(&frame).emit(&mut again).unwrap();
        prop_assert_eq!(again, buf);
    }

    #[test]
    fn ipv4_repr_round_trip(
        (src, dst) in (ip(), ip()),
        (protocol, ttl, ident, dont_frag) in (any::<u8>(), any::<u8>(), any::<u16>(), any::<bool>()),
        payload_len in prop_oneof![0u16..1600, Just(u16::MAX - 20)],
        fill in any::<u8>(),
    ) {
        let repr = Ipv4Repr { src, dst, protocol, ttl, payload_len, dont_frag, ident };
        let (mut buf, tail) = buffer(ipv4::HEADER_LEN, usize::from(payload_len), fill);
        repr.emit(&mut buf).unwrap();
        let packet = Ipv4Packet::new_checked(&buf[..]).unwrap();
        prop_assert!(packet.verify_checksum());
        prop_assert!(!packet.is_fragment());
        prop_assert_eq!(Ipv4Repr::parse(&packet), repr);
        prop_assert_eq!(packet.payload(), &tail[..]);
        // etherparse reads the same header and the same checksum.
        let theirs = Ipv4HeaderSlice::from_slice(&buf).unwrap();
        prop_assert_eq!(theirs.source_addr(), src);
        prop_assert_eq!(theirs.destination_addr(), dst);
        prop_assert_eq!(theirs.protocol().0, protocol);
        prop_assert_eq!(theirs.identification(), ident);
        prop_assert_eq!(theirs.dont_fragment(), dont_frag);
        prop_assert_eq!(theirs.header_checksum(), theirs.to_header().calc_header_checksum());
    }

    #[test]
    fn udp_repr_round_trip(
        repr in (any::<u16>(), any::<u16>(), 0u16..1600)
            .prop_map(|(src_port, dst_port, payload_len)| UdpRepr { src_port, dst_port, payload_len }),
        fill in any::<u8>(),
    ) {
        let (mut buf, tail) = buffer(udp::HEADER_LEN, usize::from(repr.payload_len), fill);
        repr.emit(&mut buf).unwrap();
        let packet = UdpPacket::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(UdpRepr::parse(&packet), repr);
        prop_assert_eq!(packet.checksum(), 0);
        prop_assert_eq!(packet.payload(), &tail[..]);
    }

    #[test]
    fn arp_repr_round_trip(
        op in prop_oneof![Just(arp::ARP_REQUEST), Just(arp::ARP_REPLY), any::<u16>()],
        (sender_hw, target_hw) in (mac(), mac()),
        (sender_ip, target_ip) in (ip(), ip()),
        extra in 0usize..32,
        fill in any::<u8>(),
    ) {
        let repr = ArpRepr { op, sender_hw, sender_ip, target_hw, target_ip };
        let (mut buf, tail) = buffer(arp::ARP_LEN, extra, fill);
        repr.emit(&mut buf).unwrap();
        prop_assert_eq!(&buf[arp::ARP_LEN..], &tail[..]);
        let packet = ArpPacket::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(ArpRepr::parse(&packet), repr);
        let mut again = vec![0u8; buf.len()];
        ArpRepr::parse(&packet).emit(&mut again).unwrap();
        prop_assert_eq!(&again[..arp::ARP_LEN], &buf[..arp::ARP_LEN]);
    }

    #[test]
    fn vxlan_repr_round_trip(
        vni in 0u32..=0x00ff_ffff,
        extra in 0usize..64,
        fill in any::<u8>(),
    ) {
        let repr = VxlanRepr { vni };
        let (mut buf, tail) = buffer(vxlan::HEADER_LEN, extra, fill);
        repr.emit(&mut buf).unwrap();
        // Independent reading of RFC 7348: flags 0x08, 3 reserved bytes, VNI, 1 reserved byte.
        prop_assert_eq!(&buf[..4], &[0x08, 0, 0, 0]);
        prop_assert_eq!(u32::from_be_bytes([0, buf[4], buf[5], buf[6]]), vni);
        prop_assert_eq!(buf[7], 0);
        let packet = VxlanPacket::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(VxlanRepr::parse(&packet), repr);
        prop_assert_eq!(packet.payload(), &tail[..]);
    }
}
