//! The dataplane side of a trial, on the calling thread (already in the right namespace):
//! `dataplane::io::reflect` on path A's port (one link's ceiling), a plain forwarder from
//! path A's port to path B's (the raw ceiling of the pipeline's own path), or a `Worker`
//! with the full pipeline under `dataplane::worker::run`, the node's own loop (snapshot load
//! and clock read per round, housekeeping, reports), on the ports of paths A and B.
//!
//! Invariants:
//! - Ports are opened before `ready` is signalled, so the generator never sends into a
//!   device nobody reads; a failure to open is returned and `ready` is dropped unsent.
//! - Both loops end when `stop` is set; nothing here waits on anything else.

use std::io;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{self, SyncSender};

use arc_swap::ArcSwap;
use dataplane::io::PacketIo;
use dataplane::io::af_packet::{AfPacketConfig, AfPacketPort};
use dataplane::io::af_xdp::{AfXdpConfig, AfXdpPort};
use dataplane::io::reflect::{ReflectStats, forward, reflect};
use dataplane::io::tap::TapQueue;
use dataplane::io::thread::pin_current_thread;
use dataplane::packet::PacketPool;
use dataplane::pipeline::Pipeline;
use dataplane::snapshot::SnapshotCell;
use dataplane::tables::affinity::AffinityTable;
use dataplane::tables::conntrack::{Conntrack, ConntrackConfig};
use dataplane::worker::{BURST, RunConfig, Worker, WorkerReport, run};

use super::scenario::{self, POD_A, POD_B};

/// Packet buffers of the dataplane side, in both modes.
const POOL: usize = 4096;
const CONNTRACK_CAPACITY: usize = 65_536;

/// A backend's port as the benchmark opens it: the node's default settings.
pub trait BenchPort: PacketIo + Sized {
    fn open(ifname: &str) -> io::Result<Self>;

    /// How the port ended up configured, where that varies (e.g. the XDP mode).
    fn describe(&self) -> Option<String> {
        None
    }
}

impl BenchPort for AfPacketPort {
    fn open(ifname: &str) -> io::Result<Self> {
        AfPacketPort::open(ifname, &AfPacketConfig::default())
    }

    fn describe(&self) -> Option<String> {
        Some(format!(
            "TPACKET_V2, {} RX / {} TX ring frames",
            self.rx_ring_frames(),
            self.tx_ring_frames()
        ))
    }
}

impl BenchPort for TapQueue {
    fn open(ifname: &str) -> io::Result<Self> {
        TapQueue::open(ifname)
    }
}

impl BenchPort for AfXdpPort {
    fn open(ifname: &str) -> io::Result<Self> {
        AfXdpPort::open(ifname, &AfXdpConfig::default())
    }

    fn describe(&self) -> Option<String> {
        let copy = if self.zero_copy() {
            "zero-copy"
        } else {
            "copy"
        };
        Some(format!(
            "{:?} XDP, {copy} mode, {} RX / {} TX UMEM frames",
            self.mode(),
            self.rx_frames(),
            self.tx_frames()
        ))
    }
}

/// What the dataplane side did in one trial (warm-up and grace included).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ForwarderCounts {
    pub received: u64,
    pub transmitted: u64,
    /// Pipeline mode: flows the pipeline inserted into conntrack.
    pub new_flows: u64,
    /// Pipeline mode: drops by reason; reflect mode: frames the device refused.
    pub drops: Vec<(String, u64)>,
    pub port: Option<String>,
}

/// Reflects frames on path A's port until `stop`.
pub fn reflect_side<P: BenchPort>(
    ifname: &str,
    cpu: Option<usize>,
    stop: &AtomicBool,
    ready: SyncSender<()>,
) -> io::Result<ForwarderCounts> {
    if let Some(cpu) = cpu {
        pin_current_thread(cpu)?;
    }
    let mut port = P::open(ifname)?;
    let mut pool = PacketPool::with_capacity(POOL);
    let described = port.describe();
    // The receiver only disappears when the trial already gave up on this side.
    let _ = ready.send(());
    let stats = reflect(&mut port, POD_A, &mut pool, BURST, stop)?;
    Ok(counts_of(stats, described))
}

/// Forwards frames from path A's port to path B's port until `stop`, with no pipeline.
pub fn forward_side<P: BenchPort>(
    in_if: &str,
    out_if: &str,
    cpu: Option<usize>,
    stop: &AtomicBool,
    ready: SyncSender<()>,
) -> io::Result<ForwarderCounts> {
    if let Some(cpu) = cpu {
        pin_current_thread(cpu)?;
    }
    let mut port_in = P::open(in_if)?;
    let mut port_out = P::open(out_if)?;
    let mut pool = PacketPool::with_capacity(POOL);
    let described = port_in.describe();
    let _ = ready.send(());
    let stats = forward(&mut port_in, &mut port_out, POD_A, &mut pool, BURST, stop)?;
    Ok(counts_of(stats, described))
}

fn counts_of(stats: ReflectStats, port: Option<String>) -> ForwarderCounts {
    ForwarderCounts {
        received: stats.received,
        transmitted: stats.transmitted,
        new_flows: 0,
        drops: if stats.refused > 0 {
            vec![("tx_refused".to_owned(), stats.refused)]
        } else {
            Vec::new()
        },
        port,
    }
}

/// Runs a worker with the full pipeline over paths A (in) and B (out) until `stop`.
pub fn pipeline_side<P: BenchPort>(
    in_if: &str,
    out_if: &str,
    cpu: Option<usize>,
    stop: &AtomicBool,
    ready: SyncSender<()>,
) -> io::Result<ForwarderCounts> {
    let ct = Conntrack::new(ConntrackConfig {
        capacity: CONNTRACK_CAPACITY,
        ..ConntrackConfig::default()
    });
    let pipeline = Pipeline::new(Arc::new(ct), Arc::new(AffinityTable::new(1024)), 42);
    let mut worker = Worker::new(pipeline, Vec::new(), POOL);
    let port_a = P::open(in_if)?;
    let described = port_a.describe();
    worker.attach(POD_A, port_a);
    worker.attach(POD_B, P::open(out_if)?);
    let cell = SnapshotCell::new(scenario::snapshot());
    // No commands: the ports stay attached for the whole trial.
    let (_commands_tx, commands) = mpsc::channel();
    let report = ArcSwap::from_pointee(WorkerReport::default());
    let config = RunConfig {
        cpu,
        ..RunConfig::default()
    };
    let _ = ready.send(());
    let worker = run(0, worker, &cell, &commands, stop, &report, &config)?;
    let counter = |port: dataplane::packet::PortId| {
        worker
            .counters
            .get(usize::from(port.0))
            .cloned()
            .unwrap_or_default()
    };
    Ok(ForwarderCounts {
        received: counter(POD_A).rx_packets,
        transmitted: counter(POD_B).tx_packets,
        new_flows: worker.pipeline.stats.new_flows,
        drops: worker
            .pipeline
            .drops
            .iter()
            .map(|(reason, n)| (reason.name().to_owned(), n))
            .collect(),
        port: described,
    })
}
