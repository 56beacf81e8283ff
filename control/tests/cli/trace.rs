//! `ferroplane trace` through the real binary, on the seed's store app spread over two nodes.

use serde_json::Value;

use crate::harness::{Cluster, node, pod, seed, seed_path, str_of};

/// The seed's pods (pods-store.yaml) bound alternately to node-a and node-b, their slide IPs
/// dropped (they lie outside the nodes' podCIDRs) so each gets one from its node; plus the
/// `role: db` pod the seed's policy protects, which the slides do not draw.
fn spread_seed_pods() -> String {
    let mut out = String::new();
    for (i, document) in seed("pods-store.yaml").split("---\n").enumerate() {
        let node = if i % 2 == 0 { "node-a" } else { "node-b" };
        let without_status = document.split("status:\n").next().unwrap();
        out.push_str(&without_status.replacen(
            "spec:\n",
            &format!("spec:\n  nodeName: {node}\n"),
            1,
        ));
        out.push_str("---\n");
    }
    out.push_str(&pod(
        "store-db",
        "app=store,role=db",
        Some("node-b"),
        None,
        &[("redis", 6379)],
    ));
    out
}

fn store_app() -> Cluster {
    let cluster = Cluster::new();
    cluster.apply(
        &[
            node("node-a", "192.168.50.11"),
            node("node-b", "192.168.50.12"),
        ]
        .concat(),
    );
    cluster.apply(&spread_seed_pods());
    for file in ["service-store-be.yaml", "networkpolicy-store.yaml"] {
        let run = cluster.run(&["apply", "-f", &seed_path(file)]);
        assert!(run.success, "{file}: {}", run.stderr);
    }
    cluster
}

fn trace_json(cluster: &Cluster, args: &[&str]) -> Value {
    let mut all = vec!["trace"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    let run = cluster.run(&all);
    assert!(run.success, "trace failed: {}", run.stderr);
    serde_json::from_str(&run.stdout).unwrap()
}

#[test]
fn frontend_to_store_be_is_dnated_to_an_endpoint_and_delivered() {
    let cluster = store_app();
    let service = cluster.get("svc", "default", "store-be").unwrap();
    let vip = str_of(&service, "/spec/clusterIP").to_owned();
    let endpoints = cluster.get("ep", "default", "store-be").unwrap();
    let addresses = endpoints["subsets"][0]["addresses"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(addresses.len(), 3, "store-be-1..3");

    let report = trace_json(
        &cluster,
        &[
            "--from",
            "default/store-fe-1",
            "--dst",
            &format!("{vip}:80"),
        ],
    );
    assert_eq!(report["verdict"], "delivered");
    assert_eq!(report["reason"], Value::Null);
    assert_eq!(report["snat"], Value::Null);
    let dnat_ip = str_of(&report, "/dnat/ip");
    assert_eq!(report["dnat"]["port"], 80);
    let backend = addresses
        .iter()
        .find(|a| a["ip"] == dnat_ip)
        .unwrap_or_else(|| panic!("dnat {dnat_ip} is not a store-be endpoint: {addresses:?}"));
    let backend_node = str_of(backend, "/nodeName");
    let backend_pod = str_of(backend, "/targetRef/name");
    assert_eq!(report["delivered_to"]["kind"], "pod");
    assert_eq!(
        report["delivered_to"]["name"],
        format!("default/{backend_pod}")
    );
    let expected_nodes = if backend_node == "node-a" {
        serde_json::json!(["node-a"])
    } else {
        serde_json::json!(["node-a", "node-b"])
    };
    assert_eq!(report["nodes"], expected_nodes);
    assert_eq!(
        report["stages"].as_array().unwrap().len(),
        expected_nodes.as_array().unwrap().len()
    );

    let human = cluster.run(&[
        "trace",
        "--from",
        "default/store-fe-1",
        "--dst",
        &format!("{vip}:80"),
    ]);
    assert!(human.success, "{}", human.stderr);
    assert!(human.stdout.contains("dnat to backend"), "{}", human.stdout);
    assert!(
        human.stdout.contains("=> delivered to pod"),
        "{}",
        human.stdout
    );
}

#[test]
fn a_port_the_service_does_not_have_is_rejected_like_kube_proxy() {
    let cluster = store_app();
    let service = cluster.get("svc", "default", "store-be").unwrap();
    let vip = str_of(&service, "/spec/clusterIP").to_owned();
    let report = trace_json(
        &cluster,
        &[
            "--from",
            "default/store-fe-1",
            "--dst",
            &format!("{vip}:8080"),
        ],
    );
    assert_eq!(report["verdict"], "reject");
    assert_eq!(report["reason"], "no service port");
    assert_eq!(report["delivered_to"], Value::Null);
    assert_eq!(report["nodes"], serde_json::json!(["node-a"]));
}

#[test]
fn frontend_to_database_is_denied_by_the_seed_policy() {
    let cluster = store_app();
    let db = cluster.get("po", "default", "store-db").unwrap();
    let db_ip = str_of(&db, "/status/podIP").to_owned();
    let report = trace_json(
        &cluster,
        &[
            "--from",
            "default/store-fe-1",
            "--dst",
            &format!("{db_ip}:6379"),
        ],
    );
    assert_eq!(report["verdict"], "drop");
    assert_eq!(report["reason"], "policy_ingress_denied");
    assert_eq!(
        report["policies"],
        serde_json::json!(["default/store-net-policy"])
    );
    assert_eq!(report["nodes"], serde_json::json!(["node-a", "node-b"]));

    // A backend of the store may reach it: the same policy allows.
    let be = cluster.get("po", "default", "store-be-2").unwrap();
    let be_ip = str_of(&be, "/status/podIP").to_owned();
    let report = trace_json(
        &cluster,
        &["--src", &be_ip, "--dst", &format!("{db_ip}:6379")],
    );
    assert_eq!(report["verdict"], "delivered");
    assert_eq!(
        report["policies"],
        serde_json::json!(["default/store-net-policy"])
    );
}

#[test]
fn bad_arguments_are_reported() {
    let cluster = store_app();
    let run = cluster.run(&[
        "trace",
        "--from",
        "default/store-fe-1",
        "--dst",
        "10.96.0.1",
    ]);
    assert!(!run.success);
    assert!(run.stderr.contains("port is required"), "{}", run.stderr);
    let run = cluster.run(&["trace", "--src", "203.0.113.9", "--dst", "10.96.0.1:80"]);
    assert!(!run.success);
    assert!(run.stderr.contains("--node"), "{}", run.stderr);
    let run = cluster.run(&["trace", "--dst", "10.96.0.1:80"]);
    assert!(!run.success);
}
