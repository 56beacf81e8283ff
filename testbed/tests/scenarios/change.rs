//! Scenario 6: dealing with change under continuous client load (`testbed load` from
//! store-fe to the store-be Service: a new connection every 20 ms, plus long-lived ones).
//! In turn: a rolling update (new pod ready, old pod unready, drained, killed), a crashed pod,
//! a ferroplane restart on each node, a scale to zero and back. Failed requests are reported
//! per phase; a rolling update fails none; under zero endpoints every request is refused at
//! once, never left hanging; long-lived connections to a surviving backend are never cut.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use testbed::load::unix_ms;

use crate::cluster::{Cluster, MANIFESTS, TESTBED};

const DRAIN: Duration = Duration::from_secs(1);
/// A request is counted in a phase when it started in it or up to this much before (a
/// request that began just before a change may fail because of it).
const SLACK_MS: u64 = 50;

/// When each phase ran, in milliseconds of the Unix clock (the load reports its start on the
/// same clock, so its `at_ms` can be placed exactly).
struct Phases {
    marks: Vec<(&'static str, u64, u64)>,
}

impl Phases {
    /// Runs `step`, then lets the load run on for `settle`, and records the phase.
    fn run(&mut self, name: &'static str, settle: Duration, step: impl FnOnce()) {
        let start = unix_ms();
        step();
        std::thread::sleep(settle);
        self.marks.push((name, start, unix_ms()));
    }

    /// The phase's window in the load's own milliseconds.
    fn window(&self, name: &str, load_start: u64) -> (u64, u64) {
        let (_, start, end) = self.marks.iter().find(|(n, ..)| *n == name).unwrap();
        (
            start.saturating_sub(load_start),
            end.saturating_sub(load_start),
        )
    }
}

fn start_load(cluster: &Cluster, target: &str) -> Child {
    Command::new(TESTBED)
        .args(["--prefix", &cluster.prefix, "load", "store-fe", target])
        .args([
            "--duration",
            "24s",
            "--interval",
            "20ms",
            "--timeout",
            "1s",
            "--hold",
            "6",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn failures_in(report: &Value, (start, end): (u64, u64)) -> Vec<&Value> {
    report["failures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| {
            let at = f["at_ms"].as_u64().unwrap();
            at + SLACK_MS >= start && at < end
        })
        .collect()
}

#[test]
fn service_keeps_serving_through_rollout_crash_restart_and_scale_to_zero() {
    let cluster = Cluster::up("ch", &[]);
    let vip = format!("{}:80", cluster.cluster_ip("store-be"));
    let load = start_load(&cluster, &vip);
    let mut phases = Phases { marks: Vec::new() };
    std::thread::sleep(Duration::from_secs(2));

    let settle = Duration::from_secs(2);
    phases.run("rolling update", settle, || {
        cluster.ok(&["apply", "-f", &format!("{MANIFESTS}/store-be-next.yaml")]);
        for old in ["store-be-2", "store-be-3"] {
            cluster.ok(&["set-ready", old, "false"]);
            std::thread::sleep(DRAIN);
            cluster.ok(&["kill-pod", old]);
        }
    });
    phases.run("crashed pod", settle, || {
        cluster.ok(&["kill-pod", "store-be-4"])
    });
    phases.run("restart node-2", settle, || {
        cluster.ok(&["restart-node", "node-2"]);
    });
    phases.run("restart node-1", settle, || {
        cluster.ok(&["restart-node", "node-1"]);
    });
    phases.run("endpoints going", Duration::from_millis(500), || {
        for pod in ["store-be-1", "store-be-5"] {
            cluster.ok(&["set-ready", pod, "false"]);
        }
    });
    phases.run("zero endpoints", Duration::from_millis(1500), || {});
    phases.run("scale back", settle, || {
        for pod in ["store-be-1", "store-be-5"] {
            cluster.ok(&["kill-pod", pod]);
        }
        cluster.ok(&["apply", "-f", &format!("{MANIFESTS}/store-be-back.yaml")]);
    });

    let out = load.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!(
        "load: {} requests, {} connected, {} refused, {} timed out; answered by {}",
        report["requests"],
        report["connected"],
        report["refused"],
        report["timeout"],
        report["answered_by"]
    );
    let load_start = report["started_unix_ms"].as_u64().unwrap();
    for (name, ..) in &phases.marks {
        let (start, end) = phases.window(name, load_start);
        let failed = failures_in(&report, (start, end));
        let refused = failed.iter().filter(|f| f["result"] == "refused").count();
        eprintln!(
            "{name} ({start}..{end} ms): {} failed requests ({refused} refused, {} timed out)",
            failed.len(),
            failed.len() - refused
        );
    }
    eprintln!("held connections: {}", report["held"]);

    assert!(
        failures_in(&report, phases.window("rolling update", load_start)).is_empty(),
        "a rolling update with readiness and drain fails no request"
    );
    let (zero_start, zero_end) = phases.window("zero endpoints", load_start);
    let zero: Vec<&Value> = report["failures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| (zero_start..zero_end).contains(&f["at_ms"].as_u64().unwrap()))
        .collect();
    assert!(
        zero.len() >= 10,
        "requests under zero endpoints fail: {zero:?}"
    );
    assert!(
        zero.iter()
            .all(|f| f["result"] == "refused" && f["took_ms"].as_u64().unwrap() < 200),
        "with no endpoints a connection is refused at once: {zero:?}"
    );
    // The service is back: the last second of the run saw no failure.
    let (_, back_end) = phases.window("scale back", load_start);
    assert!(
        failures_in(&report, (back_end - 1000, back_end)).is_empty(),
        "scaled back up: serving again"
    );
    let answered = report["answered_by"].as_object().unwrap();
    for pod in ["store-be-6", "store-be-7"] {
        assert!(
            answered.contains_key(pod),
            "{pod} serves after scaling back: {answered:?}"
        );
    }
    // A long-lived connection ends only when its own backend goes away.
    let (killed_be1, _) = phases.window("scale back", load_start);
    for held in report["held"].as_array().unwrap() {
        let backend = held["backend"].as_str().unwrap_or_default();
        let Some(cut) = held["cut_at_ms"].as_u64() else {
            continue;
        };
        let own_end = match backend {
            "store-be-2" | "store-be-3" => phases.window("rolling update", load_start).0,
            "store-be-4" => phases.window("crashed pod", load_start).0,
            "store-be-1" | "store-be-5" => killed_be1,
            _ => u64::MAX,
        };
        assert!(
            cut + SLACK_MS >= own_end,
            "a connection to {backend} was cut at {cut} ms, before its backend went: {held}"
        );
    }
}
