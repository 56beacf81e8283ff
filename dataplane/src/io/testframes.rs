//! Frames for the device tests: built with etherparse (an implementation independent of the
//! dataplane's wire module) or from literal byte layouts, and read back by fixed offsets of
//! plain Ethernet + IPv4 (no options) frames, which is all the kernel sends in these tests.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: frames are built from literals and checked by the tests"
)]

use std::time::{Duration, Instant};

use etherparse::{IcmpEchoHeader, Icmpv4Header, Icmpv4Type, PacketBuilder, UdpHeader};

use super::PacketIo;
use crate::packet::{Packet, PacketPool, PortId};

/// The MAC address the tests answer with (locally administered).
pub(crate) const OUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
/// A MAC address standing for "some other host" on the link.
pub(crate) const OTHER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x03];

/// An Ethernet + IPv4 + UDP frame with a complete checksum.
pub(crate) fn udp_frame(
    (src_mac, dst_mac): ([u8; 6], [u8; 6]),
    (src, dst): ([u8; 4], [u8; 4]),
    (sport, dport): (u16, u16),
    payload: &[u8],
) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src, dst, 64)
        .udp(sport, dport);
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut out, payload).unwrap();
    out
}

/// An IPv4 UDP datagram inside an Ethernet frame, read by offsets.
pub(crate) struct Udp<'a> {
    pub(crate) src: [u8; 4],
    pub(crate) dst: [u8; 4],
    pub(crate) sport: u16,
    pub(crate) dport: u16,
    pub(crate) checksum: u16,
    /// UDP header and payload.
    pub(crate) segment: &'a [u8],
}

impl Udp<'_> {
    pub(crate) fn payload(&self) -> &[u8] {
        &self.segment[8..]
    }
}

fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

pub(crate) fn parse_udp(frame: &[u8]) -> Option<Udp<'_>> {
    if frame.len() < 42 || be16(frame, 12) != 0x0800 || frame[14] != 0x45 || frame[23] != 17 {
        return None;
    }
    let udp_len = usize::from(be16(frame, 38));
    let segment = frame.get(34..34 + udp_len)?;
    Some(Udp {
        src: frame[26..30].try_into().unwrap(),
        dst: frame[30..34].try_into().unwrap(),
        sport: be16(frame, 34),
        dport: be16(frame, 36),
        checksum: be16(frame, 40),
        segment,
    })
}

/// The UDP checksum etherparse computes for `udp` from scratch.
pub(crate) fn reference_udp_checksum(udp: &Udp<'_>) -> u16 {
    let header = UdpHeader {
        source_port: udp.sport,
        destination_port: udp.dport,
        length: u16::try_from(udp.segment.len()).unwrap(),
        checksum: 0,
    };
    header
        .calc_checksum_ipv4_raw(udp.src, udp.dst, udp.payload())
        .unwrap()
}

/// Finishes a CHECKSUM_PARTIAL L4 checksum: the field holds the folded pseudo-header sum,
/// so the checksum is the complement of the one's-complement sum of the whole segment.
pub(crate) fn complete_partial_checksum(segment: &[u8]) -> u16 {
    let mut sum: u32 = segment
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An ARP reply to the ARP request `request` saying that its target IP is at `mac`.
pub(crate) fn arp_reply(request: &[u8], mac: [u8; 6]) -> Option<Vec<u8>> {
    // Ethernet, then ARP for Ethernet/IPv4: htype 1, ptype 0x0800, hlen 6, plen 4, op 1.
    let is_request = request.len() >= 42
        && be16(request, 12) == 0x0806
        && request[14..22] == [0, 1, 8, 0, 6, 4, 0, 1];
    if !is_request {
        return None;
    }
    let (sender_mac, sender_ip, target_ip) = (&request[22..28], &request[28..32], &request[38..42]);
    let mut reply = Vec::with_capacity(42);
    reply.extend_from_slice(sender_mac);
    reply.extend_from_slice(&mac);
    reply.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 2]);
    reply.extend_from_slice(&mac);
    reply.extend_from_slice(target_ip);
    reply.extend_from_slice(sender_mac);
    reply.extend_from_slice(sender_ip);
    Some(reply)
}

/// An ICMP echo message (header with checksum, then payload) for a raw ICMP socket.
pub(crate) fn icmp_echo_request(id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let header =
        Icmpv4Header::with_checksum(Icmpv4Type::EchoRequest(IcmpEchoHeader { id, seq }), payload);
    let mut out = header.to_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// The echo reply to the Ethernet-framed ICMP echo request `request`, from `mac`.
pub(crate) fn icmp_echo_reply(request: &[u8], mac: [u8; 6]) -> Option<Vec<u8>> {
    let is_echo_request = request.len() >= 42
        && be16(request, 12) == 0x0800
        && request[14] == 0x45
        && request[23] == 1
        && request[34] == 8;
    if !is_echo_request {
        return None;
    }
    let total = usize::from(be16(request, 16));
    let payload = request.get(42..14 + total)?;
    let builder = PacketBuilder::ethernet2(mac, request[6..12].try_into().unwrap())
        .ipv4(
            request[30..34].try_into().unwrap(),
            request[26..30].try_into().unwrap(),
            64,
        )
        .icmpv4_echo_reply(be16(request, 38), be16(request, 40));
    let mut out = Vec::new();
    builder.write(&mut out, payload).unwrap();
    Some(out)
}

/// Receives from `io` until `count` frames for which `wanted` holds have arrived or
/// `timeout` passes; other frames are discarded. Busy-polls (tests are short).
pub(crate) fn receive_matching(
    io: &mut impl PacketIo,
    pool: &mut PacketPool,
    count: usize,
    timeout: Duration,
    wanted: impl Fn(&Packet) -> bool,
) -> Vec<Packet> {
    let deadline = Instant::now() + timeout;
    let mut matched = Vec::new();
    let mut batch = Vec::new();
    while matched.len() < count && Instant::now() < deadline {
        io.rx_burst(PortId(7), pool, &mut batch, 32).unwrap();
        for pkt in batch.drain(..) {
            if wanted(&pkt) {
                matched.push(pkt);
            } else {
                pool.put(pkt);
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    matched
}

/// Transmits one frame through `io`, returning how many frames it accepted (0 or 1).
pub(crate) fn send_one(io: &mut impl PacketIo, pool: &mut PacketPool, frame: &[u8]) -> usize {
    let mut pkt = pool.get().unwrap();
    assert!(pkt.fill(frame));
    io.tx_burst(&mut vec![pkt], pool).unwrap()
}
