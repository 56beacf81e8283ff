//! Traces through small in-memory clusters: the seed's store app over two nodes, plus the
//! paths around it (no endpoints, NodePort from outside, egress, the host).

use std::net::Ipv4Addr;

use dataplane::flow::L4Proto;

use super::*;
use crate::compile::tests::{Cluster, NODE_A, NODE_B, ip, pod};

fn store_app() -> Cluster {
    let mut cluster = Cluster::new();
    cluster
        .apply(
            &[
                pod("default", "store-fe", "app=store,role=fe", NODE_A, &[]),
                pod(
                    "default",
                    "store-be-1",
                    "app=store,role=be",
                    NODE_A,
                    &[("http", 80)],
                ),
                pod(
                    "default",
                    "store-be-2",
                    "app=store,role=be",
                    NODE_B,
                    &[("http", 80)],
                ),
                pod(
                    "default",
                    "store-db",
                    "app=store,role=db",
                    NODE_B,
                    &[("redis", 6379)],
                ),
            ]
            .concat(),
        )
        .apply(include_str!("../../tests/seed/service-store-be.yaml"))
        .apply(include_str!("../../tests/seed/networkpolicy-store.yaml"));
    cluster
}

fn cluster_ip(cluster: &Cluster, name: &str) -> Ipv4Addr {
    let service = cluster.state().service("default", name).unwrap();
    service
        .spec
        .as_ref()
        .unwrap()
        .cluster_ip
        .as_ref()
        .unwrap()
        .parse()
        .unwrap()
}

fn from_pod(name: &str, dst: Ipv4Addr, dport: u16, proto: L4Proto) -> TraceRequest {
    TraceRequest {
        source: Source::Pod {
            namespace: "default".to_owned(),
            name: name.to_owned(),
        },
        dst,
        dport,
        proto,
        node: None,
    }
}

#[test]
fn pod_to_service_is_translated_to_a_backend_and_delivered() {
    let cluster = store_app();
    let vip = cluster_ip(&cluster, "store-be");
    let report = trace(
        cluster.state(),
        &from_pod("store-fe", vip, 80, L4Proto::Tcp),
    )
    .unwrap();
    assert_eq!(report.verdict, Outcome::Delivered);
    assert_eq!(report.reason, None);
    let dnat = report.dnat.unwrap();
    let backends = [
        (
            "default/store-be-1",
            cluster.ip("default", "store-be-1"),
            NODE_A,
        ),
        (
            "default/store-be-2",
            cluster.ip("default", "store-be-2"),
            NODE_B,
        ),
    ];
    let (pod_name, _, backend_node) = backends
        .iter()
        .find(|(_, ip, _)| *ip == dnat.ip)
        .unwrap_or_else(|| panic!("dnat {dnat:?} is no store-be endpoint"));
    assert_eq!(dnat.port, 80);
    assert_eq!(
        report.delivered_to,
        Some(Delivery {
            kind: DeliveryKind::Pod,
            name: (*pod_name).to_owned()
        })
    );
    let expected_nodes: Vec<&str> = if *backend_node == NODE_A {
        vec![NODE_A]
    } else {
        vec![NODE_A, NODE_B]
    };
    assert_eq!(report.nodes, expected_nodes);
    assert_eq!(report.snat, None, "pod to pod is never masqueraded");
    assert_eq!(report.stages.len(), report.nodes.len());
    assert!(report.stages[0].events[0].contains("pod default/store-fe"));
}

#[test]
fn a_port_that_is_no_service_port_of_the_vip_is_rejected() {
    let cluster = store_app();
    let vip = cluster_ip(&cluster, "store-be");
    let report = trace(
        cluster.state(),
        &from_pod("store-fe", vip, 81, L4Proto::Tcp),
    )
    .unwrap();
    assert_eq!(report.verdict, Outcome::Reject);
    assert_eq!(report.reason.as_deref(), Some("no service port"));
    assert_eq!(report.nodes, [NODE_A]);
}

