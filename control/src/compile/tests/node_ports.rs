//! NodeConfig, port table and route table.

use dataplane::packet::PortId;
use dataplane::tables::ports::PortKind;
use dataplane::wire::MacAddr;

use super::*;
use crate::compile::{CompileError, HOST_PORT, UPLINK_PORT};
use crate::model::node::backend_data;

fn published_vtep_mac(cluster: &Cluster, node: &str) -> MacAddr {
    let data = backend_data(cluster.state().node(node).unwrap()).unwrap();
    let octets: Vec<u8> = data
        .vtep_mac
        .split(':')
        .map(|o| u8::from_str_radix(o, 16).unwrap())
        .collect();
    MacAddr(octets.try_into().unwrap())
}

fn locally_administered_unicast(mac: MacAddr) -> bool {
    mac.0[0] & 0b11 == 0b10
}

#[test]
fn node_config_comes_from_the_node_the_settings_and_the_defaults() {
    let cluster = Cluster::new();
    let a = cluster.compile(NODE_A).snapshot;
    let node = &a.node;
    assert_eq!(node.name, NODE_A);
    assert_eq!(node.node_ip, ip("192.168.50.11"));
    assert_eq!(node.pod_cidr.to_string(), "10.244.0.0/24");
    assert_eq!(node.gateway_ip, ip("10.244.0.1"));
    assert_eq!(node.cluster_cidr.to_string(), "10.244.0.0/16");
    assert_eq!(node.service_cidr.to_string(), "10.96.0.0/12");
    assert_eq!((node.vni, node.vxlan_port), (1, 8472));
    assert_eq!(node.underlay_mtu, 1500);
    assert_eq!(node.pod_mtu(), 1450);
    assert_eq!(node.node_port_addresses, vec![ip("192.168.50.11")]);
    assert_eq!(node.vtep_mac, published_vtep_mac(&cluster, NODE_A));
    let macs = [
        node.uplink_mac,
        node.gateway_mac,
        node.host_mac,
        node.vtep_mac,
    ];
    for (i, mac) in macs.iter().enumerate() {
        assert!(locally_administered_unicast(*mac), "{mac}");
        assert!(
            !macs[..i].contains(mac),
            "MACs must differ per role: {macs:?}"
        );
    }
    let again = cluster.compile(NODE_A).snapshot;
    assert_eq!(
        again.node.uplink_mac, node.uplink_mac,
        "derived MACs are stable"
    );
    let b = cluster.compile(NODE_B).snapshot;
    assert_ne!(b.node.uplink_mac, node.uplink_mac);
    assert_eq!(b.node.gateway_ip, ip("10.244.1.1"));
}

#[test]
fn local_settings_override_the_defaults() {
    let cluster = Cluster::new();
    let local = NodeLocal {
        uplink_mac: Some("02:aa:bb:cc:dd:ee".parse().unwrap()),
        underlay_mtu: 9000,
        node_port_addresses: vec![ip("192.168.50.11"), ip("192.168.60.11")],
        masquerade_exempt: vec!["172.16.0.0/12".parse().unwrap()],
        ..NodeLocal::default()
    };
    let ports = PortAssignments::new();
    let node = compile(cluster.state(), NODE_A, &local, &ports)
        .unwrap()
        .snapshot
        .node;
    assert_eq!(
        node.uplink_mac,
        MacAddr([0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee])
    );
    assert_eq!(node.pod_mtu(), 8950);
    assert_eq!(node.node_port_addresses.len(), 2);
    assert!(!node.needs_masquerade(ip("172.20.1.1")));
    assert!(node.needs_masquerade(ip("8.8.8.8")));
}

#[test]
fn an_unknown_or_unaddressed_node_cannot_be_compiled() {
    let mut cluster = Cluster::new();
    let err = compile(
        cluster.state(),
        "node-z",
        &NodeLocal::default(),
        &PortAssignments::new(),
    )
    .err()
    .unwrap();
    assert_eq!(err.node, "node-z");
    cluster.apply("apiVersion: v1\nkind: Node\nmetadata:\n  name: bare\n");
    let err: CompileError = compile(
        cluster.state(),
        "bare",
        &NodeLocal::default(),
        &PortAssignments::new(),
    )
    .err()
    .unwrap();
    assert!(err.message.contains("InternalIP"), "{err}");
}

