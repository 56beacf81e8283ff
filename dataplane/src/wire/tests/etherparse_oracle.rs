//! etherparse as an independent parser: frames we emit must parse there with the same fields and
//! checksums it recomputes itself; frames it builds must parse and verify with our views.

use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::{
    ArpEthIpv4Packet, ArpHardwareId, ArpOperation, ArpPacket as EpArp, EtherType, IpHeaders,
    IpNumber, Ipv4Header, LinkExtSlice, LinkSlice, NetSlice, PacketBuilder, SlicedPacket,
    TcpHeader, TransportSlice, UdpHeader, VlanId,
};
use proptest::prelude::*;

use super::{Flow, build_tcp_frame, build_udp_frame, ipv4_of, sample_flow};
use crate::wire::{
    ArpPacket, ArpRepr, EthernetFrame, Icmpv4Packet, Ipv4Packet, Ipv6Packet, MacAddr, TcpFlags,
    TcpPacket, UdpPacket, arp, ethernet, icmp, ipv4,
};

fn flow_strategy() -> impl Strategy<Value = Flow> {
    (
        (
            any::<[u8; 6]>(),
            any::<[u8; 6]>(),
            any::<u32>(),
            any::<u32>(),
        ),
        (
            any::<u16>(),
            any::<u16>(),
            any::<u8>(),
            any::<u16>(),
            any::<bool>(),
        ),
    )
        .prop_map(
            |((eth_src, eth_dst, ip_src, ip_dst), (sp, dp, ttl, ident, df))| Flow {
                eth_src: MacAddr(eth_src),
                eth_dst: MacAddr(eth_dst),
                ip_src: Ipv4Addr::from(ip_src),
                ip_dst: Ipv4Addr::from(ip_dst),
                src_port: sp,
                dst_port: dp,
                ttl,
                ident,
                dont_frag: df,
            },
        )
}

/// Checks what etherparse reads from the Ethernet and IPv4 headers of `frame` against `flow`.
fn check_l2_l3(sliced: &SlicedPacket<'_>, flow: &Flow, protocol: IpNumber, frame_len: usize) {
    let Some(LinkSlice::Ethernet2(eth)) = &sliced.link else {
        panic!("no Ethernet header: {:?}", sliced.link);
    };
    assert_eq!(eth.source(), flow.eth_src.0);
    assert_eq!(eth.destination(), flow.eth_dst.0);
    assert_eq!(eth.ether_type(), EtherType::IPV4);
    let Some(NetSlice::Ipv4(ip)) = &sliced.net else {
        panic!("no IPv4 header: {:?}", sliced.net);
    };
    let header = ip.header();
    assert_eq!(header.source_addr(), flow.ip_src);
    assert_eq!(header.destination_addr(), flow.ip_dst);
    assert_eq!(header.ttl(), flow.ttl);
    assert_eq!(header.identification(), flow.ident);
    assert_eq!(header.dont_fragment(), flow.dont_frag);
    assert!(!header.more_fragments());
    assert_eq!(header.protocol(), protocol);
    assert_eq!(usize::from(header.total_len()), frame_len - 14);
    assert_eq!(
        header.header_checksum(),
        header.to_header().calc_header_checksum()
    );
}

