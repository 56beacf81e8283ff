//! Flushes wait for the workers to leave the old snapshot (security review M4): real worker
//! threads (`worker::run`) over an in-memory device, a steady UDP sender from one source port,
//! the backend removed under it.

mod common;

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use common::frames::{self, L4};
use common::*;
use dataplane::io::PacketIo;
use dataplane::io::thread::monotonic_secs;
use dataplane::packet::{Packet, PacketPool, PortId};
use dataplane::pipeline::Pipeline;
use dataplane::quiesce::Quiescence;
use dataplane::reconcile::{flush_stale, flush_stale_within};
use dataplane::snapshot::{Snapshot, SnapshotCell};
use dataplane::tables::conntrack::Conntrack;
use dataplane::tables::node::OverlayMode;
use dataplane::tables::services::{Backend, ServiceTable};
use dataplane::worker::{RunConfig, Worker, WorkerCommand, WorkerReport, run};

const PORTS: usize = 5;

/// Frames transmitted per port, over all workers.
type Sent = Arc<[AtomicU64; PORTS]>;

/// A device that, on the client port, receives the same UDP datagram over and over (one
/// source port, like a DNS client or a game) and lingers a millisecond per burst, so a round
/// holds its snapshot long enough for a publication to land in the middle of it.
struct Steady {
    frame: Option<Vec<u8>>,
    sent: Sent,
    index: usize,
}

impl PacketIo for Steady {
    fn rx_burst(
        &mut self,
        port: PortId,
        pool: &mut PacketPool,
        batch: &mut Vec<Packet>,
        _max: usize,
    ) -> io::Result<usize> {
        let Some(frame) = &self.frame else {
            return Ok(0);
        };
        let mut n = 0;
        while n < 8 {
            let Some(mut pkt) = pool.get() else { break };
            assert!(pkt.fill(frame));
            pkt.meta.in_port = port;
            batch.push(pkt);
            n += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
        Ok(n)
    }

    fn tx_burst(&mut self, pkts: &mut Vec<Packet>, pool: &mut PacketPool) -> io::Result<usize> {
        let n = pkts.len();
        self.sent[self.index].fetch_add(n as u64, Ordering::Relaxed);
        for pkt in pkts.drain(..) {
            pool.put(pkt);
        }
        Ok(n)
    }
}

fn dns_query(snap: &Snapshot) -> Vec<u8> {
    frames::ipv4(
        CLIENT_MAC,
        snap.node.gateway_mac,
        ip(CLIENT_IP),
        ip(VIP_DNS),
        64,
        true,
        L4::Udp {
            sport: 5353,
            dport: 53,
        },
        b"q",
    )
}

/// The fixture with kube-dns moved from the remote pod (reached over the uplink) to the local
/// store-be-1 (its own port).
fn dns_moved_to_local_pod() -> Snapshot {
    let mut snap = snapshot(OverlayMode::Vxlan);
    let mut specs = services();
    for s in &mut specs {
        if &*s.name == "kube-system/kube-dns:dns" {
            s.backends = vec![Backend {
                ip: ip(BE1_IP),
                port: 53,
                node_local: true,
                serving: true,
                terminating: false,
                pod: None,
            }];
        }
    }
    snap.services =
        Arc::new(ServiceTable::build(specs, &snap.node.node_port_addresses, 251).expect("table"));
    snap.generation = 2;
    snap
}

struct Running {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Running {
    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().expect("worker thread");
        }
    }
}

fn start_workers(n: usize, cell: &Arc<SnapshotCell>, ct: &Arc<Conntrack>, sent: &Sent) -> Running {
    let stop = Arc::new(AtomicBool::new(false));
    let (_, aff) = tables(16);
    let frame = dns_query(&cell.load());
    let threads = (0..n)
        .map(|id| {
            let ports: Vec<Steady> = (0..PORTS)
                .map(|index| Steady {
                    frame: (index == usize::from(CLIENT.0)).then(|| frame.clone()),
                    sent: Arc::clone(sent),
                    index,
                })
                .collect();
            let worker = Worker::new(
                Pipeline::new(Arc::clone(ct), Arc::clone(&aff), 11 + id as u64),
                ports,
                512,
            );
            let (cell, stop) = (Arc::clone(cell), Arc::clone(&stop));
            std::thread::spawn(move || {
                let (_keep, commands) = mpsc::channel::<WorkerCommand<Steady>>();
                let report = ArcSwap::from_pointee(WorkerReport::default());
                run(
                    id,
                    worker,
                    &*cell,
                    &commands,
                    &stop,
                    &report,
                    &RunConfig::default(),
                )
                .expect("worker runs");
            })
        })
        .collect();
    Running { stop, threads }
}