#[test]
fn ports_hold_the_assigned_live_pods_of_this_node_only() {
    let mut cluster = Cluster::new();
    cluster.apply(
        &[
            pod("default", "p1", "app=x", NODE_A, &[]),
            pod("default", "p2", "app=x", NODE_A, &[]),
            pod("default", "p3", "app=x", NODE_B, &[]),
        ]
        .concat(),
    );
    cluster.apply(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: agent\nspec:\n  nodeName: node-a\n  hostNetwork: true\n  containers:\n  - name: c\n    image: x\nstatus:\n  podIP: 192.168.50.11\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: done\nspec:\n  nodeName: node-a\n  containers:\n  - name: c\n    image: x\nstatus:\n  podIP: 10.244.0.50\n  phase: Succeeded\n",
    );
    let mut ports = PortAssignments::new();
    ports.assign("default/p1", PortId(5));
    ports.assign("default/p3", PortId(6));
    ports.assign("default/agent", PortId(7));
    ports.assign("default/done", PortId(8));
    let compiled = compile(cluster.state(), NODE_A, &NodeLocal::default(), &ports).unwrap();
    let table = &compiled.snapshot.ports;
    assert_eq!(table.kind(UPLINK_PORT), Some(PortKind::Uplink));
    assert_eq!(table.kind(HOST_PORT), Some(PortKind::Host));
    assert_eq!(table.uplink(), Some(PortId(0)));
    assert_eq!(table.host(), Some(PortId(1)));
    let p1 = cluster.ip("default", "p1");
    let local = table.pod(p1).unwrap();
    assert_eq!(&*local.name, "default/p1");
    assert_eq!(local.port, PortId(5));
    let [a, b, c, d] = p1.octets();
    assert_eq!(local.mac, MacAddr([0x0a, 0x58, a, b, c, d]));
    assert_eq!(table.pod_on(PortId(5)).map(|p| p.ip), Some(p1));
    assert_eq!(
        table.pods().count(),
        1,
        "p2 unassigned, p3 remote, agent hostNetwork, done finished"
    );
}

#[test]
fn clashing_port_assignments_are_reported() {
    let mut cluster = Cluster::new();
    cluster.apply(
        &[
            pod("default", "p1", "app=x", NODE_A, &[]),
            pod("default", "p2", "app=x", NODE_A, &[]),
            pod("default", "p3", "app=x", NODE_A, &[]),
        ]
        .concat(),
    );
    let mut ports = PortAssignments::new();
    ports.assign("default/p1", PortId(2));
    ports.assign("default/p2", PortId(2));
    ports.assign("default/p3", PortId(1));
    let compiled = compile(cluster.state(), NODE_A, &NodeLocal::default(), &ports).unwrap();
    assert_eq!(compiled.snapshot.ports.pods().count(), 1);
    let objects: Vec<&str> = compiled
        .problems
        .iter()
        .map(|p| p.object.as_str())
        .collect();
    assert_eq!(objects, ["Pod default/p2", "Pod default/p3"]);
}

#[test]
fn sequential_ports_start_after_uplink_and_host() {
    let mut cluster = Cluster::new();
    cluster.apply(
        &[
            pod("default", "b", "app=x", NODE_A, &[]),
            pod("default", "a", "app=x", NODE_A, &[]),
            pod("default", "c", "app=x", NODE_B, &[]),
        ]
        .concat(),
    );
    let ports = PortAssignments::sequential(cluster.state(), NODE_A);
    let listed: Vec<(&str, PortId)> = ports.iter().collect();
    assert_eq!(listed, [("default/a", PortId(2)), ("default/b", PortId(3))]);
}

#[test]
fn every_other_published_node_is_a_route() {
    let mut cluster = Cluster::new();
    cluster.apply(&node("node-c", "192.168.50.13"));
    let routes = cluster.compile(NODE_A).snapshot.routes;
    let names: Vec<&str> = routes.nodes().iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, [NODE_B, "node-c"]);
    let b = routes.lookup(ip("10.244.1.77")).unwrap();
    assert_eq!(b.name, NODE_B);
    assert_eq!(b.node_ip, ip("192.168.50.12"));
    assert_eq!(b.vtep_mac, published_vtep_mac(&cluster, NODE_B));
    let next_hop = crate::compile::node::to_dp_mac(NodeLocal::default().uplink_next_hop_mac);
    assert_eq!(b.underlay_mac, next_hop);
    assert!(
        routes.lookup(ip("10.244.0.9")).is_none(),
        "never a route to itself"
    );

    let mut local = NodeLocal::default();
    local
        .peer_underlay_macs
        .insert(NODE_B.to_owned(), "02:00:00:00:00:0b".parse().unwrap());
    let routes = compile(cluster.state(), NODE_A, &local, &PortAssignments::new())
        .unwrap()
        .snapshot
        .routes;
    assert_eq!(
        routes.peer(ip("192.168.50.12")).unwrap().underlay_mac,
        MacAddr([2, 0, 0, 0, 0, 0x0b])
    );
    assert_eq!(
        routes.peer(ip("192.168.50.13")).unwrap().underlay_mac,
        next_hop
    );
}

