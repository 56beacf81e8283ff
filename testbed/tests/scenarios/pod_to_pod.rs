//! Scenario 1: pod to pod on one node and across nodes, TCP and UDP (on the backend the
//! harness picks, see `cluster::io_backend`);
//! on the underlay the cross-node packets are VXLAN (outer UDP 8472 node to node, inner pod
//! IPs), seen on a capture; in routed mode the underlay router routes each node's podCIDR and
//! the capture shows plain pod-to-pod packets.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::capture::{self, ipv4_addresses, parse_vxlan};
use crate::cluster::Cluster;

const NODE_1: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 2);
const NODE_2: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 3);

fn assert_answer(cluster: &Cluster, from: &str, to: &str, protocol: &str) {
    let from_ip = cluster.pod_ip(from);
    let target = format!("{}:80", cluster.pod_ip(to));
    let report = cluster.probe(from, &target, protocol, 1);
    assert_eq!(
        report["result"], "connected",
        "{from} -> {to} {protocol}: {report}"
    );
    assert_eq!(report["answered_by"], to, "{report}");
    let client = report["client_addr"].as_str().unwrap();
    assert!(
        client.starts_with(&format!("{from_ip}:")),
        "{to} saw {client}, not {from_ip}"
    );
}

#[test]
fn pods_reach_each_other_on_one_node_and_over_vxlan() {
    let cluster = Cluster::up("pp", &[]);
    for protocol in ["tcp", "udp"] {
        assert_answer(&cluster, "store-fe", "store-be-1", protocol);
        assert_answer(&cluster, "store-be-1", "store-fe", protocol);
    }
    let capture = capture::start(&cluster.namespace("underlay"), Duration::from_secs(4));
    for protocol in ["tcp", "udp"] {
        assert_answer(&cluster, "store-fe", "store-be-2", protocol);
        assert_answer(&cluster, "store-be-3", "store-fe", protocol);
    }
    let frames = capture.join().unwrap();
    let vxlan: Vec<_> = frames.iter().filter_map(|f| parse_vxlan(f)).collect();
    let fe: Ipv4Addr = cluster.pod_ip("store-fe").parse().unwrap();
    let be2: Ipv4Addr = cluster.pod_ip("store-be-2").parse().unwrap();
    for (outer, inner) in [((NODE_1, NODE_2), (fe, be2)), ((NODE_2, NODE_1), (be2, fe))] {
        assert!(
            vxlan.iter().any(|f| (f.outer_src, f.outer_dst) == outer
                && f.outer_dst_port == 8472
                && (f.inner_src, f.inner_dst) == inner),
            "no VXLAN {outer:?} carrying {inner:?} among {} frames: {vxlan:?}",
            frames.len()
        );
    }
    // A port nobody listens on is refused, not left hanging.
    let closed = format!("{}:81", cluster.pod_ip("store-be-2"));
    let report = cluster.probe("store-fe", &closed, "tcp", 1);
    assert_eq!(report["result"], "refused", "{report}");
}

#[test]
fn pods_reach_each_other_over_the_routed_underlay() {
    let cluster = Cluster::up("pr", &["--mode", "routed"]);
    for protocol in ["tcp", "udp"] {
        assert_answer(&cluster, "store-fe", "store-be-1", protocol);
    }
    let capture = capture::start(&cluster.namespace("underlay"), Duration::from_secs(3));
    for protocol in ["tcp", "udp"] {
        assert_answer(&cluster, "store-fe", "store-be-2", protocol);
    }
    let frames = capture.join().unwrap();
    let fe: Ipv4Addr = cluster.pod_ip("store-fe").parse().unwrap();
    let be2: Ipv4Addr = cluster.pod_ip("store-be-2").parse().unwrap();
    let plain: Vec<_> = frames.iter().filter_map(|f| ipv4_addresses(f)).collect();
    assert!(
        plain.contains(&(fe, be2)),
        "no plain {fe} -> {be2} in {plain:?}"
    );
    assert!(
        plain.contains(&(be2, fe)),
        "no plain {be2} -> {fe} in {plain:?}"
    );
    assert!(
        frames
            .iter()
            .all(|f| parse_vxlan(f).is_none_or(|v| v.outer_dst_port != 8472)),
        "VXLAN on a routed underlay"
    );
}
