//! Bad input from the VXLAN tunnel socket (`io::udp_tunnel`) meets the pipeline under its
//! named drop reasons: each datagram of a `UDP_GRO` message is framed as the raw uplink would
//! have received it and decapsulated by the pipeline, so a short datagram, one that is not
//! VXLAN, a wrong VNI, an unknown peer or an inner frame shorter than Ethernet is dropped
//! and counted there; a `gso_size` that does not divide the message leaves a short last
//! datagram that is delivered like the others.

mod common;

use std::net::Ipv4Addr;

use common::frames::{self, L4};
use common::*;
use dataplane::drop::DropReason;
use dataplane::io::udp_tunnel::{OUTER, RxContext, RxCounts, split_message};
use dataplane::packet::{Packet, PacketPool, Verdict};
use dataplane::wire::MacAddr;

const PORT: u16 = 8472;

/// A VXLAN datagram (header with `flags` and `vni`, then `inner`).
fn datagram(flags: u8, vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut d = vec![flags, 0, 0, 0];
    d.extend_from_slice(&(vni << 8).to_be_bytes());
    d.extend_from_slice(inner);
    d
}

/// A UDP packet from a pod on node B to the client pod on this node.
fn inner_udp(payload: usize) -> Vec<u8> {
    frames::ipv4(
        NODE_B_VTEP_MAC,
        MacAddr([2, 0xfc, 192, 168, 50, 2]),
        ip(REMOTE_BE),
        ip(CLIENT_IP),
        63,
        true,
        L4::Udp {
            sport: 4000,
            dport: 9000,
        },
        &vec![7u8; payload],
    )
}

/// The frames `split_message` makes of one message of `dgrams` from `from`, cut at `gso`.
fn frames_of(h: &Harness, dgrams: &[Vec<u8>], gso: Option<usize>, from: Ipv4Addr) -> Vec<Packet> {
    let mut pool = PacketPool::with_large(64, 8);
    let mut buf = pool.get_large().expect("a large buffer");
    let area = buf.receive_area();
    let mut at = OUTER;
    for d in dgrams {
        area[at..at + d.len()].copy_from_slice(d);
        at += d.len();
    }
    let ctx = RxContext {
        node_ip: ip(NODE_A),
        port: PORT,
        uplink_mac: h.snap.node.uplink_mac.0,
        in_port: UPLINK,
    };
    let mut batch = Vec::new();
    let mut counts = RxCounts::default();
    split_message(
        buf,
        (at - OUTER, gso),
        (from, 50000),
        &ctx,
        &mut pool,
        &mut batch,
        &mut counts,
    );
    assert_eq!(counts.frames, batch.len() as u64);
    batch
}

fn verdicts(h: &mut Harness, frames: &[Packet]) -> Vec<Verdict> {
    frames.iter().map(|f| h.run(UPLINK, f.data()).0).collect()
}

#[test]
fn good_datagrams_from_a_peer_reach_the_pod() {
    let mut h = Harness::new();
    let vni = h.snap.node.vni;
    let frames = frames_of(&h, &[datagram(0x08, vni, &inner_udp(64))], None, ip(NODE_B));
    assert_eq!(verdicts(&mut h, &frames), vec![Verdict::Tx(CLIENT)]);
}

#[test]
fn bad_datagrams_from_the_socket_are_dropped_under_their_names() {
    let mut h = Harness::new();
    let vni = h.snap.node.vni;
    let inner = inner_udp(64);
    let cases: [(&str, Vec<u8>, Ipv4Addr, DropReason); 5] = [
        (
            "short",
            vec![0x08, 0, 0],
            ip(NODE_B),
            DropReason::VxlanBadHeader,
        ),
        (
            "not VXLAN (no I flag)",
            datagram(0, vni, &inner),
            ip(NODE_B),
            DropReason::VxlanBadHeader,
        ),
        (
            "wrong VNI",
            datagram(0x08, vni + 1, &inner),
            ip(NODE_B),
            DropReason::VxlanBadHeader,
        ),
        (
            "unknown peer",
            datagram(0x08, vni, &inner),
            Ipv4Addr::new(192, 168, 50, 99),
            DropReason::VxlanUnknownPeer,
        ),
        (
            "inner frame shorter than Ethernet",
            datagram(0x08, vni, &inner[..6]),
            ip(NODE_B),
            DropReason::Malformed,
        ),
    ];
    for (what, d, from, reason) in cases {
        let frames = frames_of(&h, &[d], None, from);
        assert_eq!(frames.len(), 1, "{what}");
        let before = h.pipe.drops.get(reason);
        assert_eq!(
            verdicts(&mut h, &frames),
            vec![Verdict::Drop(reason)],
            "{what}"
        );
        assert_eq!(h.pipe.drops.get(reason), before + 1, "{what}: counted once");
    }
}

#[test]
fn a_gso_size_that_does_not_divide_the_message_delivers_every_datagram() {
    let mut h = Harness::new();
    let vni = h.snap.node.vni;
    let full = datagram(0x08, vni, &inner_udp(200));
    let short = datagram(0x08, vni, &inner_udp(50));
    let dgrams = [full.clone(), full.clone(), short];
    let frames = frames_of(&h, &dgrams, Some(full.len()), ip(NODE_B));
    assert_eq!(frames.len(), 3);
    assert_eq!(verdicts(&mut h, &frames), vec![Verdict::Tx(CLIENT); 3]);
    // Cut at a size that does not match the datagrams, the pieces that do not start with a
    // VXLAN header are dropped by name (the first one only carries 5 bytes of trailer).
    let frames = frames_of(&h, &dgrams, Some(full.len() + 5), ip(NODE_B));
    assert_eq!(frames.len(), 3);
    assert_eq!(
        verdicts(&mut h, &frames)[1..],
        [Verdict::Drop(DropReason::VxlanBadHeader); 2]
    );
}
