//! Scenario 5: NetworkPolicy on the seed's three-tier store app. Without policy every tier
//! talks to every other; with the seed's policies and DefaultDeny: be reaches db on 6379, fe
//! reaches be (pod IP and Service), fe never reaches db, fe never reaches fe, nothing else
//! flows; relabelling a pod takes effect within a second, both ways.

use std::time::{Duration, Instant};

use crate::cluster::{Cluster, DEMO, MANIFESTS};

/// The longest a label change may take to show in the dataplane.
const RELABEL_WITHIN: Duration = Duration::from_secs(1);

fn result(cluster: &Cluster, from: &str, target: &str, timeout: &str) -> String {
    let out = cluster.testbed(&["probe", from, target, "--timeout", timeout, "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    report["result"].as_str().unwrap().to_owned()
}

/// Probes until the result is `wanted`; returns how long after `since` the first probe that
/// saw it was started.
fn flips(cluster: &Cluster, from: &str, target: &str, wanted: &str, since: Instant) -> Duration {
    loop {
        let started = since.elapsed();
        if result(cluster, from, target, "300ms") == wanted {
            return started;
        }
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "{from} -> {target} never {wanted}"
        );
    }
}

#[test]
fn the_seeds_policies_isolate_the_three_tiers_and_follow_labels() {
    let cluster = Cluster::up(
        "np",
        &[
            "-f",
            &format!("{DEMO}/00-nodes.yaml"),
            "-f",
            &format!("{DEMO}/10-store-app.yaml"),
            "-f",
            &format!("{DEMO}/20-store-be-service.yaml"),
            "-f",
            &format!("{MANIFESTS}/store-two-fe.yaml"),
        ],
    );
    let ip = |pod: &str| cluster.pod_ip(pod);
    let db = format!("{}:6379", ip("store-db"));
    let be1 = format!("{}:80", ip("store-be-1"));
    let fe = format!("{}:80", ip("store-fe"));
    let fe2 = format!("{}:80", ip("store-fe-2"));
    let vip = format!("{}:80", cluster.cluster_ip("store-be"));

    // No policy: everything talks.
    for (from, to) in [
        ("store-fe", &db),
        ("store-be-1", &db),
        ("store-fe", &fe2),
        ("store-be-1", &fe),
    ] {
        assert_eq!(
            result(&cluster, from, to, "2s"),
            "connected",
            "{from} -> {to}"
        );
    }

    cluster.ok(&["apply", "-f", &format!("{DEMO}/30-store-policy.yaml")]);
    let applied = Instant::now();
    let took = flips(&cluster, "store-fe", &db, "timeout", applied);
    eprintln!("policies in force for the probe started {took:?} after apply");
    let allowed = [
        ("store-be-1", &db),
        ("store-be-2", &db),
        ("store-be-3", &db),
        ("store-fe", &be1),
        ("store-fe", &vip),
        ("store-fe-2", &vip),
    ];
    for (from, to) in allowed {
        assert_eq!(
            result(&cluster, from, to, "2s"),
            "connected",
            "{from} -> {to} allowed"
        );
    }
    let denied = [
        ("store-fe", &db),
        ("store-fe-2", &db),
        ("store-fe", &fe2),
        ("store-fe-2", &fe),
        ("store-be-1", &fe),
        ("store-db", &be1),
    ];
    for (from, to) in denied {
        assert_eq!(
            result(&cluster, from, to, "1s"),
            "timeout",
            "{from} -> {to} denied"
        );
    }

    // Relabel store-be-1 as fe: it loses db and gains be; and back.
    cluster.ok(&["label", "store-be-1", "role=fe"]);
    let off = flips(&cluster, "store-be-1", &db, "timeout", Instant::now());
    cluster.ok(&["label", "store-be-1", "role=be"]);
    let on = flips(&cluster, "store-be-1", &db, "connected", Instant::now());
    eprintln!(
        "relabel took effect: denied by the probe (300 ms timeout) started {off:?} after the \
         label change, allowed again by the one started {on:?} after"
    );
    assert!(
        off < RELABEL_WITHIN && on < RELABEL_WITHIN,
        "{off:?} {on:?}"
    );
}
