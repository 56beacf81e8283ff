//! The node process's control loop: keep the published snapshot in step with the state
//! directory.
//!
//! [`Syncer::poll`] reads the generation file (one small read); when it moved, or a periodic
//! resync is due, or [`Syncer::request_sync`] asked for one, it reads what changed (the change
//! log names the object files to re-read, [`incremental`]; a missing or damaged log, or a node
//! further behind than the log reaches, loads the whole directory instead), compiles the
//! node's snapshot (incrementally for a change, in full for a resync, so a missed change or a
//! cache bug heals), publishes it into the [`SnapshotCell`] the workers read, and flushes the
//! flows the new snapshot makes stale (`dataplane::reconcile::flush_stale`).
//!
//! Invariants:
//! - A sync that cannot load the state (unreadable settings or generation, I/O errors) or
//!   cannot describe the node publishes nothing: the workers keep the last good snapshot, the
//!   failure is counted and the next poll tries again.
//! - Object files that cannot be read keep their last good version ([`load`]), so one corrupt
//!   object never unprograms anything.
//! - Published generations increase by one per publication.
//! - Time comes in through [`SyncClock`]; only the sync's own duration is measured here.

mod incremental;
pub mod input_health;
mod load;
pub mod metrics;
#[cfg(test)]
mod tests;
pub mod trigger;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dataplane::quiesce::{DEFAULT_GRACE_TIMEOUT, Quiescence};
use dataplane::reconcile::{FlushReport, flush_stale};
use dataplane::snapshot::SnapshotCell;
use dataplane::tables::conntrack::{Conntrack, Now};

use crate::compile::{Compiled, Compiler, NodeLocal, PortAssignments, Problem};
use crate::state::ClusterState;
use crate::store::StateDir;
use metrics::{ObjectCounts, SyncMetrics};

/// kube-proxy's default `syncPeriod`.
pub const DEFAULT_RESYNC_INTERVAL: Duration = Duration::from_secs(30);

/// Which port each local pod is attached to, asked for at every sync (the node process owns
/// the pod interfaces).
pub type PortSource = Box<dyn FnMut(&ClusterState) -> PortAssignments + Send>;

/// The clocks of one poll.
#[derive(Clone, Copy, Debug)]
pub struct SyncClock {
    /// For timestamps and programming latency.
    pub wall: SystemTime,
    /// For the resync interval.
    pub mono: Instant,
    /// The flow tables' time.
    pub conntrack: Now,
}

impl SyncClock {
    /// The system clocks now, with the flow tables' time from the caller.
    pub fn now(conntrack: Now) -> SyncClock {
        SyncClock {
            wall: SystemTime::now(),
            mono: Instant::now(),
            conntrack,
        }
    }
}

/// Why a sync published nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncError(pub String);

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SyncError {}

/// What one poll did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PollOutcome {
    /// Nothing changed and no resync was due.
    Idle,
    /// A new snapshot was published.
    Published {
        /// The snapshot's generation.
        generation: u64,
        /// The state generation it was compiled from.
        state_generation: u64,
        /// Objects that changed since the last publication (0 for a full resync).
        changed: usize,
        /// Compiled from scratch (first sync or periodic resync).
        full: bool,
    },
    /// The state could not be loaded or compiled; the previous snapshot stays.
    Failed(SyncError),
}

/// Keeps one node's snapshot in step with a state directory.
pub struct Syncer {
    dir: StateDir,
    compiler: Compiler,
    ports: PortSource,
    cell: Arc<SnapshotCell>,
    conntracks: Vec<Arc<Conntrack>>,
    resync_interval: Duration,
    /// The state as last read (changed in place by each read); the published snapshot came
    /// from it unless the compile after the read failed (then `force` is set).
    last_good: ClusterState,
    /// The state generation of the published snapshot.
    published_generation: u64,
    reader: incremental::IncrementalReader,
    triggers: trigger::TriggerTimes,
    last_sync: Instant,
    force: bool,
    published: u64,
    problems: Vec<Problem>,
    metrics: SyncMetrics,
}

impl Syncer {
    /// Loads the state and compiles the first snapshot. Fails (publishing nothing) when the
    /// state cannot be read or the node cannot be described yet, e.g. before its Node exists.
    pub fn start(
        dir: StateDir,
        node: &str,
        local: NodeLocal,
        mut ports: PortSource,
        conntracks: Vec<Arc<Conntrack>>,
        clock: SyncClock,
    ) -> Result<Syncer, SyncError> {
        let started = Instant::now();
        let (state, mut problems) = load::load(&dir, None).map_err(|e| SyncError(e.to_string()))?;
        let mut compiler = Compiler::new(node, local);
        let assignments = ports(&state);
        let Compiled {
            mut snapshot,
            problems: compile_problems,
        } = compiler
            .compile(&state, &assignments)
            .map_err(|e| SyncError(e.to_string()))?;
        problems.extend(compile_problems);
        snapshot.generation = 1;
        let metrics = SyncMetrics {
            objects: ObjectCounts::of(&snapshot, problems.len()),
            ..SyncMetrics::default()
        };
        let mut syncer = Syncer {
            dir,
            compiler,
            ports,
            cell: Arc::new(SnapshotCell::new(snapshot)),
            conntracks,
            resync_interval: DEFAULT_RESYNC_INTERVAL,
            published_generation: state.generation(),
            last_good: state,
            reader: incremental::IncrementalReader::default(),
            triggers: trigger::TriggerTimes::default(),
            last_sync: clock.mono,
            force: false,
            published: 1,
            problems,
            metrics,
        };
        syncer.record_success(started, clock, false);
        Ok(syncer)
    }

