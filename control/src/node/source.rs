//! Where snapshots come from: the state directory through the [`Syncer`], or a Kubernetes API
//! server through [`KubeSource`] and a compile loop of the same shape ([`KubeSync`]).
//!
//! Invariants (both sources): nothing is published until the first snapshot compiles (for
//! Kubernetes, until every kind was listed once); a failed sync keeps the last snapshot;
//! generations increase by one per publication; every publication is followed by the flush of
//! the flows it made stale.

use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use dataplane::reconcile::flush_stale;
use dataplane::snapshot::SnapshotCell;
use dataplane::tables::conntrack::Conntrack;

use super::config::SourceSettings;
use crate::compile::{Compiler, NodeLocal, Problem};
use crate::kube_source::{KubeSource, NodePublisher, apply_changes};
use crate::state::ClusterState;
use crate::store::StateDir;
use crate::sync::input_health;
use crate::sync::metrics::{ObjectCounts, SyncMetrics};
use crate::sync::trigger::TriggerTimes;
use crate::sync::{PollOutcome, PortSource, SyncClock, SyncError, Syncer};

/// How long a sync loop woken by a watch event waits for more before syncing, so a burst of
/// events is one sync: the bounded delay of batching (everything that arrives while a sync
/// runs is the next sync's batch as well).
pub const BATCH_WINDOW: Duration = Duration::from_millis(2);

/// A running snapshot source.
pub enum Source {
    /// The Syncer and its state directory.
    State(Box<Syncer>, std::path::PathBuf),
    Kubernetes(Box<KubeSync>),
}

impl Source {
    pub fn cell(&self) -> Arc<SnapshotCell> {
        match self {
            Source::State(s, _) => Arc::clone(s.cell()),
            Source::Kubernetes(k) => Arc::clone(&k.cell),
        }
    }

    pub fn poll(&mut self, clock: SyncClock) -> PollOutcome {
        match self {
            Source::State(s, _) => s.poll(clock),
            Source::Kubernetes(k) => k.poll(clock),
        }
    }

    /// Waits until there may be something to sync, at most `timeout`. The Kubernetes source
    /// wakes on its first new watch event and then gathers a burst for [`BATCH_WINDOW`]; the
    /// state directory is polled (this sleeps `timeout`).
    pub fn wait_for_change(&self, timeout: Duration) {
        match self {
            Source::Kubernetes(k) if k.force => {}
            Source::Kubernetes(k) => {
                if k.source.wait_for_change(k.seen, timeout) != k.seen {
                    std::thread::sleep(BATCH_WINDOW);
                }
            }
            Source::State(..) => std::thread::sleep(timeout),
        }
    }

    /// Whether [`Source::wait_for_change`] wakes on a change (else it only sleeps).
    pub fn wakes_on_change(&self) -> bool {
        matches!(self, Source::Kubernetes(_))
    }

    pub fn request_sync(&mut self) {
        match self {
            Source::State(s, _) => s.request_sync(),
            Source::Kubernetes(k) => k.force = true,
        }
    }

    pub fn metrics(&self) -> &SyncMetrics {
        match self {
            Source::State(s, _) => s.metrics(),
            Source::Kubernetes(k) => &k.metrics,
        }
    }

    /// The programming latencies of the changes the last publication carried (those with a
    /// trigger time), for the churn benchmark.
    pub fn last_programming_latencies(&self) -> &[Duration] {
        match self {
            Source::State(s, _) => s.last_programming_latencies(),
            Source::Kubernetes(k) => k.last_programming_latencies(),
        }
    }

    pub fn problems(&self) -> &[Problem] {
        match self {
            Source::State(s, _) => s.problems(),
            Source::Kubernetes(k) => &k.problems,
        }
    }

    /// Applies new node-local compile inputs (a reload). The Kubernetes source recompiles into
    /// the same cell at its next poll; the state source is started anew, into a new cell the
    /// caller hands to the workers. On failure the running source is kept.
    pub fn with_local(
        &mut self,
        inputs: SourceInputs<'_>,
        ports: PortSource,
        clock: SyncClock,
    ) -> Result<(), String> {
        match self {
            Source::Kubernetes(k) => {
                k.compiler = Compiler::new(inputs.node, inputs.local);
                k.resync = inputs.resync;
                k.force = true;
                Ok(())
            }
            Source::State(s, root) => {
                let dir = StateDir::new(root.clone());
                let fresh = Syncer::start(
                    dir,
                    inputs.node,
                    inputs.local,
                    ports,
                    inputs.conntracks,
                    clock,
                )
                .map_err(|e| e.to_string())?;
                **s = fresh.with_resync_interval(inputs.resync);
                Ok(())
            }
        }
    }
}

