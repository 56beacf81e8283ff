//! `--source kubernetes`: the cluster read from a real Kubernetes API server through kube-rs
//! watchers, for running ferroplane as a kube-proxy replacement, instead of from the state
//! directory.
//!
//! [`KubeSource::connect`] starts one thread with a tokio current-thread runtime that lists and
//! watches Namespaces, Nodes, Pods, Services, EndpointSlices and NetworkPolicies cluster-wide
//! into reflector stores (Endpoints are not read: EndpointSlices are the source of truth).
//! The sync loop polls it like the state directory: [`KubeSource::generation`] is the change
//! counter, [`KubeSource::snapshot`] the [`ClusterState`]; the cluster settings (cluster CIDR
//! and the rest) come from the node's configuration, as there is no `cluster.json` to read.
//!
//! Invariants:
//! - [`KubeSource::is_ready`] is false until the initial list of every kind has completed, so
//!   a restarting node never programs a half-listed cluster; the caller waits for it before
//!   the first sync. After that, re-lists (a watch too old, `410 Gone`) replace a kind's store
//!   in one step and never empty it in between.
//! - A snapshot's generation was read before its objects, so a snapshot never carries a newer
//!   generation than its contents: a change racing a snapshot shows up as a later generation.
//! - Dropping the source stops the watchers and joins their thread.
//! - The only write is the node's own VTEP on its Node ([`KubeSource::publish_node`],
//!   `publish.rs`), a PATCH sent by the same thread.

mod changes;
mod progress;
mod publish;
mod watch;

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, mpsc};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::model::Kind;
use crate::settings::ClusterSettings;
use crate::state::ClusterState;

pub use changes::{ChangeQueue, WatchChange, apply_changes};
use progress::Progress;
pub use progress::SourceStatus;
pub use publish::{NodePublication, NodePublisher, PublicationStatus, carries, wanted_annotations};
use watch::Stores;

/// The kinds the source lists and watches (and the RBAC in `deploy/` grants).
pub const WATCHED_KINDS: [Kind; 6] = [
    Kind::Namespace,
    Kind::Node,
    Kind::Pod,
    Kind::Service,
    Kind::EndpointSlice,
    Kind::NetworkPolicy,
];

/// Where the API server is and how to authenticate to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KubeSourceConfig {
    /// A kubeconfig file. Without one: the default kubeconfig (`KUBECONFIG`, `~/.kube/config`)
    /// if present, else the in-cluster service account.
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use instead of its current context.
    pub context: Option<String>,
}

/// Why the source could not start.
#[derive(Debug)]
pub enum KubeSourceError {
    /// The cluster settings given are inconsistent.
    Settings(String),
    /// The kubeconfig could not be read or lacks the context, cluster or user it names.
    Kubeconfig(kube::config::KubeconfigError),
    /// Neither a kubeconfig nor an in-cluster environment was found.
    Infer(kube::config::InferConfigError),
    /// The client could not be built from the configuration (TLS material, proxy, auth).
    Client(kube::Error),
    /// The watcher thread or its runtime could not be started.
    Thread(std::io::Error),
    /// The watcher thread ended before it reported whether it connected.
    Stopped,
}

impl fmt::Display for KubeSourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KubeSourceError::Settings(message) => write!(f, "cluster settings: {message}"),
            KubeSourceError::Kubeconfig(error) => write!(f, "kubeconfig: {error}"),
            KubeSourceError::Infer(error) => {
                write!(f, "no kubeconfig and not running in a pod: {error}")
            }
            KubeSourceError::Client(error) => write!(f, "Kubernetes client: {error}"),
            KubeSourceError::Thread(error) => write!(f, "starting the watcher thread: {error}"),
            KubeSourceError::Stopped => f.write_str("the watcher thread stopped while starting"),
        }
    }
}

impl std::error::Error for KubeSourceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            KubeSourceError::Kubeconfig(error) => Some(error),
            KubeSourceError::Infer(error) => Some(error),
            KubeSourceError::Client(error) => Some(error),
            KubeSourceError::Thread(error) => Some(error),
            KubeSourceError::Settings(_) | KubeSourceError::Stopped => None,
        }
    }
}

