//! Cross-header tests: whole frames built with our emitters checked by etherparse (and the
//! reverse), truncation of every view, property tests of parse/emit round trips and of the
//! incremental checksum updates. Per-header tests on literal bytes live in each header's file.

mod checksum_props;
mod etherparse_oracle;
mod roundtrip;
mod truncation;

use std::net::Ipv4Addr;

use super::{
    EthernetRepr, Ipv4Packet, Ipv4Repr, MacAddr, TcpFlags, TcpPacket, UdpPacket, UdpRepr, ethernet,
    ipv4, tcp, udp,
};

/// Addresses and ports shared by the frame builders.
#[derive(Debug, Clone)]
pub(super) struct Flow {
    pub eth_src: MacAddr,
    pub eth_dst: MacAddr,
    pub ip_src: Ipv4Addr,
    pub ip_dst: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
    pub ttl: u8,
    pub ident: u16,
    pub dont_frag: bool,
}

pub(super) fn sample_flow() -> Flow {
    Flow {
        eth_src: MacAddr([0x52, 0x54, 0x00, 0x00, 0x01, 0x05]),
        eth_dst: MacAddr([0x52, 0x54, 0x00, 0x00, 0x01, 0x01]),
        ip_src: Ipv4Addr::new(10, 244, 1, 5),
        ip_dst: Ipv4Addr::new(10, 96, 0, 10),
        src_port: 40000,
        dst_port: 53,
        ttl: 64,
        ident: 0x1c46,
        dont_frag: true,
    }
}

/// Writes Ethernet and IPv4 headers for an L4 segment of `l4_len` bytes; returns the frame with
/// the L4 part zeroed.
fn l2_l3(flow: &Flow, protocol: u8, l4_len: usize) -> Vec<u8> {
    let l3_start = ethernet::HEADER_LEN;
    let l4_start = l3_start + ipv4::HEADER_LEN;
    let mut frame = vec![0u8; l4_start + l4_len];
    EthernetRepr {
        src: flow.eth_src,
        dst: flow.eth_dst,
        ethertype: ethernet::ETHERTYPE_IPV4,
    }
    .emit(&mut frame)
    .unwrap();
    Ipv4Repr {
        src: flow.ip_src,
        dst: flow.ip_dst,
        protocol,
        ttl: flow.ttl,
        payload_len: u16::try_from(l4_len).unwrap(),
        dont_frag: flow.dont_frag,
        ident: flow.ident,
    }
    .emit(&mut frame[l3_start..])
    .unwrap();
    frame
}

/// An Ethernet/IPv4/UDP frame built only with our emitters and `fill_checksum`.
pub(super) fn build_udp_frame(flow: &Flow, payload: &[u8]) -> Vec<u8> {
    let l4_start = ethernet::HEADER_LEN + ipv4::HEADER_LEN;
    let mut frame = l2_l3(flow, ipv4::PROTO_UDP, udp::HEADER_LEN + payload.len());
    UdpRepr {
        src_port: flow.src_port,
        dst_port: flow.dst_port,
        payload_len: u16::try_from(payload.len()).unwrap(),
    }
    .emit(&mut frame[l4_start..])
    .unwrap();
    frame[l4_start + udp::HEADER_LEN..].copy_from_slice(payload);
    UdpPacket::new_checked(&mut frame[l4_start..])
        .unwrap()
        .fill_checksum(flow.ip_src, flow.ip_dst);
    frame
}

/// An Ethernet/IPv4/TCP frame (20-byte TCP header) built with our setters and `fill_checksum`.
pub(super) fn build_tcp_frame(
    flow: &Flow,
    seq: u32,
    ack: u32,
    flags: TcpFlags,
    window: u16,
    payload: &[u8],
) -> Vec<u8> {
    let l4_start = ethernet::HEADER_LEN + ipv4::HEADER_LEN;
    let mut frame = l2_l3(flow, ipv4::PROTO_TCP, tcp::HEADER_LEN + payload.len());
    frame[l4_start + tcp::HEADER_LEN..].copy_from_slice(payload);
    let mut segment = TcpPacket::new_unchecked(&mut frame[l4_start..]);
    segment.set_src_port(flow.src_port);
    segment.set_dst_port(flow.dst_port);
    segment.set_seq_number(seq);
    segment.set_ack_number(ack);
    segment.set_header_len(tcp::HEADER_LEN);
    segment.set_flags(flags);
    segment.set_window(window);
    segment.fill_checksum(flow.ip_src, flow.ip_dst);
    frame
}

/// The IPv4 packet inside an untagged frame.
pub(super) fn ipv4_of(frame: &[u8]) -> Ipv4Packet<&[u8]> {
    Ipv4Packet::new_checked(&frame[ethernet::HEADER_LEN..]).unwrap()
}

#[test]
fn errors_name_layer_and_field() {
    use super::WireError;
    let truncated = WireError::Truncated { layer: "udp" };
    let malformed = WireError::Malformed {
        layer: "vxlan",
        what: "I flag",
    };
    assert_eq!(truncated.to_string(), "truncated udp packet");
    assert_eq!(malformed.to_string(), "malformed vxlan packet: I flag");
    let boxed: Box<dyn std::error::Error> = Box::new(malformed);
    assert!(boxed.source().is_none());
}
