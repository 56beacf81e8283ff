//! GSO super-packets through the pipeline: one run per super-packet through Service DNAT and
//! routing, then software segmentation for the uplink (VXLAN and routed), with every segment
//! checked from scratch; and lying virtio-net headers dropped under their names.

mod common;

use common::frames::{self, L4, seen};
use common::*;
use dataplane::drop::DropReason;
use dataplane::offload::{segment, vnet};
use dataplane::packet::{Offload, Packet, PacketPool, Verdict};
use dataplane::tables::node::OverlayMode;

const MSS: u16 = 1448;

fn gw_mac(h: &Harness) -> dataplane::wire::MacAddr {
    h.snap.node.gateway_mac
}

/// A super-packet from the client pod as its kernel hands it over with TSO: `len` payload
/// bytes, the TCP checksum field holding the pseudo-header seed, GSO TCPv4.
fn super_packet(h: &Harness, dst: &str, dport: u16, seq: u32, len: usize) -> Packet {
    let payload: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
    let l4 = L4::Ack {
        sport: 40100,
        dport,
        seq,
        ack: 9,
    };
    let mut f = frames::ipv4(
        CLIENT_MAC,
        gw_mac(h),
        ip(CLIENT_IP),
        ip(dst),
        64,
        true,
        l4,
        &payload,
    );
    let at = 34;
    let seed = !frames::ones_sum(&[&f[26..34], &[0, 6], &((f.len() - at) as u16).to_be_bytes()]);
    f[at + 16..at + 18].copy_from_slice(&seed.to_be_bytes());
    let mut pkt = Packet::from_frame(&f).expect("fits a large buffer");
    pkt.meta.in_port = CLIENT;
    pkt.meta.csum_partial = true;
    pkt.meta.offload = Offload {
        gso_type: vnet::GSO_TCPV4,
        gso_size: MSS,
        hdr_len: 54,
        csum_start: 34,
        csum_offset: 16,
        encap_len: 0,
    };
    pkt
}

fn open_flow(h: &mut Harness, dst: &str, dport: u16) {
    let syn = frames::ipv4(
        CLIENT_MAC,
        gw_mac(h),
        ip(CLIENT_IP),
        ip(dst),
        64,
        true,
        L4::Syn {
            sport: 40100,
            dport,
            seq: 1,
        },
        &[],
    );
    h.expect_tx(CLIENT, &syn, UPLINK);
    // The backend's SYN-ACK (DNAT'd flows: from the backend's own address and port).
    let (from, sport) = if dst == VIP_STORE {
        (REMOTE_BE, 8080)
    } else {
        (dst, dport)
    };
    let routed = h.snap.node.overlay == OverlayMode::Routed;
    let (src_mac, dst_mac) = if routed {
        (NODE_B_UPLINK_MAC, h.snap.node.uplink_mac)
    } else {
        (NODE_B_VTEP_MAC, h.snap.node.vtep_mac)
    };
    let synack = frames::ipv4(
        src_mac,
        dst_mac,
        ip(from),
        ip(CLIENT_IP),
        63,
        true,
        L4::SynAck {
            sport,
            dport: 40100,
            seq: 5000,
            ack: 2,
        },
        b"",
    );
    let wire = if routed {
        synack
    } else {
        frames::vxlan(
            NODE_B_UPLINK_MAC,
            h.snap.node.uplink_mac,
            ip(NODE_B),
            ip(NODE_A),
            8472,
            1,
            &synack,
        )
    };
    h.expect_tx(UPLINK, &wire, CLIENT);
}

/// Segments a transmitted super-packet and returns the segments' bytes, each checked.
fn segments(pkt: &Packet) -> Vec<Vec<u8>> {
    let o = pkt.meta.offload;
    let mut pool = PacketPool::with_capacity(128);
    let mut out = Vec::new();
    let n = segment::segment(
        pkt.data(),
        usize::from(o.encap_len),
        usize::from(o.gso_size),
        &pkt.meta,
        &mut pool,
        &mut out,
    )
    .expect("segments");
    assert_eq!(n, out.len());
    out.iter()
        .map(|s| {
            frames::assert_valid(s.data());
            s.data().to_vec()
        })
        .collect()
}

