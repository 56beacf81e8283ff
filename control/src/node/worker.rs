//! Worker threads: `dataplane::worker::run`'s loop (pin; then commands, snapshot, poll,
//! housekeeping, idle sleep, report, until stopped), with the two things the node process adds
//! between rounds: the snapshot cell is looked up each round, so a source rebuilt on SIGHUP
//! reaches running workers, and the pipeline's trace is switched on only while someone
//! watches the drop stream (`/monitor`).
//!
//! Invariants (as in `dataplane::worker::runtime`):
//! - The cell, the snapshot and the clock are read once per round.
//! - With no monitor listener the trace is off: one relaxed load per round, no allocation.
//! - A stopped worker returns its `Worker` (devices and counters) to the caller.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use dataplane::io::PacketIo;
use dataplane::io::thread::{monotonic_secs, pin_current_thread, pollfd, wait_readable};
use dataplane::packet::Verdict;
use dataplane::pipeline::{Pipeline, TraceEvent};
use dataplane::snapshot::{Snapshot, SnapshotCell};
use dataplane::tables::affinity::AffinityTable;
use dataplane::tables::policy::PolicyVerdict;
use dataplane::worker::{RunConfig, Worker, WorkerCommand, WorkerReport};

use super::devices::NodePort;
use super::observe::{DropEvent, Observers, wall_now};

/// What every worker shares with the control thread.
pub struct WorkerContext {
    /// The cell of the current snapshot source.
    pub cells: Arc<ArcSwap<SnapshotCell>>,
    pub observers: Arc<Observers>,
    pub affinity: Arc<AffinityTable>,
    pub stop: Arc<AtomicBool>,
    pub run: RunConfig,
}

/// A running worker.
pub struct WorkerThread {
    pub report: Arc<ArcSwap<WorkerReport>>,
    thread: JoinHandle<io::Result<Worker<NodePort>>>,
}

impl WorkerThread {
    /// Starts worker `id` on its own thread.
    pub fn spawn(
        id: usize,
        worker: Worker<NodePort>,
        commands: Receiver<WorkerCommand<NodePort>>,
        context: Arc<WorkerContext>,
        cpu: Option<usize>,
    ) -> io::Result<WorkerThread> {
        let report = Arc::new(ArcSwap::from_pointee(WorkerReport {
            worker: id,
            ..WorkerReport::default()
        }));
        let published = Arc::clone(&report);
        let thread = std::thread::Builder::new()
            .name(format!("fp-worker-{id}"))
            .spawn(move || run(id, worker, &commands, &context, &published, cpu))?;
        Ok(WorkerThread { report, thread })
    }

    /// Waits for the worker to stop (after the shared stop flag was set).
    pub fn join(self) -> io::Result<Worker<NodePort>> {
        self.thread
            .join()
            .map_err(|_| io::Error::other("worker thread panicked"))?
    }
}

fn run(
    id: usize,
    mut worker: Worker<NodePort>,
    commands: &Receiver<WorkerCommand<NodePort>>,
    ctx: &WorkerContext,
    report: &ArcSwap<WorkerReport>,
    cpu: Option<usize>,
) -> io::Result<Worker<NodePort>> {
    if let Some(cpu) = cpu {
        pin_current_thread(cpu)?;
    }
    let cfg = &ctx.run;
    let mut idle = 0u32;
    let (mut idle_total, mut sleeps) = (0u64, 0u64);
    let mut fds = Vec::new();
    let mut tracing = false;
    let every = Duration::from_millis(cfg.report_every_ms);
    let mut last_report = Instant::now();
    while !ctx.stop.load(Ordering::Relaxed) {
        while let Ok(cmd) = commands.try_recv() {
            match cmd {
                WorkerCommand::Attach(port, dev) => worker.attach(port, dev),
                WorkerCommand::Detach(port) => drop(worker.detach(port)),
            }
            fds.clear();
        }
        let snap = ctx.cells.load().load();
        let now = monotonic_secs();
        let watched = ctx.observers.drops.is_active();
        if watched != tracing {
            set_trace(&mut worker.pipeline, watched, &ctx.affinity, id);
            tracing = watched;
        }
        let n = worker.poll_once(&snap, now);
        if tracing {
            publish_drops(&worker.pipeline.take_trace(), id, &snap, &ctx.observers);
        }
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
            }
        } else {
            idle = 0;
        }
        if last_report.elapsed() >= every {
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

/// Turns the pipeline's trace on, or off by replacing the pipeline with an untraced one that
/// carries the counters over (the pipeline has no other way to stop tracing).
fn set_trace(pipeline: &mut Pipeline, on: bool, affinity: &Arc<AffinityTable>, id: usize) {
    if on {
        pipeline.enable_trace();
        return;
    }
    let mut untraced = Pipeline::new(
        Arc::clone(pipeline.conntrack()),
        Arc::clone(affinity),
        seed(id),
    );
    untraced.drops = std::mem::take(&mut pipeline.drops);
    untraced.stats = std::mem::take(&mut pipeline.stats);
    *pipeline = untraced;
}

/// A per-worker, per-process seed for backend choice and SNAT ports.
pub fn seed(id: usize) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32) ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Turns one round's trace into drop events: a packet's events run from `Received` to
/// `Verdict`.
fn publish_drops(events: &[TraceEvent], worker: usize, snap: &Snapshot, observers: &Observers) {
    let mut current: Option<DropEvent> = None;
    let mut at = None;
    for event in events {
        match event {
            TraceEvent::Received { port, .. } => {
                let at = *at.get_or_insert_with(wall_now);
                current = Some(DropEvent {
                    at,
                    worker,
                    port: *port,
                    key: None,
                    reason: dataplane::drop::DropReason::Malformed,
                    policy: None,
                    policy_pod: None,
                });
            }
            TraceEvent::Parsed { key } => {
                if let Some(c) = current.as_mut() {
                    c.key = Some(*key);
                }
            }
            TraceEvent::Policy { pod, verdict, .. } => {
                if let (Some(c), PolicyVerdict::Denied(id)) = (current.as_mut(), verdict) {
                    c.policy_pod = Some(*pod);
                    c.policy = id
                        .and_then(|id| snap.policy.policy_name(id))
                        .map(str::to_owned);
                }
            }
            TraceEvent::Verdict(verdict) => {
                if let (Some(mut c), Verdict::Drop(reason)) = (current.take(), verdict) {
                    c.reason = *reason;
                    observers.drops.publish(c.port, std::slice::from_ref(&c));
                }
            }
            _ => {}
        }
    }
}
