//! The IPv6 underlay in the snapshot: this node's `nodeIP6`, the peers' IPv6 underlay
//! addresses from `flannel.alpha.coreos.com/public-ipv6` (or an IPv6 `public-ip`), refused
//! annotations, and a node whose underlay is IPv6 only.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{Cluster, NODE_A, NODE_B, NodeLocal, PortAssignments, compile};
use crate::model::node::PUBLIC_IPV6;

fn v6(text: &str) -> Ipv6Addr {
    text.parse().unwrap()
}

/// A Node manifest with an InternalIP and, optionally, a `public-ipv6` annotation.
fn node(name: &str, internal_ip: &str, public_ipv6: Option<&str>) -> String {
    let annotations = public_ipv6
        .map(|ip| format!("  annotations:\n    {PUBLIC_IPV6}: \"{ip}\"\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n{annotations}status:\n  addresses:\n  - type: InternalIP\n    address: {internal_ip}\n---\n"
    )
}

fn local6(ip: &str) -> NodeLocal {
    NodeLocal {
        node_ip6: Some(v6(ip)),
        ..NodeLocal::default()
    }
}

#[test]
fn peers_publish_their_ipv6_underlay_address_and_the_node_uses_its_own() {
    let mut c = Cluster::new();
    c.apply(&node(NODE_B, "192.168.50.12", Some("2001:db8:50::12")));
    let ports = PortAssignments::sequential(c.state(), NODE_A);
    let compiled = compile(c.state(), NODE_A, &local6("2001:db8:50::11"), &ports).unwrap();
    let snap = &compiled.snapshot;
    assert_eq!(snap.node.node_ip6, Some(v6("2001:db8:50::11")));
    assert_eq!(snap.node.node_ip, Ipv4Addr::new(192, 168, 50, 11));
    assert_eq!(snap.node.pod_mtu(), 1430, "70 bytes of IPv6-outer VXLAN");
    let peer = snap.routes.peer6(v6("2001:db8:50::12")).unwrap();
    assert_eq!(peer.name, NODE_B);
    assert_eq!(
        peer.node_ip,
        Ipv4Addr::new(192, 168, 50, 12),
        "both families"
    );
    // Without nodeIP6 the node keeps the IPv4 underlay and its MTU.
    let plain = compile(c.state(), NODE_A, &NodeLocal::default(), &ports).unwrap();
    assert_eq!(plain.snapshot.node.node_ip6, None);
    assert_eq!(plain.snapshot.node.pod_mtu(), 1450);
}

#[test]
fn a_bad_public_ipv6_is_refused_by_the_api_server() {
    let mut c = Cluster::new();
    let now = k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap();
    let mut api = crate::apiserver::ApiServer::new(c.state().clone(), now);
    for bad in ["not-an-ip", "192.168.50.12", "ff02::1"] {
        let yaml = node(NODE_B, "192.168.50.12", Some(bad));
        let object = crate::manifest::parse("n.yaml", &yaml)
            .remove(0)
            .result
            .unwrap();
        let err = api.apply(object, None).unwrap_err().to_string();
        assert!(
            err.contains(PUBLIC_IPV6) && err.contains("IPv6 underlay address"),
            "{bad}: {err}"
        );
    }
    // The good state is untouched: node-b is still routed over IPv4.
    drop(api);
    let compiled = c.apply("").compile(NODE_A);
    let peer = &compiled.snapshot.routes.nodes()[0];
    assert_eq!(peer.node_ip6, None);
}

#[test]
fn ipv6_only_nodes_are_reached_over_their_ipv6_underlay() {
    let mut c = Cluster::new();
    c.apply(
        &[
            node(NODE_A, "2001:db8:50::11", None),
            node(NODE_B, "2001:db8:50::12", None),
        ]
        .concat(),
    );
    let ports = PortAssignments::sequential(c.state(), NODE_A);
    let Err(err) = compile(c.state(), NODE_A, &NodeLocal::default(), &ports) else {
        panic!("an IPv6-only node compiled without nodeIP6");
    };
    assert!(err.message.contains("nodeIP6"), "{}", err.message);
    let compiled = compile(c.state(), NODE_A, &local6("2001:db8:50::11"), &ports).unwrap();
    let snap = &compiled.snapshot;
    assert!(snap.node.node_ip.is_unspecified());
    assert!(snap.node.node_port_addresses.is_empty());
    let peer = snap.routes.peer6(v6("2001:db8:50::12")).unwrap();
    assert!(peer.node_ip.is_unspecified(), "no IPv4 underlay address");
    assert!(snap.routes.peer(Ipv4Addr::UNSPECIFIED).is_none());
}