#[test]
fn a_super_packet_to_a_service_is_translated_once_and_segments_over_vxlan() {
    let mut h = Harness::new();
    open_flow(&mut h, VIP_STORE, 80);
    let packets_before = h.pipe.stats.packets;
    let mut sp = super_packet(&h, VIP_STORE, 80, 2, 20_000);
    assert_eq!(h.pipe.process(&h.snap, &mut sp), Verdict::Tx(UPLINK));
    assert_eq!(h.pipe.stats.packets, packets_before + 1, "one pipeline run");
    assert_eq!(usize::from(sp.meta.offload.encap_len), 50);
    let pod_mtu = h.snap.node.pod_mtu();
    assert!(
        sp.meta.offload.gso_size <= pod_mtu - 40,
        "segments fit the pod MTU"
    );
    let segs = segments(&sp);
    assert_eq!(
        segs.len(),
        20_000usize.div_ceil(usize::from(sp.meta.offload.gso_size))
    );
    let mut payload = Vec::new();
    for s in &segs {
        assert!(
            s.len() - 14 <= usize::from(h.snap.node.underlay_mtu),
            "no IP fragments"
        );
        let inner = seen(&s[50..]);
        assert_eq!(
            (inner.dst, inner.dport),
            (ip(REMOTE_BE), 8080),
            "DNAT in every segment"
        );
        payload.extend_from_slice(&inner.payload);
    }
    let expected: Vec<u8> = (0..20_000).map(|i| (i % 253) as u8).collect();
    assert_eq!(payload, expected);
}

#[test]
fn a_super_packet_larger_than_the_path_is_resegmented_in_routed_mode() {
    let mut h = Harness::with_overlay(OverlayMode::Routed);
    open_flow(&mut h, REMOTE_BE, 8080);
    let mut sp = super_packet(&h, REMOTE_BE, 8080, 2, 30_000);
    sp.meta.offload.gso_size = 8000; // a pod MTU larger than the path
    assert_eq!(h.pipe.process(&h.snap, &mut sp), Verdict::Tx(UPLINK));
    assert_eq!(sp.meta.offload.encap_len, 0);
    let mtu = usize::from(h.snap.node.pod_mtu());
    for s in segments(&sp) {
        assert!(
            s.len() - 14 <= mtu,
            "segment of {} bytes fits {mtu}",
            s.len() - 14
        );
    }
}

#[test]
fn lying_virtio_net_headers_are_dropped_under_their_names() {
    let mut h = Harness::new();
    open_flow(&mut h, VIP_STORE, 80);
    let mut zero = super_packet(&h, VIP_STORE, 80, 2, 5000);
    zero.meta.offload.gso_size = 0;
    assert_eq!(
        h.pipe.process(&h.snap, &mut zero),
        Verdict::Drop(DropReason::VnetHeaderInvalid)
    );
    let mut past = super_packet(&h, VIP_STORE, 80, 2, 5000);
    past.meta.offload.hdr_len = u16::MAX;
    assert_eq!(
        h.pipe.process(&h.snap, &mut past),
        Verdict::Drop(DropReason::VnetHeaderInvalid)
    );
    let mut udp = Packet::from_frame(&frames::ipv4(
        CLIENT_MAC,
        gw_mac(&h),
        ip(CLIENT_IP),
        ip(VIP_DNS),
        64,
        true,
        L4::Udp {
            sport: 5000,
            dport: 53,
        },
        &[0u8; 3000],
    ))
    .expect("fits");
    udp.meta.in_port = CLIENT;
    udp.meta.csum_partial = true;
    udp.meta.offload = Offload {
        gso_type: vnet::GSO_TCPV4,
        gso_size: MSS,
        ..Offload::default()
    };
    assert_eq!(
        h.pipe.process(&h.snap, &mut udp),
        Verdict::Drop(DropReason::GsoTypeMismatch)
    );
    assert_eq!(h.pipe.drops.get(DropReason::VnetHeaderInvalid), 2);
    assert_eq!(h.pipe.drops.get(DropReason::GsoTypeMismatch), 1);
}
