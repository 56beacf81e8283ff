//! The worker's poll step over the in-memory backend: frames in on one port come out on the
//! port their verdict names; drops and refused transmissions are counted.

mod common;

use common::frames::{self, L4, seen};
use common::*;
use dataplane::drop::DropReason;
use dataplane::io::mem::MemPort;
use dataplane::pipeline::Pipeline;
use dataplane::worker::Worker;

fn worker(tx_capacity: usize) -> (Worker<MemPort>, dataplane::snapshot::Snapshot) {
    let (ct, aff) = tables(1024);
    let ports = (0..5).map(|_| MemPort::new(tx_capacity)).collect();
    (
        Worker::new(Pipeline::new(ct, aff, 3), ports, 256),
        snapshot(dataplane::tables::node::OverlayMode::Vxlan),
    )
}

#[test]
fn frames_cross_from_pod_port_to_pod_port_and_drops_are_counted() {
    let (mut w, snap) = worker(usize::MAX);
    let gw = snap.node.gateway_mac;
    for sport in 0..10u16 {
        let f = frames::ipv4(
            CLIENT_MAC,
            gw,
            ip(CLIENT_IP),
            ip(BE1_IP),
            64,
            true,
            L4::Udp {
                sport: 1000 + sport,
                dport: 53,
            },
            b"x",
        );
        w.ports[usize::from(CLIENT.0)].inject(&f);
    }
    // One spoofed frame.
    let spoof = frames::ipv4(
        CLIENT_MAC,
        gw,
        ip("10.244.1.99"),
        ip(BE1_IP),
        64,
        true,
        L4::Udp { sport: 1, dport: 2 },
        b"x",
    );
    w.ports[usize::from(CLIENT.0)].inject(&spoof);

    assert_eq!(w.poll_once(&snap, 1000), 11);
    let out = w.ports[usize::from(BE1.0)].take_tx();
    assert_eq!(out.len(), 10);
    for f in &out {
        frames::assert_valid(f);
        assert_eq!(seen(f).dst, ip(BE1_IP));
    }
    assert_eq!(w.pipeline.drops.get(DropReason::SpoofedSource), 1);
    assert_eq!(w.poll_once(&snap, 1000), 0, "nothing left");
}

#[test]
fn a_full_transmit_ring_is_counted_and_buffers_are_recycled() {
    let (mut w, snap) = worker(3);
    let gw = snap.node.gateway_mac;
    for round in 0..20u16 {
        for i in 0..5u16 {
            let f = frames::ipv4(
                CLIENT_MAC,
                gw,
                ip(CLIENT_IP),
                ip(BE1_IP),
                64,
                true,
                L4::Udp {
                    sport: 2000 + round * 5 + i,
                    dport: 53,
                },
                b"x",
            );
            w.ports[usize::from(CLIENT.0)].inject(&f);
        }
        w.poll_once(&snap, 1000);
        w.ports[usize::from(BE1.0)].take_tx();
    }
    // Each round offers 5 to a ring of 3: 2 refused per round, and no buffer leaks
    // (100 frames through a pool of 256 buffers would fail to receive otherwise).
    assert_eq!(w.pipeline.drops.get(DropReason::TxRingFull), 40);
    assert_eq!(w.pipeline.stats.forwarded, 100);
}