/// What every (re)start of a source needs.
pub struct SourceInputs<'a> {
    pub node: &'a str,
    pub local: NodeLocal,
    pub conntracks: Vec<Arc<Conntrack>>,
    pub resync: Duration,
}

/// Starts a source, possibly over several tries (the Node may not exist yet, the API server
/// may still be listing).
pub struct Starter {
    settings: SourceSettings,
    kube: Option<KubeSource>,
}

impl Starter {
    pub fn new(settings: SourceSettings) -> Starter {
        Starter {
            settings,
            kube: None,
        }
    }

    /// One try: the running source, or why there is none yet (fatal errors say so).
    pub fn try_start(
        &mut self,
        inputs: SourceInputs<'_>,
        ports: PortSource,
        clock: SyncClock,
    ) -> Result<Source, StartError> {
        match &self.settings {
            SourceSettings::State(dir) => Syncer::start(
                StateDir::new(dir),
                inputs.node,
                inputs.local,
                ports,
                inputs.conntracks,
                clock,
            )
            .map(|s| Source::State(Box::new(s.with_resync_interval(inputs.resync)), dir.clone()))
            .map_err(|e| StartError::NotYet(e.to_string())),
            SourceSettings::Kubernetes { client, cluster } => {
                if self.kube.is_none() {
                    self.kube = Some(
                        KubeSource::connect_incremental(client.clone(), cluster.clone())
                            .map_err(|e| StartError::Fatal(e.to_string()))?,
                    );
                }
                KubeSync::start(&mut self.kube, inputs, ports, clock)
                    .map(|k| Source::Kubernetes(Box::new(k)))
                    .map_err(StartError::NotYet)
            }
        }
    }
}

/// Why no source runs yet.
#[derive(Debug)]
pub enum StartError {
    /// Retry later (no Node yet, still listing, state unreadable).
    NotYet(String),
    /// Retrying will not help (bad kubeconfig).
    Fatal(String),
}

/// The Kubernetes counterpart of the [`Syncer`]: polls the watchers' change counter, applies
/// the queued watch events to the one state it keeps and recompiles what they touched with
/// the same incremental [`Compiler`] (in full at the periodic resync). After applying events
/// it publishes the node's own VTEP on its Node when the Node lacks it ([`NodePublisher`]). Everything queued
/// between two polls is one batch, so a burst waits at most one poll interval plus a sync.
pub struct KubeSync {
    source: KubeSource,
    compiler: Compiler,
    /// The cluster as the applied watch events show it.
    state: ClusterState,
    triggers: TriggerTimes,
    /// The watchers' error count already reported.
    watch_errors: u64,
    ports: PortSource,
    cell: Arc<SnapshotCell>,
    conntracks: Vec<Arc<Conntrack>>,
    seen: u64,
    resync: Duration,
    last_sync: Instant,
    force: bool,
    published: u64,
    metrics: SyncMetrics,
    problems: Vec<Problem>,
    publisher: NodePublisher,
}