#[test]
fn the_seed_policy_drops_frontend_to_database_on_the_database_node() {
    let cluster = store_app();
    let db = cluster.ip("default", "store-db");
    let report = trace(
        cluster.state(),
        &from_pod("store-fe", db, 6379, L4Proto::Tcp),
    )
    .unwrap();
    assert_eq!(report.verdict, Outcome::Drop);
    assert_eq!(report.reason.as_deref(), Some("policy_ingress_denied"));
    assert_eq!(report.nodes, [NODE_A, NODE_B]);
    assert_eq!(report.policies, ["default/store-net-policy"]);
    let allowed = trace(
        cluster.state(),
        &from_pod("store-be-1", db, 6379, L4Proto::Tcp),
    )
    .unwrap();
    assert_eq!(allowed.verdict, Outcome::Delivered);
    assert_eq!(allowed.policies, ["default/store-net-policy"]);
}

#[test]
fn a_service_without_endpoints_rejects() {
    let mut cluster = store_app();
    cluster.apply(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: empty\nspec:\n  selector:\n    app: nothing\n  ports:\n  - name: tcp\n    port: 80\n  - name: udp\n    port: 80\n    protocol: UDP\n",
    );
    let vip = cluster_ip(&cluster, "empty");
    for proto in [L4Proto::Tcp, L4Proto::Udp] {
        let report = trace(cluster.state(), &from_pod("store-fe", vip, 80, proto)).unwrap();
        assert_eq!(report.verdict, Outcome::Reject, "{proto:?}");
        assert_eq!(report.reason.as_deref(), Some("no endpoints"));
        assert_eq!(report.delivered_to, None);
    }
}

#[test]
fn an_external_client_reaches_a_node_port_with_snat_and_crosses_to_the_backend() {
    let mut cluster = Cluster::new();
    cluster
        .apply(&pod("default", "web", "app=web", NODE_B, &[]))
        .apply(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  type: NodePort\n  selector:\n    app: web\n  ports:\n  - port: 80\n    nodePort: 30080\n",
        );
    let request = TraceRequest {
        source: Source::Address {
            ip: ip("203.0.113.9"),
            port: Some(5555),
        },
        dst: ip("192.168.50.11"),
        dport: 30080,
        proto: L4Proto::Tcp,
        node: Some(NODE_A.to_owned()),
    };
    let report = trace(cluster.state(), &request).unwrap();
    assert_eq!(report.verdict, Outcome::Delivered);
    assert_eq!(report.nodes, [NODE_A, NODE_B]);
    let web = cluster.ip("default", "web");
    assert_eq!(report.dnat, Some(Endpoint { ip: web, port: 80 }));
    assert_eq!(report.snat.map(|s| s.ip), Some(ip("192.168.50.11")));
    assert!(report.stages[0].events[0].contains("uplink"));
}

#[test]
fn pod_to_the_internet_is_masqueraded_and_leaves() {
    let cluster = store_app();
    let report = trace(
        cluster.state(),
        &from_pod("store-fe", ip("8.8.8.8"), 53, L4Proto::Udp),
    )
    .unwrap();
    assert_eq!(report.verdict, Outcome::Egress);
    assert_eq!(report.snat.map(|s| s.ip), Some(ip("192.168.50.11")));
    assert_eq!(report.nodes, [NODE_A]);
}

#[test]
fn the_node_itself_reaches_a_service_through_its_host_port() {
    let cluster = store_app();
    let vip = cluster_ip(&cluster, "store-be");
    let request = TraceRequest {
        source: Source::Address {
            ip: ip("192.168.50.12"),
            port: None,
        },
        dst: vip,
        dport: 80,
        proto: L4Proto::Tcp,
        node: None,
    };
    let report = trace(cluster.state(), &request).unwrap();
    assert_eq!(report.verdict, Outcome::Delivered);
    assert_eq!(report.nodes[0], NODE_B);
    assert!(report.stages[0].events[0].contains("(host)"));
}

#[test]
fn unknown_sources_are_errors() {
    let cluster = store_app();
    let missing = trace(
        cluster.state(),
        &from_pod("nobody", ip("10.96.0.1"), 80, L4Proto::Tcp),
    );
    assert!(missing.unwrap_err().contains("not found"));
    let outside = TraceRequest {
        source: Source::Address {
            ip: ip("203.0.113.9"),
            port: None,
        },
        dst: ip("10.96.0.1"),
        dport: 80,
        proto: L4Proto::Tcp,
        node: None,
    };
    assert!(
        trace(cluster.state(), &outside)
            .unwrap_err()
            .contains("--node")
    );
}
