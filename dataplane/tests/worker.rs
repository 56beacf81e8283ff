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
        idle: dataplane::worker::IdleMode::Adaptive {
            spin: std::time::Duration::ZERO,
        },
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
    // With nothing more to do it sleeps; a report says so within the deadline.
    while report.load().rounds.sleeps == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "an idle worker sleeps: no report of a sleep within 10 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    stop.store(true, Ordering::Relaxed);
    let mut w = handle.join().expect("thread").expect("run");
    assert_eq!(w.port_mut(BE1).expect("be1").take_tx().len(), 5);
    assert_eq!(report.load().ports[usize::from(CLIENT.0)].rx_packets, 5);
}

/// A port whose frames arrive as datagrams on a socket: a real descriptor to sleep on.
struct SocketPort {
    rx: std::os::unix::net::UnixDatagram,
    tx: Vec<Vec<u8>>,
}

impl dataplane::io::PacketIo for SocketPort {
    fn rx_burst(
        &mut self,
        port: dataplane::packet::PortId,
        pool: &mut dataplane::packet::PacketPool,
        batch: &mut Vec<dataplane::packet::Packet>,
        max: usize,
    ) -> std::io::Result<usize> {
        let mut buf = [0u8; 2048];
        let mut n = 0;
        while n < max {
            let Ok(len) = self.rx.recv(&mut buf) else {
                break;
            };
            let mut pkt = pool.get().expect("a free buffer");
            assert!(pkt.fill(&buf[..len]));
            pkt.meta.in_port = port;
            batch.push(pkt);
            n += 1;
        }
        Ok(n)
    }

    fn tx_burst(
        &mut self,
        pkts: &mut Vec<dataplane::packet::Packet>,
        pool: &mut dataplane::packet::PacketPool,
    ) -> std::io::Result<usize> {
        let n = pkts.len();
        for pkt in pkts.drain(..) {
            self.tx.push(pkt.data().to_vec());
            pool.put(pkt);
        }
        Ok(n)
    }

    fn poll_fd(&self) -> Option<std::os::fd::RawFd> {
        Some(std::os::fd::AsRawFd::as_raw_fd(&self.rx))
    }
}

#[test]
fn a_fifo_worker_forwards_then_sleeps_and_is_woken_by_its_port() {
    use std::os::unix::net::UnixDatagram;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, mpsc};
    use std::time::{Duration, Instant};

    use arc_swap::ArcSwap;
    use dataplane::io::thread::{SchedPolicy, ThreadScheduling};
    use dataplane::snapshot::SnapshotCell;
    use dataplane::worker::{IdleMode, RunConfig, WorkerReport, run};

    let snap = snapshot(dataplane::tables::node::OverlayMode::Vxlan);
    let gw = snap.node.gateway_mac;
    let (ct, aff) = tables(1024);
    let ports = (0..5)
        .map(|_| {
            let (rx, _) = UnixDatagram::pair().expect("socket pair");
            rx.set_nonblocking(true).expect("nonblocking");
            SocketPort { rx, tx: Vec::new() }
        })
        .collect();
    let mut w = Worker::new(Pipeline::new(ct, aff, 3), ports, 256);
    let (rx, client) = UnixDatagram::pair().expect("socket pair");
    rx.set_nonblocking(true).expect("nonblocking");
    w.attach(CLIENT, SocketPort { rx, tx: Vec::new() });
    let fifo = ThreadScheduling {
        policy: SchedPolicy::Fifo,
        priority: 1,
        slice_ns: None,
    };
    let cfg = RunConfig {
        scheduling: Some(fifo),
        idle: IdleMode::Adaptive {
            spin: Duration::from_micros(50),
        },
        sleep_ms: 200,
        report_every_ms: 1,
        ..RunConfig::default()
    };
    let cell = Arc::new(SnapshotCell::new(snap));
    let stop = Arc::new(AtomicBool::new(false));
    let report = Arc::new(ArcSwap::from_pointee(WorkerReport::default()));
    let (_commands, commands_rx) = mpsc::channel();
    let handle = {
        let (cell, stop, report) = (cell.clone(), stop.clone(), report.clone());
        std::thread::spawn(move || run(0, w, &*cell, &commands_rx, &stop, &report, &cfg))
    };
    let wait_for = |what: &str, done: &dyn Fn(&WorkerReport) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done(&report.load()) {
            assert!(
                Instant::now() < deadline,
                "worker: {what}: {:?}",
                report.load()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    for sport in 0..5u16 {
        // Let the worker fall asleep, then wake it with a frame.
        std::thread::sleep(Duration::from_millis(20));
        let frame = frames::ipv4(
            CLIENT_MAC,
            gw,
            ip(CLIENT_IP),
            ip(BE1_IP),
            64,
            true,
            L4::Udp {
                sport: 4000 + sport,
                dport: 53,
            },
            b"x",
        );
        client.send(&frame).expect("send");
        wait_for("forwarding", &|r| r.stats.forwarded > u64::from(sport));
    }
    wait_for("reporting fifo", &|r| r.scheduling == Some(fifo));
    let first = report.load().rounds;
    assert!(first.wakeups >= 4, "woken by its port: {first:?}");
    assert!(first.sleeps >= first.wakeups, "{first:?}");
    assert!(
        first.busy_ns > 0 && first.idle_ns > first.busy_ns,
        "{first:?}"
    );
    // Idle from here on: it sleeps (on a timeout now) and its idle time grows.
    wait_for("sleeping on", &|r| {
        r.rounds.idle_ns >= first.idle_ns + 300_000_000 && r.rounds.sleeps > first.sleeps
    });
    assert!(
        report.load().rounds.rounds < first.rounds + 1000,
        "it slept, not spun"
    );
    stop.store(true, Ordering::Relaxed);
    let mut w = handle.join().expect("thread").expect("run");
    assert_eq!(w.port_mut(BE1).expect("be1").tx.len(), 5);
}
