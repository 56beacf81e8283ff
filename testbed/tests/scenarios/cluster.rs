//! One testbed per test, under a prefix of its own, taken down when the guard drops (on
//! success and on panic, with the node logs printed on panic).
//!
//! Invariants: the ferroplane binary the testbed runs is the workspace's own debug build
//! (brought up to date once per run); one testbed runs at a time.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use serde_json::Value;

pub const TESTBED: &str = env!("CARGO_BIN_EXE_testbed");
pub const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/demo");
pub const MANIFESTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/manifests");

/// `ferroplane` beside the testbed binary, brought up to date by `cargo build` once per run
/// (never a stale binary). Built with the feature unification of `cargo test --workspace`
/// (every package, test targets included), so after that it is a no-op, not a second build.
pub fn ferroplane() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--workspace", "--tests", "--bin", "ferroplane"])
            .status()
            .unwrap();
        assert!(status.success(), "building ferroplane failed");
        Path::new(TESTBED).with_file_name("ferroplane")
    })
}

/// One testbed at a time: the scenarios measure timings (relabel, restart gaps) that a
/// second cluster competing for the same two cores would distort.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The I/O backend of every scenario's pods: `FERROPLANE_TESTBED_IO` (tap, af-packet, af-xdp),
/// tap by default.
pub fn io_backend() -> String {
    std::env::var("FERROPLANE_TESTBED_IO").unwrap_or_else(|_| "tap".to_owned())
}

/// This test's turn to run a testbed, for a test that brings one up itself (`testbed soak`).
pub fn turn() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
}

pub struct Cluster {
    pub prefix: String,
    /// Every `testbed` call wires pods through `ferroplane-cni` (`FERROPLANE_TESTBED_CNI`).
    plugin: bool,
    _turn: MutexGuard<'static, ()>,
}

impl Cluster {
    /// `testbed up` with these arguments, under prefix `t<tag><pid>`.
    pub fn up(tag: &str, args: &[&str]) -> Cluster {
        Cluster::start(tag, args, false)
    }

    /// [`Cluster::up`] with every pod wired through `ferroplane-cni`, whatever the default.
    pub fn up_with_plugin(tag: &str, args: &[&str]) -> Cluster {
        Cluster::start(tag, args, true)
    }

    fn start(tag: &str, args: &[&str], plugin: bool) -> Cluster {
        let out = Command::new("id").arg("-u").output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "0",
            "the scenarios build network namespaces: run them as root"
        );
        let turn = turn();
        let cluster = Cluster {
            prefix: format!("t{tag}{}", std::process::id()),
            plugin,
            _turn: turn,
        };
        let io = io_backend();
        eprintln!("scenario {tag}: pods on {io}");
        let bin = ferroplane().display().to_string();
        let mut all = vec!["up", "--io", &io, "--ferroplane", &bin];
        all.extend_from_slice(args);
        let out = cluster.testbed(&all);
        assert!(
            out.status.success(),
            "testbed up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        cluster
    }

    pub fn testbed(&self, args: &[&str]) -> Output {
        let mut command = Command::new(TESTBED);
        if self.plugin {
            command.env("FERROPLANE_TESTBED_CNI", "plugin");
        }
        command
            .arg("--prefix")
            .arg(&self.prefix)
            .args(args)
            .output()
            .unwrap()
    }

    pub fn status(&self) -> Value {
        let out = self.testbed(&["status", "-o", "json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The pod's IP, from `testbed status`.
    pub fn pod_ip(&self, pod: &str) -> String {
        let status = self.status();
        let pods = status["pods"].as_array().unwrap();
        let found = pods.iter().find(|p| p["name"] == pod).unwrap();
        found["ip"].as_str().unwrap().to_owned()
    }

    /// `testbed probe FROM TARGET --protocol P -o json`, parsed.
    pub fn probe(&self, from: &str, target: &str, protocol: &str, requests: usize) -> Value {
        let requests = requests.to_string();
        let out = self.testbed(&[
            "probe",
            from,
            target,
            "--protocol",
            protocol,
            "--timeout",
            "2s",
            "--requests",
            &requests,
            "-o",
            "json",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// `testbed probe FROM TARGET --protocol udp --datagram-size SIZE -o json`, parsed.
    pub fn probe_datagram(&self, from: &str, target: &str, size: usize) -> Value {
        let size = size.to_string();
        let out = self.testbed(&[
            "probe",
            from,
            target,
            "--protocol",
            "udp",
            "--timeout",
            "2s",
            "--datagram-size",
            &size,
            "-o",
            "json",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// A Service's ClusterIP, from the control plane.
    pub fn cluster_ip(&self, service: &str) -> String {
        let svc = self.get("svc", service);
        svc["spec"]["clusterIP"].as_str().unwrap().to_owned()
    }

    /// `ferroplane get KIND NAME -o json` on the testbed's state.
    pub fn get(&self, kind: &str, name: &str) -> Value {
        let state = self.status()["state_dir"].as_str().unwrap().to_owned();
        let out = Command::new(ferroplane())
            .args(["--state", &state, "get", kind, name, "-o", "json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// `testbed VERB ARGS...`, which must succeed.
    pub fn ok(&self, args: &[&str]) {
        let out = self.testbed(args);
        assert!(
            out.status.success(),
            "testbed {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The nodes' IPs, in order.
    pub fn node_ips(&self) -> Vec<String> {
        let status = self.status();
        let nodes = status["nodes"].as_array().unwrap();
        nodes
            .iter()
            .map(|n| n["ip"].as_str().unwrap().to_owned())
            .collect()
    }

    pub fn namespace(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let logs = Path::new("/run/ferroplane-testbed")
                .join(&self.prefix)
                .join("nodes");
            for entry in std::fs::read_dir(logs).into_iter().flatten().flatten() {
                let log = std::fs::read_to_string(entry.path().join("ferroplane.log"));
                eprintln!("---- {:?}\n{}", entry.file_name(), log.unwrap_or_default());
            }
        }
        let out = self.testbed(&["down"]);
        assert!(
            out.status.success() || std::thread::panicking(),
            "testbed down: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let left: Vec<String> = String::from_utf8_lossy(
            &Command::new("ip")
                .args(["netns", "list"])
                .output()
                .unwrap()
                .stdout,
        )
        .lines()
        .filter(|l| l.starts_with(&format!("{}-", self.prefix)))
        .map(str::to_owned)
        .collect();
        assert!(
            left.is_empty() || std::thread::panicking(),
            "testbed down left {left:?}"
        );
    }
}