impl KubeSync {
    /// Compiles the first snapshot from `slot`'s source, taking the source on success.
    fn start(
        slot: &mut Option<KubeSource>,
        inputs: SourceInputs<'_>,
        mut ports: PortSource,
        clock: SyncClock,
    ) -> Result<KubeSync, String> {
        let Some(source) = slot.as_ref() else {
            return Err("no Kubernetes source".to_owned());
        };
        if !source.is_ready() {
            let status = source.status();
            let why = format!(
                "waiting for the initial lists ({} of 6 kinds listed{})",
                status.listed.len(),
                status
                    .last_error
                    .map(|e| format!("; last error: {e}"))
                    .unwrap_or_default()
            );
            return Err(why);
        }
        let started = Instant::now();
        let mut state = ClusterState::new(source.settings().clone());
        state.set_generation(source.generation());
        let mut metrics = SyncMetrics::default();
        let mut triggers = TriggerTimes::default();
        apply_changes(
            &mut state,
            source.take_changes(),
            &mut metrics.input,
            &mut triggers,
        );
        let mut publisher = NodePublisher::new(inputs.node).with_underlay6(inputs.local.node_ip6);
        if let Some(publication) = publisher.due(&state) {
            source.publish_node(publication);
        }
        let mut compiler = Compiler::new(inputs.node, inputs.local);
        let compiled = compiler
            .compile(&state, &ports(&state))
            .map_err(|e| e.to_string())?;
        let Some(source) = slot.take() else {
            return Err("no Kubernetes source".to_owned());
        };
        let mut snapshot = compiled.snapshot;
        snapshot.generation = 1;
        metrics.objects = ObjectCounts::of(&snapshot, compiled.problems.len());
        let mut sync = KubeSync {
            seen: state.generation(),
            source,
            compiler,
            state,
            triggers,
            watch_errors: 0,
            ports,
            metrics,
            cell: Arc::new(SnapshotCell::new(snapshot)),
            conntracks: inputs.conntracks,
            resync: inputs.resync,
            last_sync: clock.mono,
            force: false,
            published: 1,
            problems: compiled.problems,
            publisher,
        };
        sync.note_watch_errors();
        sync.record_success(started, clock);
        Ok(sync)
    }

    /// Reports the watch errors (malformed events, failed requests) seen since the last call.
    fn note_watch_errors(&mut self) {
        let status = self.source.status();
        let new = status.watch_errors.saturating_sub(self.watch_errors);
        self.watch_errors = status.watch_errors;
        if new == 0 {
            self.metrics.input.clean_read();
        }
        self.metrics
            .input
            .record_count(input_health::WATCH_ERROR, new, status.last_error);
    }

    fn poll(&mut self, clock: SyncClock) -> PollOutcome {
        let generation = self.source.generation();
        let resync_due = clock.mono.saturating_duration_since(self.last_sync) >= self.resync;
        if generation == self.seen && !resync_due && !self.force {
            return PollOutcome::Idle;
        }
        let started = Instant::now();
        self.note_watch_errors();
        let changed = apply_changes(
            &mut self.state,
            self.source.take_changes(),
            &mut self.metrics.input,
            &mut self.triggers,
        );
        self.state.set_generation(generation);
        if let Some(publication) = self.publisher.due(&self.state) {
            self.source.publish_node(publication);
        }
        let assignments = (self.ports)(&self.state);
        let compiled = if resync_due {
            self.compiler.compile(&self.state, &assignments)
        } else {
            self.compiler.update(&self.state, &changed, &assignments)
        };
        let compiled = match compiled {
            Ok(compiled) => compiled,
            Err(error) => {
                // The events are applied; the next poll compiles again (in full).
                self.force = true;
                self.metrics.sync_failures += 1;
                return PollOutcome::Failed(SyncError(error.to_string()));
            }
        };
        let mut snapshot = compiled.snapshot;
        self.published += 1;
        snapshot.generation = self.published;
        self.metrics.objects =
            self.metrics
                .objects
                .updated(&self.cell.load(), &snapshot, compiled.problems.len());
        let old = self.cell.publish(snapshot);
        let new = self.cell.load();
        for ct in &self.conntracks {
            crate::sync::warn_if_not_quiet(&flush_stale(ct, &old, &new, clock.conntrack));
        }
        self.seen = generation;
        self.problems = compiled.problems;
        self.force = false;
        self.last_sync = clock.mono;
        self.record_success(started, clock);
        PollOutcome::Published {
            generation: self.published,
            state_generation: self.seen,
            changed: changed.len(),
            full: resync_due,
        }
    }

    /// The programming latencies observed at the last publication, for benchmarks.
    pub fn last_programming_latencies(&self) -> &[Duration] {
        self.triggers.last_batch()
    }

    fn record_success(&mut self, started: Instant, clock: SyncClock) {
        let m = &mut self.metrics;
        m.syncs += 1;
        m.sync_duration.observe(started.elapsed().as_secs_f64());
        m.last_sync_timestamp = clock
            .wall
            .duration_since(UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs_f64());
        self.triggers
            .published(clock.wall + started.elapsed(), &mut m.programming_latency);
    }
}
