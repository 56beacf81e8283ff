//! Node podCIDRs and flannel VTEP annotations; pod IPs from the node's podCIDR.

use serde_json::Value;

use crate::harness::{Cluster, node, pod, str_of};

fn backend_data(node: &Value) -> Value {
    serde_json::from_str(str_of(
        node,
        "/metadata/annotations/flannel.alpha.coreos.com~1backend-data",
    ))
    .unwrap()
}

#[test]
fn nodes_get_stable_pod_cidrs_and_publish_their_vtep() {
    let cluster = Cluster::new();
    let printed = cluster.apply(
        &[
            node("node-a", "192.168.50.11"),
            node("node-b", "192.168.50.12"),
        ]
        .concat(),
    );
    assert_eq!(str_of(&printed[0], "/spec/podCIDR"), "10.244.0.0/24");
    assert_eq!(str_of(&printed[1], "/spec/podCIDR"), "10.244.1.0/24");
    assert_eq!(
        printed[1]["spec"]["podCIDRs"],
        serde_json::json!(["10.244.1.0/24"])
    );

    let a = &printed[0];
    assert_eq!(
        str_of(
            a,
            "/metadata/annotations/flannel.alpha.coreos.com~1public-ip"
        ),
        "192.168.50.11"
    );
    assert_eq!(
        str_of(
            a,
            "/metadata/annotations/flannel.alpha.coreos.com~1backend-type"
        ),
        "vxlan"
    );
    let data = backend_data(a);
    assert_eq!(data["VNI"], 1);
    let mac = data["VtepMAC"].as_str().unwrap();
    let octets: Vec<u8> = mac
        .split(':')
        .map(|o| u8::from_str_radix(o, 16).unwrap())
        .collect();
    assert_eq!(octets.len(), 6);
    assert_eq!(
        octets[0] & 0x03,
        0x02,
        "locally administered unicast: {mac}"
    );
    assert_ne!(backend_data(&printed[1])["VtepMAC"], data["VtepMAC"]);

    // Re-applying the bare manifest keeps podCIDR and MAC.
    let again = &cluster.apply(&node("node-a", "192.168.50.11"))[0];
    assert_eq!(str_of(again, "/spec/podCIDR"), "10.244.0.0/24");
    assert_eq!(backend_data(again)["VtepMAC"], data["VtepMAC"]);

    // A deleted node's podCIDR is free again.
    assert!(cluster.run(&["delete", "node", "node-a"]).success);
    let c = &cluster.apply(&node("node-c", "192.168.50.13"))[0];
    assert_eq!(str_of(c, "/spec/podCIDR"), "10.244.0.0/24");
}

#[test]
fn given_vtep_mac_and_pod_cidr_are_honoured_and_checked() {
    let cluster = Cluster::new();
    let manifest = "apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n  annotations:\n    flannel.alpha.coreos.com/backend-data: '{\"VNI\":1,\"VtepMAC\":\"0a:58:0a:f4:05:01\"}'\nspec:\n  podCIDR: 10.244.5.0/24\nstatus:\n  addresses:\n  - type: InternalIP\n    address: 192.168.50.21\n";
    let n1 = &cluster.apply(manifest)[0];
    assert_eq!(backend_data(n1)["VtepMAC"], "0a:58:0a:f4:05:01");
    assert_eq!(str_of(n1, "/spec/podCIDR"), "10.244.5.0/24");
    let clash =
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: n2\nspec:\n  podCIDR: 10.244.5.0/25\n";
    let run = cluster.apply_failing(clash);
    assert!(
        run.stderr.contains("spec.podCIDR") && run.stderr.contains("node n1"),
        "{}",
        run.stderr
    );
    let outside =
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: n3\nspec:\n  podCIDR: 10.1.0.0/24\n";
    let run = cluster.apply_failing(outside);
    assert!(
        run.stderr.contains("inside the cluster CIDR"),
        "{}",
        run.stderr
    );
    let changed = manifest.replace("10.244.5.0/24", "10.244.6.0/24");
    let run = cluster.apply_failing(&changed);
    assert!(run.stderr.contains("field is immutable"), "{}", run.stderr);
}

