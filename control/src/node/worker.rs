//! Worker threads: `dataplane::worker::run` with the two things the node process adds between
//! rounds (`NodeRounds`): the snapshot cell is looked up each round, so a source rebuilt on
//! SIGHUP reaches running workers, and the pipeline's trace is switched on only while someone
//! watches the event stream (`/monitor`), whose events are built after each traced round.
//!
//! Invariants:
//! - The cell, the snapshot and the clock are read once per round.
//! - With no monitor listener the trace is off: one relaxed load per round, no allocation.
//! - A stopped worker returns its `Worker` (devices and counters) to the caller.

use std::io;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use arc_swap::ArcSwap;
use dataplane::pipeline::TraceEvent;
use dataplane::snapshot::{Snapshot, SnapshotCell};
use dataplane::worker::{Rounds, RunConfig, Worker, WorkerCommand, WorkerReport};

use super::devices::NodePort;
use super::monitor::{Round, round_events};
use super::observe::{Observers, wall_now};

/// What every worker shares with the control thread.
pub struct WorkerContext {
    /// The cell of the current snapshot source.
    pub cells: Arc<ArcSwap<SnapshotCell>>,
    pub observers: Arc<Observers>,
    pub stop: Arc<AtomicBool>,
    pub run: RunConfig,
}

/// A running worker.
pub struct WorkerThread {
    pub report: Arc<ArcSwap<WorkerReport>>,
    thread: JoinHandle<io::Result<Worker<NodePort>>>,
}

impl WorkerThread {
    /// Starts worker `id` on its own thread; returns once the thread is pinned and has its
    /// scheduling class, or with the error that stopped it.
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
        let (ready, setup) = sync_channel(1);
        let thread = std::thread::Builder::new()
            .name(format!("fp-worker-{id}"))
            .spawn(move || run(id, worker, &commands, &context, &published, cpu, ready))?;
        let worker = WorkerThread { report, thread };
        match setup.recv() {
            Ok(Ok(())) => Ok(worker),
            Ok(Err(why)) => {
                let _ = worker.join();
                Err(io::Error::other(why))
            }
            Err(_) => worker.join().and(Err(io::Error::other(
                "the worker stopped before it was ready",
            ))),
        }
    }

    /// Whether the thread has ended (it should not before the stop flag is set).
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
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
    worker: Worker<NodePort>,
    commands: &Receiver<WorkerCommand<NodePort>>,
    ctx: &WorkerContext,
    report: &ArcSwap<WorkerReport>,
    cpu: Option<usize>,
    ready: SyncSender<Result<(), String>>,
) -> io::Result<Worker<NodePort>> {
    let cfg = RunConfig {
        cpu,
        ..ctx.run.clone()
    };
    let rounds = NodeRounds {
        id,
        ctx,
        ready: Some(ready),
    };
    dataplane::worker::run(id, worker, rounds, commands, &ctx.stop, report, &cfg)
}

/// The node's additions to each worker round.
struct NodeRounds<'a> {
    id: usize,
    ctx: &'a WorkerContext,
    /// Told once how the thread setup went.
    ready: Option<SyncSender<Result<(), String>>>,
}

impl Rounds<NodePort> for NodeRounds<'_> {
    fn thread_ready(&mut self, outcome: Result<(), &io::Error>) {
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(outcome.map_err(ToString::to_string));
        }
    }

    /// The current source's cell: a source rebuilt on SIGHUP reaches running workers.
    fn snapshot(&mut self) -> Arc<Snapshot> {
        self.ctx.cells.load().load()
    }

    /// Tracing follows whether anyone watches the event stream.
    fn before_poll(&mut self, worker: &mut Worker<NodePort>) {
        let watched = self.ctx.observers.events.is_active();
        if watched && !worker.pipeline.is_tracing() {
            worker.pipeline.enable_trace();
        } else if !watched && worker.pipeline.is_tracing() {
            worker.pipeline.disable_trace();
        }
    }

    fn after_poll(&mut self, worker: &mut Worker<NodePort>, snap: &Snapshot) {
        if worker.pipeline.is_tracing() {
            let trace = worker.pipeline.take_trace();
            publish_events(&trace, worker, self.id, snap, &self.ctx.observers);
        }
    }
}

/// A per-worker, per-process seed for backend choice (SNAT ports have their own CSPRNG key).
pub fn seed(id: usize) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32) ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Publishes the monitor events of one traced round (see `monitor`).
fn publish_events(
    trace: &[TraceEvent],
    worker: &mut Worker<NodePort>,
    id: usize,
    snap: &Snapshot,
    observers: &Observers,
) {
    let ports: Vec<Option<usize>> = worker
        .ports
        .iter_mut()
        .map(|port| port.as_mut().map(NodePort::take_refused))
        .collect();
    if trace.is_empty() {
        return;
    }
    let round = Round {
        worker: id,
        at: wall_now(),
        ports: &ports,
    };
    let policy_name = |policy| snap.policy.policy_name(policy).map(str::to_owned);
    for event in round_events(&round, trace, policy_name) {
        observers
            .events
            .publish(event.port, std::slice::from_ref(&event));
    }
}
