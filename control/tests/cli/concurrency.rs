//! Several processes sharing one state directory (one per simulated node) never hand out the
//! same ClusterIP, NodePort or pod IP: every transaction runs under the directory's flock.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::Stdio;

use crate::harness::{Cluster, node, pod, str_of};

const PROCESSES: usize = 12;

#[test]
fn concurrent_applies_never_allocate_the_same_address() {
    let cluster = Cluster::new();
    cluster.apply(&node("node-a", "192.168.50.11"));
    let start_generation = cluster.generation();
    let children: Vec<_> = (0..PROCESSES)
        .map(|i| {
            let manifest = format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: svc-{i}\nspec:\n  type: NodePort\n  ports:\n  - port: 80\n---\n{}",
                pod(&format!("pod-{i}"), "app=x", Some("node-a"), None, &[])
            );
            let mut child = cluster
                .command(&["apply", "-o", "name", "-f", "-"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(manifest.as_bytes()).unwrap();
            child
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let services = cluster.list("svc");
    assert_eq!(services.len(), PROCESSES);
    let cluster_ips: BTreeSet<&str> = services
        .iter()
        .map(|s| str_of(s, "/spec/clusterIP"))
        .collect();
    let node_ports: BTreeSet<i64> = services
        .iter()
        .map(|s| s["spec"]["ports"][0]["nodePort"].as_i64().unwrap())
        .collect();
    assert_eq!(cluster_ips.len(), PROCESSES, "{cluster_ips:?}");
    assert_eq!(node_ports.len(), PROCESSES, "{node_ports:?}");

    let pods = cluster.list("pods");
    let pod_ips: BTreeSet<&str> = pods.iter().map(|p| str_of(p, "/status/podIP")).collect();
    assert_eq!(pod_ips.len(), PROCESSES, "{pod_ips:?}");

    // One transaction per process, each bumping the generation once.
    assert_eq!(cluster.generation(), start_generation + PROCESSES as u64);
    let versions: BTreeSet<&str> = services
        .iter()
        .map(|s| str_of(s, "/metadata/resourceVersion"))
        .collect();
    assert_eq!(
        versions.len(),
        PROCESSES,
        "each process committed its own transaction"
    );
}
