//! The tunnel's datagram code without a kernel: a VXLAN super-packet cut by `tx` into
//! datagrams with correct inner headers, and those datagrams as `UDP_GRO` would return them
//! split and merged back by `rx`. Kernel tests (sockets, filter) are in `kernel_tests`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step must stop the test with its message"
)]

use std::net::Ipv4Addr;

use super::rx::{RxContext, RxCounts, split_message};
use super::tx::{Added, OUTER, TxBatch, TxMsg, tunnel_destination};
use crate::offload::testing::{MSS, check_tcp, finish_partial, super_packet};
use crate::packet::{Packet, PacketPool, PortId};

const NODE: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 2);
const PEER: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 3);
const PORT: u16 = 8472;
const VXLAN_HDR: [u8; 8] = [0x08, 0, 0, 0, 0, 0, 1, 0];

fn ctx() -> RxContext {
    RxContext {
        node_ip: NODE,
        port: PORT,
        uplink_mac: [2, 0xfe, 192, 168, 50, 2],
        in_port: PortId(0),
    }
}

/// `inner` wrapped as the pipeline's encap leaves it: outer Ethernet, IPv4 from NODE to
/// PEER, UDP to PORT, the VXLAN header; a super-packet keeps its offload with `encap_len`.
fn encapsulated(inner: &Packet) -> Packet {
    let mut frame = vec![0u8; OUTER];
    frame[12..14].copy_from_slice(&[0x08, 0x00]);
    frame[14] = 0x45;
    frame[14 + 6] = 0x40;
    frame[14 + 8] = 64;
    frame[14 + 9] = 17;
    frame[14 + 12..14 + 16].copy_from_slice(&NODE.octets());
    frame[14 + 16..14 + 20].copy_from_slice(&PEER.octets());
    frame[34..36].copy_from_slice(&50000u16.to_be_bytes());
    frame[36..38].copy_from_slice(&PORT.to_be_bytes());
    frame.extend_from_slice(&VXLAN_HDR);
    frame.extend_from_slice(inner.data());
    // As `stages::vxlan::encap` writes them: clamped to what a header can say.
    let udp_len = (frame.len() - 34).min(65_535 - 20) as u16;
    frame[16..18].copy_from_slice(&(udp_len + 20).to_be_bytes());
    frame[38..40].copy_from_slice(&udp_len.to_be_bytes());
    let mut ip = crate::wire::Ipv4Packet::new_unchecked(&mut frame[14..]);
    ip.fill_checksum();
    let mut pkt = Packet::from_frame(&frame).unwrap();
    pkt.meta = inner.meta;
    if pkt.meta.offload.is_gso() {
        pkt.meta.offload.encap_len = (OUTER + 8) as u8;
    }
    pkt
}

/// The bytes of message `m` of `batch`, its pieces gathered as the kernel does.
fn message_bytes(batch: &TxBatch, m: &TxMsg) -> Vec<u8> {
    let bytes: Vec<u8> = batch.pieces(m).flatten().copied().collect();
    assert_eq!(bytes.len(), m.len);
    bytes
}

/// The datagrams of message `m` of `batch`.
fn datagrams(batch: &TxBatch, m: &TxMsg) -> Vec<Vec<u8>> {
    let bytes = message_bytes(batch, m);
    match m.gso {
        0 => vec![bytes],
        g => bytes.chunks(usize::from(g)).map(<[u8]>::to_vec).collect(),
    }
}

/// What the kernel's UDP_GRO would hand over for `dgrams` (all but the last of one size).
fn message(dgrams: &[&[u8]], pool: &mut PacketPool) -> (Packet, usize) {
    let mut buf = pool.get_large().unwrap();
    let area = buf.receive_area();
    let mut at = OUTER;
    for d in dgrams {
        area[at..at + d.len()].copy_from_slice(d);
        at += d.len();
    }
    (buf, at - OUTER)
}

/// `split_with` and the first datagram's size as `gso_size`, as the kernel reports it.
fn split(dgrams: &[&[u8]]) -> (Vec<Packet>, RxCounts) {
    split_with(dgrams, Some(dgrams[0].len()))
}

fn split_with(dgrams: &[&[u8]], gso: Option<usize>) -> (Vec<Packet>, RxCounts) {
    let mut pool = PacketPool::with_large(64, 8);
    let (buf, len) = message(dgrams, &mut pool);
    let mut batch = Vec::new();
    let mut counts = RxCounts::default();
    split_message(
        buf,
        (len, gso),
        (PEER, 50000),
        &ctx(),
        &mut pool,
        &mut batch,
        &mut counts,
    );
    (batch, counts)
}

