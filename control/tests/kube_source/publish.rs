//! Node publication (`--source kubernetes`): the node process writes its VTEP on its own Node
//! in flannel's annotation format with one merge PATCH, and another node, listing the Nodes
//! afterwards, routes to it from those annotations; a peer's malformed annotation is a problem
//! naming that peer and the annotation, and costs no other peer its route.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use control::compile::{NodeLocal, PortAssignments};
use control::kube_source::KubeSourceConfig;
use control::net::MacAddr;
use control::node::config::SourceSettings;
use control::node::source::{Source, SourceInputs, Starter};
use control::sync::SyncClock;
use serde_json::{Value, json};

use super::server::{NODES, RecordedApi, Request};
use super::{recorded, recorded_dir, settings, wait_until, write_kubeconfig};

const FLANNEL: &str = "flannel.alpha.coreos.com/";

/// The recorded Nodes with every flannel annotation removed (a cluster nothing published in).
fn unpublished_nodes() -> Value {
    let mut nodes = recorded("nodes.json");
    for node in nodes["items"].as_array_mut().unwrap() {
        node["metadata"]["annotations"]
            .as_object_mut()
            .unwrap()
            .retain(|key, _| !key.starts_with(FLANNEL));
    }
    nodes
}

/// Starts node `node`'s source against `api` as `ferroplane run --source kubernetes` does,
/// retrying until its first snapshot is published.
fn start_node(api: &RecordedApi, dir: &Path, node: &str) -> Source {
    let kubeconfig = write_kubeconfig(dir, &[("recorded", &api.url())]);
    let mut starter = Starter::new(SourceSettings::Kubernetes {
        client: KubeSourceConfig {
            kubeconfig: Some(kubeconfig),
            context: None,
        },
        cluster: settings(),
    });
    let mut source = None;
    wait_until("the first snapshot", || {
        let inputs = SourceInputs {
            node,
            local: NodeLocal::default(),
            conntracks: Vec::new(),
            resync: Duration::from_secs(3600),
        };
        match starter.try_start(
            inputs,
            Box::new(|_| PortAssignments::default()),
            SyncClock::now(0),
        ) {
            Ok(started) => source = Some(started),
            Err(error) => assert!(
                !matches!(error, control::node::source::StartError::Fatal(_)),
                "{error:?}"
            ),
        }
        source.is_some()
    });
    source.unwrap()
}

fn patches_of(api: &RecordedApi, node: &str) -> Vec<Request> {
    api.patches()
        .into_iter()
        .filter(|r| r.path == format!("{NODES}/{node}"))
        .collect()
}

