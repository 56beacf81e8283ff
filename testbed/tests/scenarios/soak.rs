//! Scenario 9: a short `testbed soak` (150 s, one whole cycle of changes: endpoint churn, a
//! crashed and re-created backend, a policy on and off, each node's ferroplane restarted and
//! SIGKILLed) must pass its own verdict: no long-lived connection lost, failures only inside
//! the windows of disruptive changes, the intruder denied while the policy is in force, no
//! growth past the bounds, a flow table never full. The report must show every kind of load
//! and change, and the testbed must be gone afterwards.

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;

use crate::cluster::{TESTBED, ferroplane, io_backend, turn};

#[test]
fn a_short_soak_loses_no_connection_and_fails_only_inside_its_windows() {
    let out = Command::new("id").arg("-u").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0",
        "the soak builds network namespaces: run it as root"
    );
    let _turn = turn();
    let prefix = format!("tso{}", std::process::id());
    let dir = std::env::temp_dir().join(&prefix);
    let report = dir.join("soak.json");
    let out = Command::new(TESTBED)
        .args(["--prefix", &prefix, "soak", "--duration", "150s", "--io"])
        .arg(io_backend())
        .arg("--ferroplane")
        .arg(ferroplane())
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{table}\n{}", String::from_utf8_lossy(&out.stderr));
    let left: Vec<String> = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .lines()
    .filter(|l| l.starts_with(&format!("{prefix}-")))
    .map(str::to_owned)
    .collect();
    assert!(left.is_empty(), "the soak left {left:?}");
    let document: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let csv = std::fs::read_to_string(report.with_extension("csv")).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        out.status.success() && document["verdict"]["pass"] == true,
        "the soak failed its verdict: {}",
        document["verdict"]
    );
    assert!(table.contains("verdict: PASS"), "{table}");

    // Every kind of change ran, each node restarted and SIGKILLed.
    let changes: BTreeSet<&str> = document["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["change"].as_str().unwrap())
        .collect();
    for change in [
        "set-ready store-be-3 false",
        "set-ready store-be-3 true",
        "scale up",
        "scale down",
        "kill-pod store-be-3",
        "re-create store-be-3",
        "policy soak-be-from-fe on",
        "policy soak-be-from-fe off",
        "restart-node node-1",
        "restart-node node-1 --crash",
        "restart-node node-2",
        "restart-node node-2 --crash",
    ] {
        assert!(
            changes.contains(change),
            "{change} did not run: {changes:?}"
        );
    }
    // Every kind of load ran in every minute, and the long-lived connections lived through
    // all of it.
    let minutes = document["minutes"].as_array().unwrap();
    assert_eq!(minutes.len(), 3);
    for minute in minutes {
        for traffic in ["new-tcp", "udp", "dns", "held", "intruder"] {
            assert!(
                minute["requests"][traffic].as_u64().unwrap_or(0) > 0,
                "no {traffic} requests in minute {}",
                minute["minute"]
            );
        }
    }
    let held = document["held"].as_array().unwrap();
    assert_eq!(held.len(), 6, "three long-lived connections per client");
    assert!(
        held.iter()
            .all(|h| h["lost_at_ms"].is_null() && h["requests"].as_u64().unwrap() > 100),
        "{held:?}"
    );
    // Both node processes were sampled, through their restarts (3 pids each).
    for node in ["node-1", "node-2"] {
        let pids: BTreeSet<&str> = csv
            .lines()
            .filter(|l| l.split(',').nth(1) == Some(node))
            .filter(|l| l.split(',').all(|cell| !cell.is_empty()))
            .filter_map(|l| l.split(',').nth(2))
            .collect();
        assert!(pids.len() >= 3, "{node}: one process per restart: {pids:?}");
    }
}
