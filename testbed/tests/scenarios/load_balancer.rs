//! Scenario 4: LoadBalancer and NodePort from the internet host, through the cloud load
//! balancer. externalTrafficPolicy Cluster: every backend serves, the client IP is hidden.
//! Local (the seed's OnlyLocal annotation): only the node with a local pod serves, the client
//! IP is kept, and the health check node port answers 503 on the other node, which the cloud
//! LB then skips; readiness changes move the LB within seconds.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use testbed::cloud_lb::health::answers_200;
use testbed::netns;

use crate::cluster::{Cluster, DEMO, MANIFESTS};

const INTERNET_HOST: &str = "203.0.113.10";

fn ingress_ip(cluster: &Cluster, service: &str) -> String {
    let svc = cluster.get("svc", service);
    let ip = svc["status"]["loadBalancer"]["ingress"][0]["ip"]
        .as_str()
        .unwrap_or_else(|| panic!("{service} has no ingress IP: {svc}"))
        .to_owned();
    assert!(ip.starts_with("198.51.100."), "{ip}");
    ip
}

fn port_of(cluster: &Cluster, service: &str, field: &str) -> u16 {
    let svc = cluster.get("svc", service);
    let port = if field == "healthCheckNodePort" {
        &svc["spec"][field]
    } else {
        &svc["spec"]["ports"][0][field]
    };
    u16::try_from(port.as_u64().unwrap()).unwrap()
}

/// Whether the health check node port of node `node_ip` answers 200, asked from the LB.
fn health_200(cluster: &Cluster, node_ip: &str, port: u16) -> bool {
    let target: SocketAddr = format!("{node_ip}:{port}").parse().unwrap();
    netns::within(&cluster.namespace("cloudlb"), || {
        Ok(answers_200(target, "/", Duration::from_secs(1)))
    })
    .unwrap()
}

/// Probes from the internet host until `done` holds for a report, for at most 5 s; returns
/// how long it took.
fn until(cluster: &Cluster, target: &str, done: impl Fn(&serde_json::Value) -> bool) -> Duration {
    let started = Instant::now();
    loop {
        let report = cluster.probe("internet", target, "tcp", 1);
        if done(&report) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{target}: last {report}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn load_balancer_and_node_port_honour_external_traffic_policy() {
    let cluster = Cluster::up(
        "lb",
        &[
            "-f",
            &format!("{DEMO}/00-nodes.yaml"),
            "-f",
            &format!("{DEMO}/10-store-app.yaml"),
            "-f",
            &format!("{MANIFESTS}/load-balancer.yaml"),
        ],
    );
    let nodes = cluster.node_ips();
    let (node1, node2) = (&nodes[0], &nodes[1]);

    // Cluster policy, through the cloud LB: all three backends, the client hidden behind a node.
    let lb = format!("{}:80", ingress_ip(&cluster, "store-lb"));
    // The cloud LB programs its routes once its health checks pass, like a cloud's does.
    let programmed = until(&cluster, &lb, |r| r["result"] == "connected");
    eprintln!("the cloud LB sent the first connection after {programmed:?}");
    let mut answered = BTreeSet::new();
    for _ in 0..24 {
        let report = cluster.probe("internet", &lb, "tcp", 1);
        assert_eq!(report["result"], "connected", "{lb}: {report}");
        let client = report["client_addr"].as_str().unwrap();
        assert!(
            nodes.iter().any(|n| client.starts_with(&format!("{n}:"))),
            "client IP must be hidden under Cluster policy: {client}"
        );
        answered.insert(report["answered_by"].as_str().unwrap().to_owned());
    }
    eprintln!("store-lb answered by {answered:?}");
    assert_eq!(
        answered.iter().map(String::as_str).collect::<Vec<_>>(),
        ["store-be-1", "store-be-2", "store-be-3"]
    );
    // NodePort, Cluster policy: every node forwards, wherever the backend is.
    let node_port = port_of(&cluster, "store-lb", "nodePort");
    for node in [node1, node2] {
        let report = cluster.probe("internet", &format!("{node}:{node_port}"), "tcp", 1);
        assert_eq!(
            report["result"], "connected",
            "{node}:{node_port}: {report}"
        );
        assert!(
            report["client_addr"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{node}:"))
        );
    }

    // Local policy: store-fe runs on node-1 only.
    let local = format!("{}:80", ingress_ip(&cluster, "store-fe-lb"));
    let health = port_of(&cluster, "store-fe-lb", "healthCheckNodePort");
    assert!(
        health_200(&cluster, node1, health),
        "node-1 has a local endpoint"
    );
    assert!(!health_200(&cluster, node2, health), "node-2 has none: 503");
    for _ in 0..8 {
        let report = cluster.probe("internet", &local, "tcp", 1);
        assert_eq!(report["result"], "connected", "{local}: {report}");
        assert_eq!(report["answered_by"], "store-fe");
        let client = report["client_addr"].as_str().unwrap();
        assert!(
            client.starts_with(&format!("{INTERNET_HOST}:")),
            "client IP kept: {client}"
        );
    }
    let local_port = port_of(&cluster, "store-fe-lb", "nodePort");
    let on_node1 = cluster.probe("internet", &format!("{node1}:{local_port}"), "tcp", 1);
    assert_eq!(on_node1["result"], "connected", "{on_node1}");
    assert!(
        on_node1["client_addr"]
            .as_str()
            .unwrap()
            .starts_with(INTERNET_HOST)
    );
    let on_node2 = cluster.probe("internet", &format!("{node2}:{local_port}"), "tcp", 1);
    assert_ne!(
        on_node2["result"], "connected",
        "no local endpoint on node-2: {on_node2}"
    );

    // In-cluster clients of the LB IP (control/SEMANTICS.md, "NodePort, LoadBalancer IP,
    // externalIP"): short-circuited to the endpoints whatever the policy, so a pod and the
    // node on node-2, which has no local store-fe, still reach it; the pod keeps its address,
    // the node is masqueraded.
    let db = cluster.pod_ip("store-db");
    for (from, client) in [("store-db", &db), ("node:node-2", node2)] {
        let report = cluster.probe(from, &local, "tcp", 1);
        assert_eq!(report["result"], "connected", "{from} -> {local}: {report}");
        assert_eq!(report["answered_by"], "store-fe", "{from}: {report}");
        let seen = report["client_addr"].as_str().unwrap_or_default();
        assert!(
            seen.starts_with(&format!("{client}:")),
            "{from} -> LB IP (eTP Local) arrives from {client}: {seen}"
        );
    }

    // The pod goes unready: node-1's health check fails, the LB stops sending; and back.
    cluster.ok(&["set-ready", "store-fe", "false"]);
    let gone = until(&cluster, &local, |r| r["result"] != "connected");
    assert!(!health_200(&cluster, node1, health));
    cluster.ok(&["set-ready", "store-fe", "true"]);
    let back = until(&cluster, &local, |r| r["result"] == "connected");
    eprintln!("LB followed readiness: off after {gone:?}, back after {back:?}");
}
