//! `--source kubernetes` against recorded API server responses (no real API server can run
//! here): the recorded lists under `tests/recorded/` and watch events from
//! `tests/recorded/watch/` are served over plain HTTP on 127.0.0.1 by [`server::RecordedApi`],
//! and a kubeconfig written to a temporary directory points the source at it.
//!
//! Also checks the manifests in `deploy/` ([`deploy`]).

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md); the helpers here are test code too

mod deploy;
mod events;
mod incremental;
mod publish;
mod server;
mod startup;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use control::ClusterSettings;
use control::kube_source::{KubeSource, KubeSourceConfig};
use control::model::Kind;
use serde_json::Value;

use server::RecordedApi;

/// The recorded responses.
pub fn recorded_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/recorded")
}

pub fn recorded(file: &str) -> Value {
    serde_json::from_slice(&std::fs::read(recorded_dir().join(file)).unwrap()).unwrap()
}

/// `(namespace, name)` of every item of a recorded list, namespace empty for cluster-scoped
/// kinds.
pub fn recorded_names(file: &str) -> BTreeSet<(String, String)> {
    recorded(file)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            let meta = &item["metadata"];
            (
                meta["namespace"].as_str().unwrap_or("").to_owned(),
                meta["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// `(namespace, name)` of every object of `kind` in a snapshot.
pub fn state_names(state: &control::ClusterState, kind: Kind) -> BTreeSet<(String, String)> {
    state
        .objects_of(kind)
        .map(|object| {
            let key = object.object_ref();
            (key.namespace, key.name)
        })
        .collect()
}

/// Settings that differ from the defaults, to see them passed through.
pub fn settings() -> ClusterSettings {
    ClusterSettings {
        cluster_domain: "recorded.example".to_owned(),
        vxlan_port: 4789,
        ..ClusterSettings::default()
    }
}

/// Writes a kubeconfig whose contexts name the given servers; the first is current.
pub fn write_kubeconfig(dir: &Path, contexts: &[(&str, &str)]) -> PathBuf {
    let mut clusters = String::new();
    let mut named = String::new();
    for (name, server) in contexts {
        clusters.push_str(&format!(
            "- name: {name}\n  cluster:\n    server: {server}\n"
        ));
        named.push_str(&format!(
            "- name: {name}\n  context:\n    cluster: {name}\n    user: nobody\n"
        ));
    }
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n{clusters}users:\n- name: nobody\n  user: {{}}\ncontexts:\n{named}current-context: {}\n",
        contexts[0].0
    );
    let path = dir.join("kubeconfig");
    std::fs::write(&path, text).unwrap();
    path
}

/// Polls `condition` every 10 ms for up to 20 s.
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// A recorded API server and a source connected to it.
pub struct Fixture {
    pub api: RecordedApi,
    pub source: KubeSource,
    _dir: tempfile::TempDir,
}

impl Fixture {
    /// Starts the server, connects, and (unless a test holds a list first) waits until ready.
    pub fn start() -> Fixture {
        let fixture = Fixture::connect_with(|_| {});
        wait_until("the initial lists", || fixture.source.is_ready());
        fixture
    }

    /// Like [`Fixture::start`] with a source that queues watch events
    /// ([`KubeSource::connect_incremental`]).
    pub fn start_incremental() -> Fixture {
        let api = RecordedApi::start(&recorded_dir());
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = write_kubeconfig(dir.path(), &[("recorded", &api.url())]);
        let config = KubeSourceConfig {
            kubeconfig: Some(kubeconfig),
            context: None,
        };
        let source = KubeSource::connect_incremental(config, settings()).unwrap();
        wait_until("the initial lists", || source.is_ready());
        Fixture {
            api,
            source,
            _dir: dir,
        }
    }

    /// Starts the server, lets `prepare` adjust it, then connects without waiting.
    pub fn connect_with(prepare: impl FnOnce(&RecordedApi)) -> Fixture {
        let api = RecordedApi::start(&recorded_dir());
        prepare(&api);
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = write_kubeconfig(dir.path(), &[("recorded", &api.url())]);
        let config = KubeSourceConfig {
            kubeconfig: Some(kubeconfig),
            context: None,
        };
        let source = KubeSource::connect(config, settings()).unwrap();
        Fixture {
            api,
            source,
            _dir: dir,
        }
    }
}