proptest! {
    #[test]
    fn our_udp_frames_parse_in_etherparse(
        flow in flow_strategy(),
        payload in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let frame = build_udp_frame(&flow, &payload);
        let sliced = SlicedPacket::from_ethernet(&frame).unwrap();
        check_l2_l3(&sliced, &flow, IpNumber::UDP, frame.len());
        let Some(TransportSlice::Udp(udp)) = &sliced.transport else {
            panic!("no UDP header: {:?}", sliced.transport);
        };
        prop_assert_eq!(udp.source_port(), flow.src_port);
        prop_assert_eq!(udp.destination_port(), flow.dst_port);
        prop_assert_eq!(usize::from(udp.length()), 8 + payload.len());
        prop_assert_eq!(udp.payload(), &payload[..]);
        let expected = udp
            .to_header()
            .calc_checksum_ipv4_raw(flow.ip_src.octets(), flow.ip_dst.octets(), &payload)
            .unwrap();
        prop_assert_eq!(udp.checksum(), expected);
    }

    #[test]
    fn our_tcp_frames_parse_in_etherparse(
        flow in flow_strategy(),
        (seq, ack, flags, window) in (any::<u32>(), any::<u32>(), any::<u8>(), any::<u16>()),
        payload in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let frame = build_tcp_frame(&flow, seq, ack, TcpFlags(flags), window, &payload);
        let sliced = SlicedPacket::from_ethernet(&frame).unwrap();
        check_l2_l3(&sliced, &flow, IpNumber::TCP, frame.len());
        let Some(TransportSlice::Tcp(tcp)) = &sliced.transport else {
            panic!("no TCP header: {:?}", sliced.transport);
        };
        prop_assert_eq!(tcp.source_port(), flow.src_port);
        prop_assert_eq!(tcp.destination_port(), flow.dst_port);
        prop_assert_eq!(tcp.sequence_number(), seq);
        prop_assert_eq!(tcp.acknowledgment_number(), ack);
        prop_assert_eq!(tcp.window_size(), window);
        let bits = [tcp.fin(), tcp.syn(), tcp.rst(), tcp.psh(), tcp.ack(), tcp.urg(), tcp.ece(), tcp.cwr()];
        for (i, bit) in bits.into_iter().enumerate() {
            prop_assert_eq!(bit, flags & (1 << i) != 0);
        }
        prop_assert_eq!(tcp.payload(), &payload[..]);
        let expected = tcp
            .calc_checksum_ipv4(flow.ip_src.octets(), flow.ip_dst.octets())
            .unwrap();
        prop_assert_eq!(tcp.checksum(), expected);
    }

    #[test]
    fn etherparse_udp_frames_verify_with_our_views(
        flow in flow_strategy(),
        payload in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut ip = Ipv4Header::new(0, flow.ttl, IpNumber::UDP, flow.ip_src.octets(), flow.ip_dst.octets()).unwrap();
        ip.identification = flow.ident;
        ip.dont_fragment = flow.dont_frag;
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(flow.eth_src.0, flow.eth_dst.0)
            .ip(IpHeaders::Ipv4(ip, Default::default()))
            .udp(flow.src_port, flow.dst_port)
            .write(&mut frame, &payload)
            .unwrap();
        let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
        prop_assert_eq!(eth.src_addr(), flow.eth_src);
        prop_assert_eq!(eth.dst_addr(), flow.eth_dst);
        prop_assert_eq!(eth.ethertype(), ethernet::ETHERTYPE_IPV4);
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        prop_assert!(ip.verify_checksum());
        prop_assert_eq!((ip.src_addr(), ip.dst_addr()), (flow.ip_src, flow.ip_dst));
        prop_assert_eq!((ip.ttl(), ip.ident(), ip.dont_frag()), (flow.ttl, flow.ident, flow.dont_frag));
        prop_assert_eq!(ip.protocol(), ipv4::PROTO_UDP);
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        prop_assert_eq!((udp.src_port(), udp.dst_port()), (flow.src_port, flow.dst_port));
        prop_assert_eq!(udp.payload(), &payload[..]);
        prop_assert!(udp.checksum() != 0);
        prop_assert!(udp.verify_checksum(flow.ip_src, flow.ip_dst));
        // Our own recompute lands on the same value as etherparse's.
        let mut copy = ip.payload().to_vec();
        let mut ours = UdpPacket::new_checked(&mut copy[..]).unwrap();
        ours.fill_checksum(flow.ip_src, flow.ip_dst);
        prop_assert_eq!(ours.checksum(), udp.checksum());
    }

    #[test]
    fn etherparse_tcp_frames_verify_with_our_views(
        flow in flow_strategy(),
        (seq, ack, window) in (any::<u32>(), any::<u32>(), any::<u16>()),
        options in proptest::collection::vec(any::<u8>(), 0..=10).prop_map(|mut o| {
            o.resize(o.len().div_ceil(4) * 4, 0);
            o
        }),
        payload in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut header = TcpHeader::new(flow.src_port, flow.dst_port, seq, window);
        header.acknowledgment_number = ack;
        header.ack = true;
        header.psh = true;
        header.set_options_raw(&options).unwrap();
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(flow.eth_src.0, flow.eth_dst.0)
            .ipv4(flow.ip_src.octets(), flow.ip_dst.octets(), flow.ttl)
            .tcp_header(header)
            .write(&mut frame, &payload)
            .unwrap();
        let ip = ipv4_of(&frame);
        prop_assert!(ip.verify_checksum());
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        prop_assert_eq!((tcp.src_port(), tcp.dst_port()), (flow.src_port, flow.dst_port));
        prop_assert_eq!((tcp.seq_number(), tcp.ack_number(), tcp.window()), (seq, ack, window));
        prop_assert_eq!(tcp.flags(), TcpFlags::ACK | TcpFlags::PSH);
        prop_assert_eq!(tcp.header_len(), 20 + options.len());
        prop_assert_eq!(tcp.payload(), &payload[..]);
        prop_assert!(tcp.verify_checksum(flow.ip_src, flow.ip_dst));
        prop_assert!(!tcp.verify_checksum(flow.ip_dst, Ipv4Addr::from(u32::from(flow.ip_src) ^ 1)));
    }
}