fn wait_for(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn no_datagram_reaches_a_removed_udp_backend_after_the_flush() {
    for attempt in 0..5 {
        let (ct, _) = tables(4096);
        let cell = Arc::new(SnapshotCell::new(snapshot(OverlayMode::Vxlan)));
        let sent: Sent = Arc::new(Default::default());
        let workers = start_workers(2, &cell, &ct, &sent);
        let uplink = || sent[usize::from(UPLINK.0)].load(Ordering::Relaxed);
        let local = || sent[usize::from(BE1.0)].load(Ordering::Relaxed);
        wait_for(
            "datagrams to the remote backend",
            Duration::from_secs(10),
            || uplink() > 200,
        );
        assert_eq!(ct.readers().len(), 2, "both workers registered");

        let old = cell.publish(dns_moved_to_local_pod());
        let report = flush_stale(&ct, &old, &cell.load(), monotonic_secs());
        assert_eq!(report.quiescence, Quiescence::Quiet, "attempt {attempt}");
        assert_eq!(report.udp_backend_removed, 1, "attempt {attempt}");
        // Datagrams processed before the flush may still be on their way out: one more grace
        // period, then nothing may go to the removed backend any more.
        assert_eq!(
            ct.readers().wait_quiescent(Duration::from_secs(5)),
            Quiescence::Quiet
        );
        let (to_removed, to_new) = (uplink(), local());
        wait_for(
            "datagrams to the new backend (did a stale flow to the removed one survive the flush?)",
            Duration::from_secs(10),
            || local() > to_new + 2000,
        );
        workers.stop();
        assert_eq!(
            uplink(),
            to_removed,
            "attempt {attempt}: datagrams reached the removed backend after the flush"
        );
        assert_eq!(ct.len(), 1, "one flow, to the new backend");
    }
}

#[test]
fn a_flush_waits_for_a_worker_still_in_a_round_on_the_old_snapshot() {
    let mut h = Harness::new();
    let f = dns_query(&h.snap);
    h.expect_tx(CLIENT, &f, UPLINK);
    let new = dns_moved_to_local_pod();

    // A worker that entered its round on the old snapshot and has not finished it.
    let (entered_tx, entered) = mpsc::channel();
    let (release_tx, release) = mpsc::channel::<()>();
    let left = Arc::new(AtomicBool::new(false));
    let ct = Arc::clone(h.pipe.conntrack());
    let worker = {
        let left = Arc::clone(&left);
        std::thread::spawn(move || {
            let (_, aff) = tables(16);
            let pipe = Pipeline::new(ct, aff, 1);
            pipe.epoch().enter();
            entered_tx.send(()).expect("main waits");
            release.recv().expect("main releases");
            std::thread::sleep(Duration::from_millis(50));
            left.store(true, Ordering::SeqCst);
            pipe.epoch().leave();
        })
    };
    entered.recv().expect("worker entered");

    let started = Instant::now();
    let report = flush_stale_within(
        h.pipe.conntrack(),
        &h.snap,
        &new,
        1000,
        Duration::from_millis(40),
    );
    assert_eq!(report.quiescence, Quiescence::TimedOut { stuck: 1 });
    assert!(started.elapsed() >= Duration::from_millis(40));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the wait is bounded"
    );
    assert_eq!(report.udp_backend_removed, 1, "flushed anyway");

    // Re-create the stale flow, then flush again while the worker is still in its round.
    h.expect_tx(CLIENT, &f, UPLINK);
    release_tx.send(()).expect("worker waits");
    let report = flush_stale(h.pipe.conntrack(), &h.snap, &new, 1000);
    assert!(
        left.load(Ordering::SeqCst),
        "the flush ran before the worker left"
    );
    assert_eq!(report.quiescence, Quiescence::Quiet);
    assert_eq!(report.udp_backend_removed, 1);
    worker.join().expect("worker");
}