#[test]
fn a_node_publishes_its_vtep_as_flannel_does_and_a_second_node_learns_it() {
    let api = RecordedApi::start(&recorded_dir());
    api.replace_list(NODES, serde_json::to_vec(&unpublished_nodes()).unwrap());
    let dir = tempfile::tempdir().unwrap();

    let node_a = start_node(&api, dir.path(), "node-a");
    wait_until("node-a's PATCH", || !patches_of(&api, "node-a").is_empty());
    let patches = patches_of(&api, "node-a");
    assert_eq!(patches.len(), 1, "one PATCH: {patches:?}");
    let patch = &patches[0];
    assert_eq!(
        patch.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    let body: Value = serde_json::from_slice(&patch.body).unwrap();
    eprintln!("node-a's PATCH body: {body}");
    let annotations = &body["metadata"]["annotations"];
    let backend_data = annotations[format!("{FLANNEL}backend-data")]
        .as_str()
        .unwrap()
        .to_owned();
    // Exactly flannel's shape: {"VNI":<n>,"VtepMAC":"<mac>"}, keys in that order.
    let mac_text = backend_data
        .strip_prefix(r#"{"VNI":1,"VtepMAC":""#)
        .and_then(|rest| rest.strip_suffix(r#""}"#))
        .unwrap_or_else(|| panic!("backend-data {backend_data}"));
    let mac: MacAddr = mac_text.parse().unwrap();
    assert!(mac.is_unicast(), "{mac}");
    assert_eq!(
        body,
        json!({"metadata": {"annotations": {
            "flannel.alpha.coreos.com/backend-type": "vxlan",
            "flannel.alpha.coreos.com/backend-data": backend_data,
            "flannel.alpha.coreos.com/public-ip": "192.168.10.11",
            "flannel.alpha.coreos.com/kube-subnet-manager": "true",
        }}}),
        "only the four annotations, nothing else of the Node"
    );
    // node-a itself routes to nobody: no other Node published anything.
    assert!(node_a.cell().load().routes.nodes().is_empty());
    assert!(
        node_a
            .problems()
            .iter()
            .any(|p| p.to_string().contains("node-b")
                && p.to_string()
                    .contains("no flannel.alpha.coreos.com/public-ip")),
        "{:?}",
        node_a.problems()
    );

    // A second node, listing the Nodes after the PATCH, finds node-a's tunnel endpoint.
    let node_b = start_node(&api, dir.path(), "node-b");
    let snapshot = node_b.cell().load();
    let peer = snapshot
        .routes
        .peer(Ipv4Addr::new(192, 168, 10, 11))
        .expect("node-b routes to node-a");
    assert_eq!(peer.name, "node-a");
    assert_eq!(peer.vtep_mac.0, mac.0);
    assert_eq!(peer.pod_cidr.to_string(), "10.11.8.0/24");
    assert_eq!(snapshot.routes.nodes().len(), 1, "only node-a published");
    // node-b publishes its own, with its own address.
    wait_until("node-b's PATCH", || !patches_of(&api, "node-b").is_empty());
    let body: Value = serde_json::from_slice(&patches_of(&api, "node-b")[0].body).unwrap();
    assert_eq!(
        body["metadata"]["annotations"]["flannel.alpha.coreos.com/public-ip"],
        "192.168.10.12"
    );
    drop(node_a);
}

#[test]
fn a_node_that_already_carries_its_annotations_is_not_patched() {
    // The recorded Nodes carry flannel's annotations, VNI 1, public IP the InternalIP.
    let api = RecordedApi::start(&recorded_dir());
    let dir = tempfile::tempdir().unwrap();
    let node_a = start_node(&api, dir.path(), "node-a");
    // The publication is queued before the first snapshot; give the thread time to send it.
    std::thread::sleep(Duration::from_millis(500));
    assert!(api.patches().is_empty(), "{:?}", api.patches());
    assert_eq!(node_a.cell().load().routes.nodes().len(), 4);
}

#[test]
fn a_peers_malformed_annotation_is_named_and_costs_no_other_peer() {
    let mut nodes = recorded("nodes.json");
    let items = nodes["items"].as_array_mut().unwrap();
    items[1]["metadata"]["annotations"]["flannel.alpha.coreos.com/backend-data"] =
        json!("{\"VNI\":1,\"VtepMAC\":\"not-a-mac\"}");
    items[2]["metadata"]["annotations"]["flannel.alpha.coreos.com/public-ip"] = json!("192.168.10");
    let api = RecordedApi::start(&recorded_dir());
    api.replace_list(NODES, serde_json::to_vec(&nodes).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let node_a = start_node(&api, dir.path(), "node-a");
    let problems: Vec<String> = node_a.problems().iter().map(|p| p.to_string()).collect();
    let named = |node: &str, what: &str| {
        problems
            .iter()
            .any(|p| p.contains(&format!("Node {node}")) && p.contains(what))
    };
    assert!(
        named("node-b", "backend-data") && named("node-b", "VtepMAC"),
        "{problems:?}"
    );
    assert!(
        named("node-c", "public-ip") && named("node-c", "\"192.168.10\""),
        "{problems:?}"
    );
    let snapshot = node_a.cell().load();
    let routed: Vec<&str> = snapshot
        .routes
        .nodes()
        .iter()
        .map(|n| n.name.as_str())
        .collect();
    assert_eq!(
        routed,
        ["node-d", "node-e"],
        "the well-formed peers stay routed"
    );
}
