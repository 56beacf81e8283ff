//! Frames for the offload tests, built and checked with etherparse (an implementation
//! independent of the dataplane's wire module).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: frames are built from literals and checked by the tests"
)]

use std::net::Ipv4Addr;

use etherparse::{NetHeaders, PacketBuilder, PacketHeaders, TcpOptionElement, TransportHeader};

use crate::packet::{Offload, Packet};
use crate::wire::checksum::{fold, pseudo_header_v4};

pub(crate) const SRC: [u8; 4] = [10, 244, 1, 5];
pub(crate) const DST: [u8; 4] = [10, 244, 2, 7];
pub(crate) const MSS: usize = 1448;

/// A TCP segment from SRC:40000 to DST:5201 with timestamps, complete checksums, DF set, and
/// a payload of `len` bytes counting up from `seq` (so a payload byte tells its position).
pub(crate) fn tcp_frame(seq: u32, ack: u32, psh: bool, len: usize) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2([0x0a, 0x58, 10, 244, 1, 5], [2, 0, 0, 0, 0, 1])
        .ipv4(SRC, DST, 64)
        .tcp(40000, 5201, seq, 501)
        .ack(ack)
        .options(&[
            TcpOptionElement::Noop,
            TcpOptionElement::Noop,
            TcpOptionElement::Timestamp(0x1111_2222, 0x3333_4444),
        ])
        .unwrap();
    if psh {
        b = b.psh();
    }
    let payload: Vec<u8> = (0..len).map(|i| (seq as usize + i) as u8).collect();
    let mut out = Vec::new();
    b.write(&mut out, &payload).unwrap();
    // etherparse leaves DF clear; set it and fix the header checksum as Linux sends it.
    out[14 + 6] |= 0x40;
    let mut ip = crate::wire::Ipv4Packet::new_unchecked(&mut out[14..]);
    ip.fill_checksum();
    out
}

/// A TSO super-packet as a pod's kernel hands it over: one frame with `len` payload bytes,
/// the TCP checksum field holding the pseudo-header seed, GSO TCPv4 with `MSS`.
pub(crate) fn super_packet(seq: u32, len: usize) -> Packet {
    let mut frame = tcp_frame(seq, 7, true, len);
    let tcp_len = frame.len() - 34;
    let seed = fold(pseudo_header_v4(
        Ipv4Addr::from(SRC),
        Ipv4Addr::from(DST),
        6,
        tcp_len as u16,
    ));
    frame[34 + 16..34 + 18].copy_from_slice(&seed.to_be_bytes());
    let mut pkt = Packet::from_frame(&frame).unwrap();
    pkt.meta.csum_partial = true;
    pkt.meta.offload = Offload {
        gso_type: super::vnet::GSO_TCPV4,
        gso_size: MSS as u16,
        hdr_len: 66,
        csum_start: 34,
        csum_offset: 16,
        encap_len: 0,
    };
    pkt
}

/// A checked TCP segment: what etherparse read, after asserting both checksums are right.
#[derive(Debug)]
pub(crate) struct Checked {
    pub(crate) seq: u32,
    pub(crate) psh: bool,
    pub(crate) fin: bool,
    pub(crate) ident: u16,
    pub(crate) payload: Vec<u8>,
    pub(crate) src: [u8; 4],
    pub(crate) dst: [u8; 4],
    pub(crate) ports: (u16, u16),
}

/// Parses an Ethernet/IPv4/TCP frame and asserts its IPv4 and TCP checksums and lengths.
pub(crate) fn check_tcp(frame: &[u8]) -> Checked {
    let h = PacketHeaders::from_ethernet_slice(frame).expect("parses");
    let Some(NetHeaders::Ipv4(ip, _)) = h.net else {
        panic!("not IPv4")
    };
    assert_eq!(
        ip.header_checksum,
        ip.calc_header_checksum(),
        "IPv4 checksum"
    );
    assert_eq!(
        usize::from(ip.total_len),
        frame.len() - 14,
        "IPv4 total length"
    );
    let Some(TransportHeader::Tcp(tcp)) = h.transport else {
        panic!("not TCP")
    };
    let payload = h.payload.slice();
    assert_eq!(
        tcp.checksum,
        tcp.calc_checksum_ipv4(&ip, payload).unwrap(),
        "TCP checksum"
    );
    Checked {
        seq: tcp.sequence_number,
        psh: tcp.psh,
        fin: tcp.fin,
        ident: ip.identification,
        payload: payload.to_vec(),
        src: ip.source,
        dst: ip.destination,
        ports: (tcp.source_port, tcp.destination_port),
    }
}

/// Finishes a partial TCP checksum (the field holds the seed) the way a receiver does, and
/// returns the frame with the complete checksum.
pub(crate) fn finish_partial(frame: &[u8], l4: usize) -> Vec<u8> {
    let mut out = frame.to_vec();
    let total = crate::wire::checksum::sum(&out[l4..]);
    let c = crate::wire::checksum::finish(total);
    out[l4 + 16..l4 + 18].copy_from_slice(&c.to_be_bytes());
    out
}
