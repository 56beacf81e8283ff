//! Scenario 3: a pod reaches the internet host 203.0.113.10 behind the router; the host sees
//! the pod's node IP (masquerade), and the replies come back.

use crate::cluster::Cluster;

#[test]
fn pods_reach_the_internet_as_their_node() {
    let cluster = Cluster::up("in", &[]);
    for (pod, node_ip) in [("store-fe", "192.168.50.2"), ("store-be-2", "192.168.50.3")] {
        for protocol in ["tcp", "udp"] {
            let report = cluster.probe(pod, "203.0.113.10:80", protocol, 1);
            assert_eq!(report["result"], "connected", "{pod} {protocol}: {report}");
            assert_eq!(report["answered_by"], "internet", "{report}");
            let client = report["client_addr"].as_str().unwrap();
            assert!(
                client.starts_with(&format!("{node_ip}:")),
                "{pod} {protocol}: the internet host saw {client}, not node IP {node_ip}"
            );
        }
    }
}