/// Every InternalIP and ExternalIP of a Node is the node's own address; `nodePortAddresses`
/// CIDRs pick the ones NodePorts answer on (kube-proxy's flag).
#[test]
fn every_address_of_a_node_counts_and_node_port_cidrs_pick_among_them() {
    let mut cluster = Cluster::new();
    cluster.apply(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: node-c\nstatus:\n  addresses:\n  - type: InternalIP\n    address: 192.168.50.13\n  - type: InternalIP\n    address: 192.168.60.13\n  - type: Hostname\n    address: node-c\n  - type: ExternalIP\n    address: 203.0.113.13\n",
    );
    let local = NodeLocal {
        node_port_cidrs: vec!["192.168.0.0/16".parse().unwrap()],
        ..NodeLocal::default()
    };
    let compiled = compile(cluster.state(), "node-c", &local, &PortAssignments::new()).unwrap();
    let node = compiled.snapshot.node;
    assert_eq!(node.node_ip, ip("192.168.50.13"));
    assert_eq!(
        node.other_addresses,
        [ip("192.168.60.13"), ip("203.0.113.13")]
    );
    assert!(node.is_own_address(ip("203.0.113.13")));
    assert_eq!(
        node.node_port_addresses,
        [ip("192.168.50.13"), ip("192.168.60.13")]
    );
    let nowhere = NodeLocal {
        node_port_cidrs: vec!["10.9.0.0/16".parse().unwrap()],
        ..NodeLocal::default()
    };
    let compiled = compile(cluster.state(), "node-c", &nowhere, &PortAssignments::new()).unwrap();
    assert!(compiled.snapshot.node.node_port_addresses.is_empty());
    assert!(
        compiled
            .problems
            .iter()
            .any(|p| p.message.contains("nodePortAddresses")),
        "{:?}",
        compiled.problems
    );
}

/// A pod the CNI plugin attached before the state lists it gets its port at the recorded IP,
/// and its hostPort answers on the node's address; both go with the assignments.
#[test]
fn an_attached_pod_and_its_host_port_come_from_the_assignments() {
    use crate::cni::attach::{HostPort, Protocol};
    use crate::compile::host_ports::PodHostPort;
    use dataplane::flow::L4Proto;
    use dataplane::tables::services::Frontend;

    let cluster = Cluster::new();
    let pod_ip = ip("10.244.0.77");
    let mut ports = PortAssignments::new();
    ports.assign("default/early", PortId(2));
    ports.attached_ip("default/early", pod_ip);
    ports.host_port(PodHostPort {
        pod: "default/early".to_owned(),
        ip: pod_ip,
        mapping: HostPort {
            protocol: Protocol::Tcp,
            host_port: 8080,
            container_port: 80,
            host_ip: None,
        },
    });
    let compiled = compile(cluster.state(), NODE_A, &NodeLocal::default(), &ports).unwrap();
    let snapshot = &compiled.snapshot;
    assert_eq!(snapshot.ports.pod(pod_ip).map(|p| p.port), Some(PortId(2)));
    let Frontend::Service { id, .. } =
        snapshot
            .services
            .lookup(ip("192.168.50.11"), 8080, L4Proto::Tcp)
    else {
        panic!("no hostPort frontend on the node's address");
    };
    let service = snapshot.services.service(id).unwrap();
    assert_eq!(&**service.name(), "default/early:hostPort-8080-tcp");
    assert_eq!(endpoints(service), vec![(pod_ip, 80)]);
    // Without them in the assignments, neither is programmed.
    let plain = compile(
        cluster.state(),
        NODE_A,
        &NodeLocal::default(),
        &PortAssignments::new(),
    )
    .unwrap();
    assert!(plain.snapshot.ports.pod(pod_ip).is_none());
    assert_eq!(
        plain
            .snapshot
            .services
            .lookup(ip("192.168.50.11"), 8080, L4Proto::Tcp),
        Frontend::NotService
    );
}
