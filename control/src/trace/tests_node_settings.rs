//! `trace --node-config`: a node is traced with its own node.yaml, resolved as `run` does.

use std::path::PathBuf;

use dataplane::flow::L4Proto;

use super::*;
use crate::compile::tests::{Cluster, NODE_A, ip, pod};

/// node-a with a second address (ExternalIP 198.18.5.11) and a NodePort Service on it.
fn cluster() -> Cluster {
    let mut cluster = Cluster::new();
    cluster.apply(&pod("default", "web", "app=web", NODE_A, &[]));
    cluster.apply(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: node-a\nstatus:\n  addresses:\n  - type: InternalIP\n    address: 192.168.50.11\n  - type: ExternalIP\n    address: 198.18.5.11\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  type: NodePort\n  selector:\n    app: web\n  ports:\n  - port: 80\n    nodePort: 30080\n",
    );
    cluster
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn to(dst: &str) -> TraceRequest {
    TraceRequest {
        source: Source::Address {
            ip: ip("203.0.113.9"),
            port: None,
        },
        dst: ip(dst),
        dport: 30080,
        proto: L4Proto::Tcp,
        node: Some(NODE_A.to_owned()),
    }
}

/// With the defaults NodePorts answer on the primary InternalIP only; node-a's own
/// `nodePortAddresses: [198.18.0.0/16]` moves them to its ExternalIP, and trace follows.
#[test]
fn a_nodes_own_node_port_addresses_decide_where_trace_finds_node_ports() {
    let cluster = cluster();
    let default = trace(cluster.state(), &to("198.18.5.11")).unwrap();
    assert_eq!(default.dnat, None, "defaults: {default:?}");
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        &dir,
        "node-a.yaml",
        "nodeName: node-a\nports:\n  uplink:\n    interface: eth0\nnodePortAddresses: [198.18.0.0/16]\n",
    );
    let locals = node_locals(&[config], None).unwrap();
    let secondary = trace_with(
        cluster.state(),
        &to("198.18.5.11"),
        &locals,
        &Default::default(),
    )
    .unwrap();
    assert_eq!(secondary.verdict, Outcome::Delivered, "{secondary:?}");
    assert_eq!(
        secondary.dnat.map(|e| e.ip),
        Some(cluster.ip("default", "web"))
    );
    let primary = trace_with(
        cluster.state(),
        &to("192.168.50.11"),
        &locals,
        &Default::default(),
    )
    .unwrap();
    assert_eq!(primary.dnat, None, "not listed any more: {primary:?}");
}

/// A kube-proxy configuration file applies to the node config as `run` applies it.
#[test]
fn a_kube_proxy_configuration_fills_what_node_yaml_leaves_unset() {
    let cluster = cluster();
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        &dir,
        "node-a.yaml",
        "nodeName: node-a\nports:\n  uplink:\n    interface: eth0\n",
    );
    let kube_proxy = write(
        &dir,
        "kube-proxy.yaml",
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nnodePortAddresses: [198.18.5.11/32]\n",
    );
    let locals = node_locals(&[config], Some(&kube_proxy)).unwrap();
    let report = trace_with(
        cluster.state(),
        &to("198.18.5.11"),
        &locals,
        &Default::default(),
    )
    .unwrap();
    assert_eq!(report.verdict, Outcome::Delivered, "{report:?}");
}

/// A bad node config is an error naming the file and the field, never the defaults.
#[test]
fn a_bad_node_config_is_an_error_naming_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        &dir,
        "node-a.yaml",
        "nodeName: node-a\nports:\n  uplink:\n    interface: eth0\nnodePortAddresses: [everywhere]\n",
    );
    let error = node_locals(&[config], None).unwrap_err();
    assert!(
        error.contains("node-a.yaml") && error.contains("nodePortAddresses"),
        "{error}"
    );
    let twice = write(
        &dir,
        "again.yaml",
        "nodeName: node-a\nports:\n  uplink:\n    interface: eth0\n",
    );
    let error = node_locals(&[twice.clone(), twice], None).unwrap_err();
    assert!(error.contains("already has"), "{error}");
}
