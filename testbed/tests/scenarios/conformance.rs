//! Scenario: a live sample of each row kind of `control/SEMANTICS.md` (kube-proxy's Service
//! semantics) on the seed's store-be Service over three nodes: a pod and the node itself reach
//! the ClusterIP (the node masqueraded), an unserved port or protocol of the ClusterIP is
//! refused at once for both, and an unallocated address of the Service CIDR is dropped (the
//! probe times out). LB IP, NodePort and traffic-policy rows run live in `load_balancer.rs`.
//! Also a pod's UDP datagram larger than the MTU through a ClusterIP (fragments), and an SCTP
//! association's INIT / INIT-ACK through an SCTP ClusterIP.

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
