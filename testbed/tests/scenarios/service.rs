//! Scenario 2: the seed's store-be Service (app=store, role=be, port 80) with one backend on
//! each of three nodes and decoys that must never answer; new connections spread over all
//! three backends, and one TCP connection stays on one backend.

use std::collections::BTreeMap;

use crate::cluster::{Cluster, DEMO, MANIFESTS};

const PROBES: usize = 30;

#[test]
fn store_be_spreads_over_its_three_backends_and_keeps_a_connection_on_one() {
    let cluster = Cluster::up(
        "sv",
        &[
            "--nodes",
            "3",
            "-f",
            &format!("{MANIFESTS}/three-node-store.yaml"),
            "-f",
            &format!("{DEMO}/20-store-be-service.yaml"),
        ],
    );
    let vip = format!("{}:80", cluster.cluster_ip("store-be"));
    let fe = cluster.pod_ip("store-fe");
    // The seed's Service declares one port without a protocol: TCP.
    let mut spread: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..PROBES {
        let report = cluster.probe("store-fe", &vip, "tcp", 1);
        assert_eq!(report["result"], "connected", "{vip}: {report}");
        let client = report["client_addr"].as_str().unwrap();
        assert!(client.starts_with(&format!("{fe}:")), "{client}");
        *spread
            .entry(report["answered_by"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    eprintln!("spread over {PROBES} TCP connections: {spread:?}");
    let answered: Vec<&str> = spread.keys().map(String::as_str).collect();
    assert_eq!(
        answered,
        ["store-be-1", "store-be-2", "store-be-3"],
        "{spread:?}"
    );
    for _ in 0..3 {
        let report = cluster.probe("store-fe", &vip, "tcp", 20);
        let answers: Vec<&str> = report["answers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(answers.len(), 20, "{report}");
        assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    }
}