    /// Sets how often the state is recompiled in full even without a change.
    pub fn with_resync_interval(mut self, interval: Duration) -> Syncer {
        self.resync_interval = interval;
        self
    }

    /// The cell the workers read snapshots from.
    pub fn cell(&self) -> &Arc<SnapshotCell> {
        &self.cell
    }

    pub fn metrics(&self) -> &SyncMetrics {
        &self.metrics
    }

    /// What the last successful sync skipped or programmed only in part.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// Makes the next poll sync even if the state did not change (the port assignments did).
    pub fn request_sync(&mut self) {
        self.force = true;
    }

    /// Syncs if the state changed, a resync is due or one was requested.
    pub fn poll(&mut self, clock: SyncClock) -> PollOutcome {
        let generation = match self.dir.read_generation() {
            Ok(generation) => generation,
            Err(error) => return self.fail(SyncError(error.to_string())),
        };
        let changed = generation != self.last_good.generation();
        let resync_due =
            clock.mono.saturating_duration_since(self.last_sync) >= self.resync_interval;
        if !changed && !resync_due && !self.force {
            return PollOutcome::Idle;
        }
        self.sync(clock, resync_due)
    }

    fn sync(&mut self, clock: SyncClock, full: bool) -> PollOutcome {
        let started = Instant::now();
        let delta = self.reader.read(
            &self.dir,
            &mut self.last_good,
            &mut self.metrics.input,
            &mut self.triggers,
        );
        let (changed, mut problems) = match delta {
            Ok(incremental::Delta::Applied(keys)) => {
                (keys, self.reader.problems().cloned().collect::<Vec<_>>())
            }
            Ok(incremental::Delta::Reload) => {
                let (state, problems) = match load::load(&self.dir, Some(&self.last_good)) {
                    Ok(loaded) => loaded,
                    Err(error) => return self.fail(SyncError(error.to_string())),
                };
                let changed = load::changed_objects(&self.last_good, &state);
                for key in &changed {
                    if let Some(object) = state.object(key) {
                        self.triggers.note(object);
                    }
                }
                self.last_good = state;
                self.reader.reset();
                (changed, problems)
            }
            Err(error) => return self.fail(SyncError(error.to_string())),
        };
        let state = &self.last_good;
        let assignments = (self.ports)(state);
        let compiled = if full {
            self.compiler.compile(state, &assignments)
        } else {
            self.compiler.update(state, &changed, &assignments)
        };
        let mut compiled = match compiled {
            Ok(compiled) => compiled,
            Err(error) => {
                // The state was read; the next poll compiles it again (in full: the failed
                // compile dropped the compiler's caches).
                self.force = true;
                return self.fail(SyncError(error.to_string()));
            }
        };
        problems.append(&mut compiled.problems);
        self.published += 1;
        compiled.snapshot.generation = self.published;
        let counts =
            self.metrics
                .objects
                .updated(&self.cell.load(), &compiled.snapshot, problems.len());
        let old = self.cell.publish(compiled.snapshot);
        let new = self.cell.load();
        for ct in &self.conntracks {
            warn_if_not_quiet(&flush_stale(ct, &old, &new, clock.conntrack));
        }
        let state_generation = self.last_good.generation();
        let state_changed = state_generation != self.published_generation;
        self.published_generation = state_generation;
        self.problems = problems;
        self.metrics.objects = counts;
        self.force = false;
        self.last_sync = clock.mono;
        self.record_success(started, clock, state_changed);
        PollOutcome::Published {
            generation: self.published,
            state_generation,
            changed: changed.len(),
            full,
        }
    }

    /// The programming latencies observed at the last publication (one per change that
    /// carried a trigger time), for benchmarks.
    pub fn last_programming_latencies(&self) -> &[Duration] {
        self.triggers.last_batch()
    }

    fn record_success(&mut self, started: Instant, clock: SyncClock, state_changed: bool) {
        let m = &mut self.metrics;
        m.syncs += 1;
        m.sync_duration.observe(started.elapsed().as_secs_f64());
        m.last_sync_timestamp = clock
            .wall
            .duration_since(UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs_f64());
        m.pending_changes = 0;
        if self.triggers.has_pending() {
            // Live now, after the lock wait, the reads and the compile, not when the poll began.
            self.triggers
                .published(clock.wall + started.elapsed(), &mut m.programming_latency);
        } else if state_changed {
            let committed = std::fs::metadata(self.dir.generation_path())
                .and_then(|meta| meta.modified())
                .ok();
            if let Some(at) = committed {
                // A commit stamped after `wall` (clock skew) counts as instant.
                let latency = clock.wall.duration_since(at).unwrap_or(Duration::ZERO);
                m.programming_latency.observe(latency.as_secs_f64());
            }
        }
    }

    fn fail(&mut self, error: SyncError) -> PollOutcome {
        self.metrics.sync_failures += 1;
        if let Ok(generation) = self.dir.read_generation() {
            self.metrics.pending_changes = generation.saturating_sub(self.published_generation);
        }
        PollOutcome::Failed(error)
    }
}

/// Logs a flush that went ahead while workers were still on the old snapshot (they were stuck
/// in one round for the whole grace period): flows they create from it may survive the flush.
pub(crate) fn warn_if_not_quiet(report: &FlushReport) {
    if let Quiescence::TimedOut { stuck } = report.quiescence {
        crate::node::log::warn(format_args!(
            "flush: {stuck} worker(s) still on the previous snapshot after {DEFAULT_GRACE_TIMEOUT:?}; \
             flushed {} stale flows anyway",
            report.total()
        ));
    }
}