#[test]
fn etherparse_vlan_tagged_frame() {
    let flow = sample_flow();
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(flow.eth_src.0, flow.eth_dst.0)
        .single_vlan(VlanId::try_new(1234).unwrap())
        .ipv4(flow.ip_src.octets(), flow.ip_dst.octets(), 9)
        .udp(1, 2)
        .write(&mut frame, b"tagged")
        .unwrap();
    let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
    assert_eq!(eth.vlan_id(), Some(1234));
    assert_eq!(eth.header_len(), 18);
    assert_eq!(eth.ethertype(), ethernet::ETHERTYPE_IPV4);
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert_eq!(ip.ttl(), 9);
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!(udp.payload(), b"tagged");
    assert!(udp.verify_checksum(flow.ip_src, flow.ip_dst));
}

#[test]
fn etherparse_icmp_echo_and_error() {
    let flow = sample_flow();
    let mut echo = Vec::new();
    PacketBuilder::ipv4(flow.ip_src.octets(), flow.ip_dst.octets(), 64)
        .icmpv4_echo_request(0x4242, 7)
        .write(&mut echo, b"ping data")
        .unwrap();
    let ip = Ipv4Packet::new_checked(&echo[..]).unwrap();
    assert_eq!(ip.protocol(), ipv4::PROTO_ICMP);
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.is_echo() && icmp.verify_checksum());
    assert_eq!((icmp.echo_ident(), icmp.echo_seq()), (0x4242, 7));
    assert_eq!(icmp.inner(), b"ping data");

    // A "fragmentation needed" error quoting the first 28 bytes of a UDP packet.
    let offending = build_udp_frame(&flow, &[0u8; 1400]);
    let quoted = &offending[14..14 + 28];
    let mut error = Vec::new();
    PacketBuilder::ipv4([10, 244, 1, 1], flow.ip_src.octets(), 64)
        .icmpv4_raw(
            icmp::DEST_UNREACHABLE,
            icmp::CODE_FRAG_NEEDED,
            [0, 0, 0x05, 0xaa],
        )
        .write(&mut error, quoted)
        .unwrap();
    let ip = Ipv4Packet::new_checked(&error[..]).unwrap();
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.is_error() && icmp.verify_checksum());
    assert_eq!(icmp.next_hop_mtu(), 1450);
    let inner = Ipv4Packet::new_inner(icmp.inner()).unwrap();
    assert_eq!(usize::from(inner.total_len()), offending.len() - 14);
    assert_eq!(inner.dst_addr(), flow.ip_dst);
    let quoted_udp = UdpPacket::new_unchecked(inner.payload());
    assert_eq!(quoted_udp.dst_port(), flow.dst_port);
}

