//! A worker thread's life: pin, then loop { commands, snapshot, poll, housekeeping, report }
//! until told to stop; busy-poll under load, sleep in poll(2) on the ports when idle.
//! What a caller adds between rounds (where the snapshot comes from, observing the round)
//! goes through the `Rounds` hooks, so there is one loop.
//!
//! Invariants:
//! - The snapshot is loaded once per round and the clock read once per round; the packet
//!   path between them does no syscalls besides the devices' own.
//! - The worker sleeps only after `idle_rounds` empty rounds, for at most `sleep_ms`, so an
//!   idle node costs ~0% CPU and a busy one never sleeps. An empty round yields the core
//!   first: where a worker shares its core (with the kernel's packet work or another node's
//!   worker, as on the testbed) the next hop runs at once instead of after the spin, which
//!   took a cross-node UDP round trip from ~890 to ~120 us with both nodes on one CPU.
//! - A round is bracketed by the pipeline's epoch (`quiesce`): entered before the snapshot
//!   is loaded, left once the round is done with it, so a worker asleep in poll(2) never
//!   holds up a flush.
//! - Reports are published by pointer swap every `report_every_ms`; readers never block it.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::{PortCounters, Worker};
use crate::drop::DropCounters;
use crate::io::PacketIo;
use crate::io::thread::{monotonic_secs, pin_current_thread, pollfd, wait_readable};
use crate::packet::PortId;
use crate::pipeline::PipelineStats;
use crate::snapshot::{Snapshot, SnapshotCell};

#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Core to pin to; `None` leaves the thread unpinned.
    pub cpu: Option<usize>,
    /// Empty rounds before the worker sleeps on its descriptors.
    pub idle_rounds: u32,
    pub sleep_ms: i32,
    /// Conntrack buckets aged per round.
    pub housekeeping_budget: usize,
    pub report_every_ms: u64,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            cpu: None,
            idle_rounds: 256,
            sleep_ms: 10,
            housekeeping_budget: 8,
            report_every_ms: 100,
        }
    }
}

/// Changes the control thread asks of a running worker.
pub enum WorkerCommand<P> {
    Attach(PortId, P),
    Detach(PortId),
}

/// A worker's counters as last published.
#[derive(Clone, Debug, Default)]
pub struct WorkerReport {
    pub worker: usize,
    pub stats: PipelineStats,
    pub drops: DropCounters,
    pub ports: Vec<PortCounters>,
    pub rx_errors: u64,
    /// Rounds that found no packet, and times the worker slept.
    pub idle_rounds: u64,
    pub sleeps: u64,
}

/// What the caller of `run` decides each round.
pub trait Rounds<P: PacketIo> {
    /// The snapshot the round runs against (loaded once per round).
    fn snapshot(&mut self) -> Arc<Snapshot>;

    /// Before the round's poll (e.g. switch tracing on or off).
    fn before_poll(&mut self, _worker: &mut Worker<P>) {}

    /// After the round's poll, with the snapshot it ran against (e.g. drain a trace).
    fn after_poll(&mut self, _worker: &mut Worker<P>, _snap: &Snapshot) {}
}

/// The plain case: every round reads one snapshot cell.
impl<P: PacketIo> Rounds<P> for &SnapshotCell {
    fn snapshot(&mut self) -> Arc<Snapshot> {
        self.load()
    }
}

/// Runs `worker` until `stop` is set; returns it (with its tables) for a clean hand-over.
pub fn run<P: PacketIo>(
    id: usize,
    mut worker: Worker<P>,
    mut rounds: impl Rounds<P>,
    commands: &Receiver<WorkerCommand<P>>,
    stop: &AtomicBool,
    report: &ArcSwap<WorkerReport>,
    cfg: &RunConfig,
) -> io::Result<Worker<P>> {
    if let Some(cpu) = cfg.cpu {
        pin_current_thread(cpu)?;
    }
    let mut idle = 0u32;
    let (mut idle_total, mut sleeps) = (0u64, 0u64);
    let mut fds = Vec::new();
    let every = Duration::from_millis(cfg.report_every_ms);
    let mut last_report = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        while let Ok(cmd) = commands.try_recv() {
            match cmd {
                WorkerCommand::Attach(port, dev) => worker.attach(port, dev),
                WorkerCommand::Detach(port) => drop(worker.detach(port)),
            }
            fds.clear();
        }
        worker.pipeline.epoch().enter();
        let snap = rounds.snapshot();
        let now = monotonic_secs();
        rounds.before_poll(&mut worker);
        let n = worker.poll_once(&snap, now);
        rounds.after_poll(&mut worker, &snap);
        drop(snap);
        worker.pipeline.epoch().leave();
        worker.pipeline.begin_batch(now);
        worker.pipeline.housekeeping(cfg.housekeeping_budget);
        if n == 0 {
            idle += 1;
            idle_total += 1;
            if idle >= cfg.idle_rounds {
                if fds.is_empty() {
                    fds.extend(
                        worker
                            .ports
                            .iter()
                            .flatten()
                            .filter_map(|p| p.poll_fd())
                            .map(pollfd),
                    );
                }
                wait_readable(&mut fds, cfg.sleep_ms)?;
                sleeps += 1;
                idle = 0;
            } else {
                // Nothing to do this round: let whatever else is runnable on this core (the
                // kernel's packet work, another node's worker) have it before polling again.
                std::thread::yield_now();
            }
        } else {
            idle = 0;
        }
        if last_report.elapsed() >= every {
            for (dev, counters) in worker.ports.iter_mut().zip(worker.counters.iter_mut()) {
                if let Some(dev) = dev {
                    counters.rx_dropped = dev.rx_dropped();
                }
            }
            report.store(Arc::new(WorkerReport {
                worker: id,
                stats: worker.pipeline.stats.clone(),
                drops: worker.pipeline.drops.clone(),
                ports: worker.counters.clone(),
                rx_errors: worker.rx_errors,
                idle_rounds: idle_total,
                sleeps,
            }));
            last_report = Instant::now();
        }
    }
    Ok(worker)
}
