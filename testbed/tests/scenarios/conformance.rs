//! Scenario: a live sample of each row kind of `control/SEMANTICS.md` (kube-proxy's Service
//! semantics) on the seed's store-be Service over three nodes: a pod and the node itself reach
//! the ClusterIP (the node masqueraded), an unserved port or protocol of the ClusterIP is
//! refused at once for both, and an unallocated address of the Service CIDR is dropped (the
//! probe times out). LB IP, NodePort and traffic-policy rows run live in `load_balancer.rs`.
//! Also a pod's UDP datagram larger than the MTU through a ClusterIP (fragments), and an SCTP
//! association's INIT / INIT-ACK through an SCTP ClusterIP.
//! Topology (`trafficDistribution: PreferClose` over two zones) and a second ServiceCIDR run
//! in [`topology_and_a_second_service_cidr`].

use testbed::counters::NodeCounters;

use crate::cluster::{Cluster, DEMO, MANIFESTS};

#[test]
fn cluster_ip_rows_for_a_pod_and_the_node_itself() {
    let cluster = Cluster::up(
        "cf",
        &[
            "--nodes",
            "3",
            "-f",
            &format!("{MANIFESTS}/three-node-store.yaml"),
            "-f",
            &format!("{DEMO}/20-store-be-service.yaml"),
            "-f",
            &format!("{MANIFESTS}/store-be-udp-sctp.yaml"),
        ],
    );
    fragments_and_sctp_rows(&cluster);
    let vip = cluster.cluster_ip("store-be");
    let node_1 = cluster.node_ips()[0].clone();
    let fe = cluster.pod_ip("store-fe");
    for (from, client) in [("store-fe", &fe), ("node:node-1", &node_1)] {
        let served = cluster.probe(from, &format!("{vip}:80"), "tcp", 1);
        assert_eq!(served["result"], "connected", "{from}: {served}");
        let seen = served["client_addr"].as_str().unwrap();
        assert!(
            seen.starts_with(&format!("{client}:")),
            "{from} is seen as {seen} (pods keep their address, the node is masqueraded)"
        );
        for (port, protocol) in [(81, "tcp"), (80, "udp")] {
            let unserved = cluster.probe(from, &format!("{vip}:{port}"), protocol, 1);
            assert_eq!(
                unserved["result"], "refused",
                "{from} -> {vip}:{port}/{protocol}: {unserved}"
            );
        }
        let unallocated = cluster.probe(from, "10.96.250.250:80", "tcp", 1);
        assert_eq!(
            unallocated["result"], "timeout",
            "{from}: unallocated Service address: {unallocated}"
        );
    }
}

/// The "Protocols and fragments" rows: a pod's UDP datagram larger than the MTU (so the pod's
/// kernel fragments it) reaches a backend through the ClusterIP whole, and the answer comes
/// back; an SCTP INIT through the SCTP ClusterIP is DNATed with a valid CRC32c and its INIT-ACK
/// un-DNATed (raw-socket prober and responder: this kernel has no SCTP module).
fn fragments_and_sctp_rows(cluster: &Cluster) {
    let fe = cluster.pod_ip("store-fe");
    let udp_vip = cluster.cluster_ip("store-be-udp");
    let big = cluster.probe_datagram("store-fe", &format!("{udp_vip}:80"), 4000);
    assert_eq!(big["result"], "connected", "4000-byte datagram: {big}");
    assert!(
        big["answered_by"]
            .as_str()
            .unwrap()
            .starts_with("store-be-"),
        "{big}"
    );
    let sctp_vip = cluster.cluster_ip("store-be-sctp");
    let sctp = cluster.probe("store-fe", &format!("{sctp_vip}:80"), "sctp", 1);
    assert_eq!(sctp["result"], "connected", "SCTP INIT -> INIT-ACK: {sctp}");
    assert!(
        sctp["answered_by"]
            .as_str()
            .unwrap()
            .starts_with("store-be-"),
        "{sctp}"
    );
    let seen = sctp["client_addr"].as_str().unwrap();
    assert!(
        seen.starts_with(&format!("{fe}:")),
        "the pod keeps its address: {seen}"
    );
    let unserved = cluster.probe("store-fe", &format!("{sctp_vip}:81"), "sctp", 1);
    assert_eq!(
        unserved["result"], "timeout",
        "an unserved SCTP port is refused with ICMP (the raw prober sees no INIT-ACK): {unserved}"
    );
}