#[test]
fn only_vxlan_from_the_node_to_the_port_goes_through_the_socket() {
    let inner = super_packet(1, 100);
    let pkt = encapsulated(&inner);
    assert_eq!(tunnel_destination(pkt.data(), NODE, PORT), Some(PEER));
    assert_eq!(tunnel_destination(pkt.data(), PEER, PORT), None);
    assert_eq!(tunnel_destination(pkt.data(), NODE, 4789), None);
    assert_eq!(tunnel_destination(inner.data(), NODE, PORT), None);
    assert_eq!(tunnel_destination(&pkt.data()[..30], NODE, PORT), None);
}

#[test]
fn a_super_packet_becomes_equal_datagrams_with_complete_inner_headers() {
    let len = 64_000;
    let pkt = encapsulated(&super_packet(1000, len));
    let mut batch = TxBatch::default();
    assert!(batch.add(pkt, NODE, PORT).is_ok());
    let msgs = batch.messages().to_vec();
    let per_datagram = 8 + 66 + MSS;
    let per_msg = super::tx::MAX_UDP_PAYLOAD / per_datagram;
    let n = len.div_ceil(MSS);
    assert_eq!(msgs.len(), n.div_ceil(per_msg), "{msgs:?}");
    assert!(msgs.iter().all(|m| m.dst == PEER));
    assert_eq!(msgs.iter().filter(|m| m.ends_packet).count(), 1);
    assert!(msgs.last().unwrap().ends_packet);
    let all: Vec<Vec<u8>> = msgs.iter().flat_map(|m| datagrams(&batch, m)).collect();
    assert_eq!(all.len(), n);
    let mut payload = Vec::new();
    for (i, d) in all.iter().enumerate() {
        assert_eq!(&d[..8], &VXLAN_HDR);
        let seg = check_tcp(&d[8..]);
        let last = i + 1 == n;
        assert_eq!(seg.seq, 1000 + (i * MSS) as u32, "segment {i}");
        assert_eq!(seg.psh, last, "PSH only on the last, segment {i}");
        assert!(!seg.fin);
        assert_eq!(seg.payload.len(), if last { len - i * MSS } else { MSS });
        if !last {
            assert_eq!(d.len(), per_datagram);
        }
        payload.extend_from_slice(&seg.payload);
    }
    let idents: Vec<u16> = all.iter().map(|d| check_tcp(&d[8..]).ident).collect();
    assert!(idents.windows(2).all(|w| w[1] == w[0].wrapping_add(1)));
    let original = check_tcp(&finish_partial(super_packet(1000, len).data(), 34)).payload;
    assert_eq!(payload, original);
}

#[test]
fn a_plain_vxlan_frame_is_one_datagram_and_other_frames_stay_raw() {
    let mut inner = super_packet(5, 300);
    inner.meta = Default::default();
    let pkt = encapsulated(&inner);
    let datagram = pkt.data()[OUTER..].to_vec();
    let inner_frame = inner.data().to_vec();
    let mut batch = TxBatch::default();
    assert!(batch.add(pkt, NODE, PORT).is_ok());
    let (why, back) = batch.add(inner, NODE, PORT).unwrap_err();
    assert_eq!(why, Added::NotTunnel);
    assert_eq!(back.data(), &inner_frame[..], "handed back whole");
    let m = batch.messages()[0].clone();
    assert_eq!((m.gso, m.len, m.ends_packet), (0, datagram.len(), true));
    assert_eq!(message_bytes(&batch, &m), datagram);
}

#[test]
fn a_full_arena_asks_for_a_flush_and_keeps_what_it_has() {
    let inner = super_packet(1, 64_000);
    let mut pool = PacketPool::with_large(64, 64);
    let mut batch = TxBatch::default();
    let mut queued = 0;
    let refused = loop {
        match batch.add(encapsulated(&inner), NODE, PORT) {
            Ok(()) => queued += 1,
            Err((why, _)) => break why,
        }
    };
    assert!(queued >= 10, "{queued} super-packets fit the batch");
    assert_eq!(refused, Added::NoRoom);
    let packets = batch.messages().iter().filter(|m| m.ends_packet).count();
    assert_eq!(packets, queued, "what was queued stays");
    batch.clear(&mut pool);
    assert!(batch.messages().is_empty());
    assert!(batch.add(encapsulated(&inner), NODE, PORT).is_ok());
}

/// The datagrams of one 64,000-byte super-packet, as the receiver gets them.
fn sent_datagrams(seq: u32, len: usize) -> Vec<Vec<u8>> {
    let pkt = encapsulated(&super_packet(seq, len));
    let mut batch = TxBatch::default();
    assert!(batch.add(pkt, NODE, PORT).is_ok());
    let msgs = batch.messages().to_vec();
    msgs.iter().flat_map(|m| datagrams(&batch, m)).collect()
}

