//! Keeping the published [`RecordIndex`] in step with the cluster: a thread polls the
//! source's change counter every [`POLL_INTERVAL`] and, when it moved, loads the state,
//! builds a new index and swaps it in with one pointer store.
//!
//! The source is the state directory (its generation file, as the node's sync loop polls it)
//! or a Kubernetes API server through [`KubeSource`] (its watch counter).
//!
//! Invariants: a failed load or build publishes nothing, so the server keeps answering from
//! the last good index; the generation remembered is the one the loaded state carries (read
//! under the store's lock, before its objects), so a change racing a load is seen at the next
//! poll; a failure is reported once, not at every poll.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_proto::rr::Name;

use super::build::ZoneConfig;
use super::index::RecordIndex;
use super::names::zone_name;
use crate::kube_source::KubeSource;
use crate::state::ClusterState;
use crate::store::StateDir;

/// How often the change counter is read: a Service change shows in DNS well within a second.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Where the cluster is read from.
pub enum ClusterSource {
    /// A state directory of the embedded API server.
    State(StateDir),
    /// A Kubernetes API server; its settings' `cluster_domain` is the default zone.
    Kubernetes(Box<KubeSource>),
}

impl ClusterSource {
    /// Whether a consistent state can be read: always for a state directory; for Kubernetes,
    /// once every kind was listed (before that, missing Services would read as NXDOMAIN).
    pub fn is_ready(&self) -> bool {
        match self {
            ClusterSource::State(_) => true,
            ClusterSource::Kubernetes(kube) => kube.is_ready(),
        }
    }

    /// The change counter.
    fn generation(&self) -> Result<u64, String> {
        match self {
            ClusterSource::State(dir) => dir.read_generation().map_err(|e| e.to_string()),
            ClusterSource::Kubernetes(kube) => Ok(kube.generation()),
        }
    }

    /// The whole index, built from a fresh snapshot; `zone` overrides the cluster's domain.
    pub fn build(&self, zone: Option<&Name>) -> Result<RecordIndex, String> {
        match self {
            ClusterSource::State(dir) => {
                let state = ClusterState::load(dir.root()).map_err(|e| e.to_string())?;
                let config = ZoneConfig::from_settings(state.settings(), zone)?;
                Ok(RecordIndex::build(&state, &config))
            }
            ClusterSource::Kubernetes(kube) => {
                let state = kube.snapshot();
                // The API server does not say which ranges it allocates from or where the
                // cluster DNS Service is: only published names are answered in reverse.
                let config = ZoneConfig {
                    zone: match zone {
                        Some(zone) => zone.clone(),
                        None => zone_name(&kube.settings().cluster_domain)?,
                    },
                    server_ip: None,
                    reverse_ranges: Vec::new(),
                };
                Ok(RecordIndex::build(&state, &config))
            }
        }
    }
}

/// The thread that keeps an index current; dropping it stops and joins the thread.
pub struct Reloader {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Reloader {
    /// Builds the first index from `source` (failing when it cannot be read) and starts
    /// following it. Returns the cell the server reads and the thread's handle.
    pub fn start(
        source: ClusterSource,
        zone: Option<Name>,
    ) -> Result<(Arc<ArcSwap<RecordIndex>>, Reloader), String> {
        let first = source.build(zone.as_ref())?;
        let cell = Arc::new(ArcSwap::from_pointee(first));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = thread::Builder::new()
            .name("dns-reload".to_owned())
            .spawn({
                let cell = Arc::clone(&cell);
                let stop = Arc::clone(&stop);
                move || follow(&source, zone.as_ref(), &cell, &stop)
            })
            .map_err(|e| format!("starting the reload thread: {e}"))?;
        let reloader = Reloader {
            stop,
            thread: Some(thread),
        };
        Ok((cell, reloader))
    }
}

impl Drop for Reloader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The reload loop: poll, rebuild on change, report failures once.
fn follow(
    source: &ClusterSource,
    zone: Option<&Name>,
    cell: &ArcSwap<RecordIndex>,
    stop: &AtomicBool,
) {
    let mut last_failure = None;
    while !stop.load(Ordering::Relaxed) {
        thread::sleep(POLL_INTERVAL);
        let result = source.generation().and_then(|generation| {
            if generation == cell.load().generation() {
                return Ok(());
            }
            let index = source.build(zone)?;
            cell.store(Arc::new(index));
            Ok(())
        });
        match result {
            Ok(()) => last_failure = None,
            Err(message) => {
                if last_failure.as_ref() != Some(&message) {
                    eprintln!("dns: keeping the last records: {message}");
                }
                last_failure = Some(message);
            }
        }
    }
}