#[test]
fn pods_get_addresses_from_their_nodes_pod_cidr() {
    let cluster = Cluster::new();
    // Pods first, node last: the pods wait and get addresses when their node appears.
    let manifest = [
        pod("p1", "app=x", Some("node-a"), None, &[]),
        pod("p2", "app=x", Some("node-a"), None, &[]),
        pod("fixed", "app=x", Some("node-a"), Some("10.244.0.2"), &[]),
        node("node-a", "192.168.50.11"),
    ]
    .concat();
    let run = cluster.run_with_stdin(&["apply", "-f", "-"], &manifest);
    assert!(run.success, "{}", run.stderr);
    let ip = |name: &str| {
        str_of(
            &cluster.get("po", "default", name).unwrap(),
            "/status/podIP",
        )
        .to_owned()
    };
    // .0 is the network, .1 the node's bridge; `fixed` holds .2.
    assert_eq!(ip("fixed"), "10.244.0.2");
    let mut assigned = vec![ip("p1"), ip("p2")];
    assigned.sort();
    assert_eq!(assigned, ["10.244.0.3", "10.244.0.4"]);
    let p1 = cluster.get("po", "default", "p1").unwrap();
    assert_eq!(str_of(&p1, "/status/hostIP"), "192.168.50.11");
    assert_eq!(str_of(&p1, "/status/phase"), "Running");

    // A re-applied manifest keeps the address; a finished pod releases it.
    let before = ip("p1");
    cluster.apply(&pod("p1", "app=other", Some("node-a"), None, &[]));
    assert_eq!(ip("p1"), before);
    let done = format!(
        "{}status:\n  phase: Succeeded\n",
        pod("p3", "", Some("node-a"), None, &[]).trim_end_matches("---\n")
    );
    cluster.apply(&done);
    assert!(
        cluster
            .get("po", "default", "p3")
            .unwrap()
            .pointer("/status/podIP")
            .is_none()
    );
    assert!(cluster.run(&["delete", "pod", "fixed"]).success);
    let p4 = &cluster.apply(&pod("p4", "app=x", Some("node-a"), None, &[]))[0];
    assert_eq!(str_of(p4, "/status/podIP"), "10.244.0.2");

    let table = cluster.run(&["get", "pods", "-o", "wide"]);
    assert!(
        table
            .stdout
            .lines()
            .any(|l| l.starts_with("p4 ") && l.contains("10.244.0.2") && l.contains("node-a")),
        "{}",
        table.stdout
    );
}

#[test]
fn the_read_api_turns_node_annotations_into_vteps() {
    let cluster = Cluster::new();
    cluster.apply(
        &[
            node("node-a", "192.168.50.11"),
            node("node-b", "192.168.50.12"),
        ]
        .concat(),
    );
    cluster.apply("apiVersion: v1\nkind: Node\nmetadata:\n  name: no-address\n");
    let state = control::ClusterState::load(cluster.path()).unwrap();
    let b = state.node("node-b").unwrap();
    let vtep = control::model::node::vtep(b).unwrap();
    assert_eq!(vtep.node_ip.to_string(), "192.168.50.12");
    assert_eq!(vtep.pod_cidr.to_string(), "10.244.1.0/24");
    assert_eq!(vtep.vni, 1);
    let published = backend_data(&cluster.get("no", "", "node-b").unwrap());
    assert_eq!(vtep.mac.to_string(), published["VtepMAC"].as_str().unwrap());
    // A node without an underlay address has a podCIDR but no VTEP yet.
    let bare = state.node("no-address").unwrap();
    assert!(control::model::node::pod_cidr(bare).is_some());
    assert!(control::model::node::vtep(bare).is_none());
}