/// Checks a merged frame and returns its inner TCP payload.
fn merged_payload(pkt: &Packet, segments: usize) -> Vec<u8> {
    let o = pkt.meta.offload;
    assert!(o.is_gso() && pkt.meta.csum_partial, "{:?}", pkt.meta);
    assert_eq!(usize::from(o.gso_size), MSS);
    assert_eq!((o.csum_start, o.hdr_len, o.encap_len), (34, 66, 0));
    let frame = pkt.data();
    assert_eq!(&frame[..6], &ctx().uplink_mac);
    let outer = check_outer(frame);
    assert_eq!(outer, frame.len() - OUTER);
    let inner = finish_partial(&frame[OUTER + 8..], 34);
    let seg = check_tcp(&inner);
    assert_eq!(seg.payload.len().div_ceil(MSS), segments);
    seg.payload
}

/// Asserts the outer IPv4/UDP headers (lengths, checksum, addresses, ports); returns the
/// UDP payload length.
fn check_outer(frame: &[u8]) -> usize {
    let ip = crate::wire::Ipv4Packet::new_checked(&frame[14..]).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!(usize::from(ip.total_len()), frame.len() - 14);
    assert_eq!((ip.src_addr(), ip.dst_addr()), (PEER, NODE));
    let udp = crate::wire::UdpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!((udp.src_port(), udp.dst_port()), (50000, PORT));
    usize::from(udp.len()) - 8
}

#[test]
fn received_datagrams_of_one_flow_merge_into_one_super_packet() {
    let sent = sent_datagrams(1000, 40_000);
    let refs: Vec<&[u8]> = sent.iter().map(Vec::as_slice).collect();
    let (frames, counts) = split(&refs);
    assert_eq!(frames.len(), 1);
    assert_eq!(counts.datagrams, refs.len() as u64);
    assert_eq!(counts.merged, refs.len() as u64 - 1);
    let payload = merged_payload(&frames[0], refs.len());
    let original = check_tcp(&finish_partial(super_packet(1000, 40_000).data(), 34)).payload;
    assert_eq!(payload, original);
    let inner = &frames[0].data()[OUTER + 8..];
    assert_eq!(inner[34 + 13] & 0x08, 0x08, "the last segment's PSH kept");
}

#[test]
fn a_segment_with_a_bad_checksum_is_not_merged_and_splits_the_run() {
    let mut sent = sent_datagrams(1000, 20 * MSS);
    let last = sent[7].len() - 1;
    sent[7][last] ^= 0xff;
    let refs: Vec<&[u8]> = sent.iter().map(Vec::as_slice).collect();
    let (frames, _) = split(&refs);
    assert_eq!(frames.len(), 3);
    merged_payload(&frames[0], 7);
    assert!(!frames[1].meta.offload.is_gso(), "the bad one alone");
    assert_eq!(&frames[1].data()[OUTER..], refs[7]);
    check_outer(frames[1].data());
    merged_payload(&frames[2], 12);
}

#[test]
fn datagrams_of_two_flows_keep_their_order() {
    let a = sent_datagrams(1000, 3 * MSS);
    let mut b = sent_datagrams(9000, 3 * MSS);
    for d in &mut b {
        // Another source port: another flow (the checksum follows the port).
        let sport = u16::from_be_bytes([d[42], d[43]]);
        d[42..44].copy_from_slice(&(sport + 1).to_be_bytes());
        let c = u16::from_be_bytes([d[58], d[59]]);
        d[58..60]
            .copy_from_slice(&crate::wire::checksum::update_u16(c, sport, sport + 1).to_be_bytes());
    }
    let refs: Vec<&[u8]> = [&a[..2], &b[..], &a[2..]]
        .iter()
        .flat_map(|s| s.iter().map(Vec::as_slice))
        .collect();
    let (frames, _) = split(&refs);
    let seqs: Vec<u32> = frames
        .iter()
        .map(|f| u32::from_be_bytes(f.data()[OUTER + 8 + 38..OUTER + 8 + 42].try_into().unwrap()))
        .collect();
    assert_eq!(seqs, vec![1000, 9000, 1000 + 2 * MSS as u32]);
}

#[test]
fn a_gso_size_that_does_not_divide_leaves_a_short_last_datagram() {
    let dgrams: Vec<Vec<u8>> = [100, 100, 37]
        .iter()
        .map(|&n| {
            let mut d = VXLAN_HDR.to_vec();
            d.extend((0..n - 8).map(|i| i as u8));
            d
        })
        .collect();
    let refs: Vec<&[u8]> = dgrams.iter().map(Vec::as_slice).collect();
    let (frames, counts) = split_with(&refs, Some(100));
    assert_eq!(frames.len(), 3);
    assert_eq!(counts.datagrams, 3);
    for (f, d) in frames.iter().zip(&refs) {
        assert_eq!(&f.data()[OUTER..], *d);
        assert_eq!(check_outer(f.data()), d.len());
    }
    // A size of 0, or one past the message, is one datagram.
    for gso in [Some(0), Some(500), None] {
        let (frames, _) = split_with(&refs, gso);
        assert_eq!(frames.len(), 1, "{gso:?}");
        assert_eq!(frames[0].len(), OUTER + 237);
    }
}
