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
        w.port_mut(CLIENT).expect("client port").inject(&f);
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
    w.port_mut(CLIENT).expect("client port").inject(&spoof);

    assert_eq!(w.poll_once(&snap, 1000), 11);
    let out = w.port_mut(BE1).expect("be1 port").take_tx();
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
            w.port_mut(CLIENT).expect("client port").inject(&f);
        }
        w.poll_once(&snap, 1000);
        w.port_mut(BE1).expect("be1 port").take_tx();
    }
    // Each round offers 5 to a ring of 3: 2 refused per round, and no buffer leaks
    // (100 frames through a pool of 256 buffers would fail to receive otherwise).
    assert_eq!(w.pipeline.drops.get(DropReason::TxRingFull), 40);
    assert_eq!(w.pipeline.stats.forwarded, 100);
}

#[test]
fn a_running_worker_forwards_reports_and_stops_on_request() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, mpsc};

    use arc_swap::ArcSwap;
    use dataplane::snapshot::SnapshotCell;
    use dataplane::worker::{RunConfig, WorkerCommand, WorkerReport, run};

    let (w, snap) = worker(usize::MAX);
    let gw = snap.node.gateway_mac;
    let cell = Arc::new(SnapshotCell::new(snap));
    let stop = Arc::new(AtomicBool::new(false));
    let report = Arc::new(ArcSwap::from_pointee(WorkerReport::default()));
    let (tx, rx) = mpsc::channel();
    let cfg = RunConfig {
        idle_rounds: 4,
        sleep_ms: 1,
        report_every_ms: 5,
        ..RunConfig::default()
    };
    let handle = {
        let (cell, stop, report) = (cell.clone(), stop.clone(), report.clone());
        std::thread::spawn(move || run(0, w, &*cell, &rx, &stop, &report, &cfg))
    };
    // Replace the client's port by one holding traffic, as the control thread does for a pod.
    let mut port = MemPort::new(usize::MAX);
    for sport in 0..5u16 {
        port.inject(&frames::ipv4(
            CLIENT_MAC,
            gw,
            ip(CLIENT_IP),
            ip(BE1_IP),
            64,
            true,
            L4::Udp {
                sport: 3000 + sport,
                dport: 53,
            },
            b"x",
        ));
    }
    tx.send(WorkerCommand::Attach(CLIENT, port))
        .expect("worker alive");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while report.load().stats.forwarded < 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "worker did not report 5 forwarded"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    stop.store(true, Ordering::Relaxed);
    let mut w = handle.join().expect("thread").expect("run");
    assert_eq!(w.port_mut(BE1).expect("be1").take_tx().len(), 5);
    assert_eq!(report.load().ports[usize::from(CLIENT.0)].rx_packets, 5);
    assert!(report.load().sleeps > 0, "an idle worker sleeps");
}