/// The cluster as a Kubernetes API server shows it, kept current by watchers.
pub struct KubeSource {
    settings: ClusterSettings,
    stores: Stores,
    /// Set for an incremental source (the stores then stay empty).
    changes: Option<Arc<ChangeQueue>>,
    progress: Arc<Progress>,
    publications: tokio::sync::mpsc::UnboundedSender<NodePublication>,
    publication_status: Arc<publish::SharedStatus>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl KubeSource {
    /// Loads the client configuration, starts the watchers and returns without waiting for the
    /// initial lists (see [`KubeSource::is_ready`]). Fails on bad settings or configuration;
    /// an API server that cannot be reached is retried with backoff and shows in
    /// [`KubeSource::status`].
    pub fn connect(
        config: KubeSourceConfig,
        settings: ClusterSettings,
    ) -> Result<KubeSource, KubeSourceError> {
        KubeSource::start(config, settings, false)
    }

    /// Like [`KubeSource::connect`], but the watch events are queued for
    /// [`KubeSource::take_changes`] instead of kept in stores: [`KubeSource::snapshot`] stays
    /// empty and the caller keeps its own state ([`apply_changes`]), holding each object once.
    pub fn connect_incremental(
        config: KubeSourceConfig,
        settings: ClusterSettings,
    ) -> Result<KubeSource, KubeSourceError> {
        KubeSource::start(config, settings, true)
    }

    fn start(
        config: KubeSourceConfig,
        settings: ClusterSettings,
        incremental: bool,
    ) -> Result<KubeSource, KubeSourceError> {
        settings.validate().map_err(KubeSourceError::Settings)?;
        let (stores, writers) = watch::stores();
        let changes = incremental.then(|| Arc::new(ChangeQueue::default()));
        let watcher_changes = changes.clone();
        let writers = (!incremental).then_some(writers);
        let progress = Arc::new(Progress::default());
        let (started_tx, started_rx) = mpsc::channel();
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let watcher_progress = Arc::clone(&progress);
        let (publications, publication_requests) = tokio::sync::mpsc::unbounded_channel();
        let publication_status = Arc::new(publish::SharedStatus::default());
        let publisher_status = Arc::clone(&publication_status);
        let thread = thread::Builder::new()
            .name("kube-source".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = started_tx.send(Err(KubeSourceError::Thread(error)));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let client = match watch::load_config(&config).await.and_then(watch::client) {
                        Ok(client) => client,
                        Err(error) => {
                            let _ = started_tx.send(Err(error));
                            return;
                        }
                    };
                    let watchers = watch::watch_all(
                        &client,
                        writers,
                        watcher_changes.as_ref(),
                        &watcher_progress,
                    );
                    let publisher =
                        publish::serve(client.clone(), publication_requests, publisher_status);
                    let _ = started_tx.send(Ok(()));
                    let work = futures_util::future::join(watchers, publisher);
                    futures_util::future::select(Box::pin(work), shutdown_rx).await;
                });
            })
            .map_err(KubeSourceError::Thread)?;
        let started = started_rx.recv().unwrap_or(Err(KubeSourceError::Stopped));
        if let Err(error) = started {
            let _ = thread.join();
            return Err(error);
        }
        Ok(KubeSource {
            settings,
            stores,
            changes,
            progress,
            publications,
            publication_status,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        })
    }

    /// Whether the initial list of every watched kind has completed.
    pub fn is_ready(&self) -> bool {
        self.progress.is_ready()
    }

    /// The change counter: bumped on every watcher event that changes what the stores show
    /// (an object added, modified or deleted; a list completed).
    pub fn generation(&self) -> u64 {
        self.progress.generation()
    }

    /// Blocks until the generation is above `seen` or `timeout` passes; returns the generation
    /// (unchanged on timeout). Lets a sync loop react at once instead of polling on a timer.
    pub fn wait_for_change(&self, seen: u64, timeout: Duration) -> u64 {
        self.progress.wait_for_change(seen, timeout)
    }

    /// Generation, listed kinds and watch errors, for logs and health reporting.
    pub fn status(&self) -> SourceStatus {
        self.progress.status()
    }

    /// The watch events queued since the last call (always empty unless the source was made
    /// with [`KubeSource::connect_incremental`]).
    pub fn take_changes(&self) -> Vec<WatchChange> {
        self.changes.as_ref().map(|q| q.take()).unwrap_or_default()
    }

    /// Queues a PATCH of a Node's annotations, sent by the watcher thread (retried there until
    /// it succeeds or a newer publication replaces it).
    pub fn publish_node(&self, publication: NodePublication) {
        // Fails only once the thread has stopped, when nothing is published any more anyway.
        let _ = self.publications.send(publication);
    }

    /// What the node publications have done so far.
    pub fn publication_status(&self) -> PublicationStatus {
        self.publication_status.get()
    }

    pub fn settings(&self) -> &ClusterSettings {
        &self.settings
    }

    /// The cluster as the stores show it now, with the settings given to
    /// [`KubeSource::connect`], at the generation read just before the objects. Before
    /// [`KubeSource::is_ready`] it lacks the kinds not listed yet.
    pub fn snapshot(&self) -> ClusterState {
        let mut state = ClusterState::new(self.settings.clone());
        state.set_generation(self.progress.generation());
        self.stores.copy_into(&mut state);
        state
    }
}

impl Drop for KubeSource {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl fmt::Debug for KubeSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeSource")
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}
