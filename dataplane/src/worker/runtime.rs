//! A worker thread's life: pin, take its scheduling class, then loop { commands, snapshot,
//! poll, housekeeping, report } until told to stop; poll while busy, sleep in poll(2) on the
//! ports when idle (see `idle`). What a caller adds between rounds (where the snapshot comes
//! from, observing the round, hearing how the thread setup went) goes through the `Rounds`
//! hooks, so there is one loop.
//!
//! Invariants:
//! - The snapshot is loaded once per round and the clock read once per round; the packet
//!   path between them does no syscalls besides the devices' own.
//! - Housekeeping (the conntrack sweep) is paced by that clock, not by rounds: at most once
//!   a millisecond, the whole table about once per `sweep_period` (`sweep_pace`).
//! - It polls for a bounded time after work, then sleeps (`IdleMode`), so an idle node costs
//!   ~0% CPU and a real-time worker never holds its core while idle.
//! - A SCHED_OTHER worker never yields: under EEVDF each sched_yield pushes the thread's
//!   deadline a slice further, so after an idle spell it would wait behind every CPU-bound
//!   task on its core. A real-time worker yields on each empty round while it spins: that
//!   hands the core only to real-time threads of its priority, e.g. another node's worker on
//!   the same CPU (the testbed), which then forwards the next hop at once instead of after
//!   the spin.
//! - A round is bracketed by the pipeline's epoch (`quiesce`): entered before the snapshot
//!   is loaded, left once the round is done with it, so a worker asleep in poll(2) never
//!   holds up a flush.
//! - Reports are published by pointer swap every `report_every_ms`; readers never block it.
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::idle::{IdleMode, RoundClock, RoundStats};
use super::keep_warm::KeepWarm;
use super::sweep_pace::{DEFAULT_SWEEP_PERIOD, SweepPace};
use super::{PortCounters, Worker};
use crate::drop::DropCounters;
use crate::io::PacketIo;
use crate::io::thread::{
    ThreadScheduling, current_scheduling, monotonic_ns, pin_current_thread, pollfd, set_scheduling,
    wait_readable,
};
use crate::packet::PortId;
use crate::pipeline::PipelineStats;
use crate::snapshot::{Snapshot, SnapshotCell};

#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Core to pin to; `None` leaves the thread unpinned.
    pub cpu: Option<usize>,
    /// Scheduling class to take; `None` keeps the one the thread was started with.
    pub scheduling: Option<ThreadScheduling>,
    /// Spin then sleep, or poll forever.
    pub idle: IdleMode,
    /// Longest sleep (the worker also wakes when a port turns readable).
    pub sleep_ms: i32,
    /// One pass of the conntrack sweep over the whole table takes this long; the sweep
    /// runs at most once a millisecond, paced by the clock (`sweep_pace`).
    pub sweep_period: Duration,
    pub report_every_ms: u64,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            cpu: None,
            scheduling: None,
            idle: IdleMode::default(),
            sleep_ms: 10,
            sweep_period: DEFAULT_SWEEP_PERIOD,
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
    /// Rounds, sleeps, wakeups, busy and idle time.
    pub rounds: RoundStats,
    /// The thread's scheduling class, read back when the report was made.
    pub scheduling: Option<ThreadScheduling>,
}

/// What the caller of `run` decides each round.
pub trait Rounds<P: PacketIo> {
    /// Once, after the thread was pinned and given its scheduling class, before the first
    /// round; on an error `run` returns it right after.
    fn thread_ready(&mut self, _outcome: Result<(), &io::Error>) {}

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
    let setup = prepare_thread(cfg);
    rounds.thread_ready(setup.as_ref().map(drop));
    setup?;
    let yield_while_spinning = current_scheduling().is_ok_and(|s| s.policy.is_realtime());
    let mut fds = Vec::new();
    let every_ns = cfg.report_every_ms.saturating_mul(1_000_000);
    let mut clock = RoundClock::new(cfg.idle, monotonic_ns());
    let mut warm = match cfg.idle {
        IdleMode::KeepWarm { spin } => Some(KeepWarm::start(id, spin)?),
        _ => None,
    };
    let mut last_report = 0;
    let mut pace = SweepPace::new(cfg.sweep_period, monotonic_ns());
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
        let now_ns = monotonic_ns();
        let now = (now_ns / 1_000_000_000) as u32;
        clock.start(now_ns);
        rounds.before_poll(&mut worker);
        let n = worker.poll_once(&snap, now);
        rounds.after_poll(&mut worker, &snap);
        if n > 0
            && let Some(warm) = warm.as_mut()
        {
            warm.worked(now_ns);
        }
        drop(snap);
        worker.pipeline.epoch().leave();
        worker.pipeline.begin_batch(now);
        let sweep = pace.due(now_ns, worker.pipeline.ct.scan_buckets());
        if sweep > 0 {
            worker.pipeline.housekeeping(sweep);
        }
        if clock.finish(n) {
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
            let readable = wait_readable(&mut fds, cfg.sleep_ms)?;
            clock.slept(readable);
        } else if n == 0 && yield_while_spinning {
            std::thread::yield_now();
        }
        if now_ns.saturating_sub(last_report) >= every_ns {
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
                rounds: clock.stats,
                scheduling: current_scheduling().ok(),
            }));
            last_report = now_ns;
        }
    }
    Ok(worker)
}

/// Pins the calling thread and gives it its scheduling class, as `cfg` asks.
fn prepare_thread(cfg: &RunConfig) -> io::Result<()> {
    if let Some(cpu) = cfg.cpu {
        pin_current_thread(cpu)?;
    }
    if let Some(class) = &cfg.scheduling {
        set_scheduling(class)?;
    }
    Ok(())
}