#[test]
fn arp_both_ways() {
    let repr = ArpRepr {
        op: arp::ARP_REPLY,
        sender_hw: MacAddr([2, 0, 0, 0, 0, 9]),
        sender_ip: Ipv4Addr::new(10, 244, 1, 9),
        target_hw: MacAddr([2, 0, 0, 0, 0, 1]),
        target_ip: Ipv4Addr::new(10, 244, 1, 1),
    };
    let mut ours = [0u8; arp::ARP_LEN];
    repr.emit(&mut ours).unwrap();
    let theirs = EpArp::from_slice(&ours).unwrap().try_eth_ipv4().unwrap();
    assert_eq!(theirs.operation, ArpOperation::REPLY);
    assert_eq!(theirs.sender_mac, repr.sender_hw.0);
    assert_eq!(theirs.sender_ipv4, repr.sender_ip.octets());
    assert_eq!(theirs.target_mac, repr.target_hw.0);
    assert_eq!(theirs.target_ipv4, repr.target_ip.octets());

    let request = ArpEthIpv4Packet {
        operation: ArpOperation::REQUEST,
        sender_mac: [2, 0, 0, 0, 0, 1],
        sender_ipv4: [10, 244, 1, 1],
        target_mac: [0; 6],
        target_ipv4: [10, 244, 1, 9],
    };
    let mut frame = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [0xff; 6])
        .arp(request.into())
        .write(&mut frame)
        .unwrap();
    let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
    assert_eq!(eth.ethertype(), ethernet::ETHERTYPE_ARP);
    let parsed = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap());
    assert_eq!(parsed.op, arp::ARP_REQUEST);
    assert_eq!(parsed.target_ip, Ipv4Addr::new(10, 244, 1, 9));
    assert_eq!(parsed.sender_hw, MacAddr([2, 0, 0, 0, 0, 1]));
    // etherparse's hardware id constant agrees with the one we require.
    assert_eq!(
        ArpHardwareId::ETHERNET.0,
        u16::from_be_bytes([frame[14], frame[15]])
    );
}

#[test]
fn etherparse_ipv6_frame() {
    let src: Ipv6Addr = "fd00::1".parse().unwrap();
    let dst: Ipv6Addr = "fd00::2".parse().unwrap();
    let mut frame = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv6(src.octets(), dst.octets(), 33)
        .udp(5353, 5353)
        .write(&mut frame, b"six")
        .unwrap();
    let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
    assert_eq!(eth.ethertype(), ethernet::ETHERTYPE_IPV6);
    let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
    assert_eq!((ip.src_addr(), ip.dst_addr()), (src, dst));
    assert_eq!(ip.hop_limit(), 33);
    assert_eq!(ip.next_header(), 17);
    assert_eq!(ip.payload_len(), 11);
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!(udp.payload(), b"six");
    // Our v6 pseudo header reproduces etherparse's UDP checksum.
    let sum = crate::wire::checksum::combine(
        crate::wire::checksum::pseudo_header_v6(src, dst, 17, 11),
        crate::wire::checksum::sum(ip.payload()),
    );
    assert_eq!(crate::wire::checksum::fold(sum), 0xffff);
    let header = UdpHeader::from_slice(ip.payload()).unwrap().0;
    assert_eq!(
        header
            .calc_checksum_ipv6_raw(src.octets(), dst.octets(), b"six")
            .unwrap(),
        udp.checksum()
    );
}

#[test]
fn etherparse_sees_our_vlan_tag_edits() {
    let flow = sample_flow();
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(flow.eth_src.0, flow.eth_dst.0)
        .single_vlan(VlanId::try_new(7).unwrap())
        .ipv4(flow.ip_src.octets(), flow.ip_dst.octets(), 9)
        .udp(1, 2)
        .write(&mut frame, b"x")
        .unwrap();
    let mut eth = EthernetFrame::new_checked(&mut frame[..]).unwrap();
    eth.set_src_addr(MacAddr([2, 2, 2, 2, 2, 2]));
    eth.set_ethertype(ethernet::ETHERTYPE_IPV6);
    // Now an IPv6 EtherType over IPv4 bytes: etherparse must fail on the version, after the tag.
    assert!(SlicedPacket::from_ethernet(&frame).is_err());
    let mut eth = EthernetFrame::new_checked(&mut frame[..]).unwrap();
    eth.set_ethertype(ethernet::ETHERTYPE_IPV4);
    let sliced = SlicedPacket::from_ethernet(&frame).unwrap();
    let Some(LinkSlice::Ethernet2(l2)) = &sliced.link else {
        panic!("no Ethernet header");
    };
    assert_eq!(l2.source(), [2; 6]);
    let Some(LinkExtSlice::Vlan(vlan)) = sliced.link_exts.first() else {
        panic!("no VLAN tag");
    };
    assert_eq!(vlan.vlan_identifier().value(), 7);
    assert_eq!(vlan.ether_type(), EtherType::IPV4);
}