/// node-1 in zone-a, node-2 and node-3 in zone-b (Node labels), a PreferClose Service over the
/// three store-be pods, and a second ServiceCIDR with a Service pinned in it. Live rows:
/// store-fe (node-1) always reaches store-be-1, its zone's only endpoint, while a pod of
/// zone-b (store-db, node-2) never does; the Service of the second range answers; an
/// unallocated address of the second range is dropped and counted as `service_unallocated`.
#[test]
fn topology_and_a_second_service_cidr() {
    let cluster = Cluster::up(
        "cz",
        &[
            "--nodes",
            "3",
            "-f",
            &format!("{MANIFESTS}/three-node-store.yaml"),
        ],
    );
    // One file per document: a JSON manifest is one object per file.
    let mut files = Vec::new();
    for (node, zone) in [
        ("node-1", "zone-a"),
        ("node-2", "zone-b"),
        ("node-3", "zone-b"),
    ] {
        let mut object = cluster.get("node", node);
        object["metadata"]["labels"]["topology.kubernetes.io/zone"] = zone.into();
        let file = std::env::temp_dir().join(format!("{}-{node}.json", cluster.prefix));
        std::fs::write(&file, serde_json::to_string(&object).unwrap()).unwrap();
        files.push(file);
    }
    let extra = std::env::temp_dir().join(format!("{}-extra.yaml", cluster.prefix));
    std::fs::write(&extra, CLOSE_AND_EXTRA).unwrap();
    files.push(extra);
    let mut args = vec!["apply".to_owned()];
    for file in &files {
        args.extend(["-f".to_owned(), file.display().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let applied = cluster.testbed(&args);
    for file in &files {
        std::fs::remove_file(file).unwrap();
    }
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let vip = cluster.cluster_ip("store-be-close");
    for (from, home, others) in [
        (
            "store-fe",
            &["store-be-1"][..],
            &["store-be-2", "store-be-3"][..],
        ),
        (
            "store-db",
            &["store-be-2", "store-be-3"][..],
            &["store-be-1"][..],
        ),
    ] {
        let mut seen = Vec::new();
        for _ in 0..6 {
            let answer = cluster.probe(from, &format!("{vip}:80"), "tcp", 1);
            assert_eq!(answer["result"], "connected", "{from}: {answer}");
            seen.push(
                answer["answered_by"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
        assert!(
            seen.iter().all(|pod| home.contains(&pod.as_str())),
            "{from} left its zone: {seen:?}"
        );
        assert!(
            !seen.iter().any(|pod| others.contains(&pod.as_str())),
            "{from}: {seen:?}"
        );
    }
    assert_eq!(cluster.cluster_ip("store-be-extra"), EXTRA_VIP);
    let answer = cluster.probe("store-fe", &format!("{EXTRA_VIP}:80"), "tcp", 1);
    assert_eq!(answer["result"], "connected", "second range: {answer}");
    let socket = node_admin_socket(&cluster, "node-1");
    let before = NodeCounters::read(&socket).unwrap();
    let unallocated = cluster.probe("store-fe", &format!("{EXTRA_UNALLOCATED}:80"), "tcp", 1);
    assert_eq!(unallocated["result"], "timeout", "{unallocated}");
    let rise = NodeCounters::read(&socket).unwrap().since(&before);
    assert!(
        rise.dropped("service_unallocated") >= 1,
        "the SYN to {EXTRA_UNALLOCATED} is counted as service_unallocated"
    );
}

const EXTRA_VIP: &str = "10.112.0.10";
const EXTRA_UNALLOCATED: &str = "10.112.0.99";

const CLOSE_AND_EXTRA: &str = "apiVersion: v1
kind: Service
metadata:
  name: store-be-close
spec:
  trafficDistribution: PreferClose
  selector: {app: store, role: be}
  ports:
  - name: http
    port: 80
---
apiVersion: networking.k8s.io/v1
kind: ServiceCIDR
metadata:
  name: extra
spec:
  cidrs: [10.112.0.0/24]
---
apiVersion: v1
kind: Service
metadata:
  name: store-be-extra
spec:
  clusterIP: 10.112.0.10
  selector: {app: store, role: be}
  ports:
  - name: http
    port: 80
";

fn node_admin_socket(cluster: &Cluster, node: &str) -> std::path::PathBuf {
    let status = cluster.status();
    let nodes = status["nodes"].as_array().unwrap();
    let found = nodes.iter().find(|n| n["name"] == node).unwrap();
    std::path::PathBuf::from(found["admin_socket"].as_str().unwrap())
}
