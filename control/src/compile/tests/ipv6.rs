//! The IPv6 side of the snapshot from dual-stack objects: Nodes with an IPv6 `spec.podCIDRs`
//! entry and IPv6 addresses, pods with an IPv6 `status.podIPs` entry. (The objects are given
//! their IPv6 fields directly in the state: their defaulting and allocation are the API
//! server's, not the compiler's.)

use std::net::Ipv6Addr;

use k8s_openapi::api::core::v1::{NodeAddress, PodIP};

use super::{Cluster, NODE_A, NODE_B, pod};
use crate::model::Object;

fn v6(text: &str) -> Ipv6Addr {
    text.parse().unwrap()
}

/// Gives `node` an IPv6 podCIDR and (optionally) an IPv6 InternalIP.
fn dual_stack_node(cluster: &mut Cluster, node: &str, cidr: &str, address: Option<&str>) {
    let mut n = cluster.state.node(node).unwrap().clone();
    let spec = n.spec.get_or_insert_with(Default::default);
    let mut cidrs: Vec<String> = spec.pod_cidr.iter().cloned().collect();
    cidrs.push(cidr.to_owned());
    spec.pod_cidrs = Some(cidrs);
    if let Some(address) = address {
        let status = n.status.get_or_insert_with(Default::default);
        status
            .addresses
            .get_or_insert_with(Vec::new)
            .push(NodeAddress {
                type_: "InternalIP".into(),
                address: address.into(),
            });
    }
    cluster.state.insert(Object::Node(Box::new(n)));
}

/// Sets a pod's `status.podIPs` to its IPv4 address (if `keep_v4`) and `ip`.
fn pod_ipv6(cluster: &mut Cluster, name: &str, ip: &str, keep_v4: bool) {
    let mut p = cluster.state.pod("default", name).unwrap().clone();
    let status = p.status.get_or_insert_with(Default::default);
    let mut ips: Vec<PodIP> = Vec::new();
    if keep_v4 {
        ips.extend(status.pod_ip.clone().map(|ip| PodIP { ip }));
    } else {
        status.pod_ip = Some(ip.to_owned());
    }
    ips.push(PodIP { ip: ip.to_owned() });
    status.pod_ips = Some(ips);
    cluster.state.insert(Object::Pod(Box::new(p)));
}

fn cluster() -> Cluster {
    let mut c = Cluster::new();
    c.apply(
        &[
            pod("default", "a", "app=a", NODE_A, &[]),
            pod("default", "b", "app=b", NODE_A, &[]),
        ]
        .concat(),
    );
    dual_stack_node(&mut c, NODE_A, "fd00:10:244:1::/64", Some("2001:db8::11"));
    dual_stack_node(&mut c, NODE_B, "fd00:10:244:2::/64", Some("2001:db8::12"));
    c
}

#[test]
fn dual_stack_nodes_and_pods_fill_the_ipv6_tables() {
    let mut c = cluster();
    pod_ipv6(&mut c, "a", "fd00:10:244:1::5", true);
    let compiled = c.compile(NODE_A);
    let snap = &compiled.snapshot;
    let node = snap.v6.node().expect("node-a has an IPv6 podCIDR");
    assert_eq!(node.pod_cidr.to_string(), "fd00:10:244:1::/64");
    assert_eq!(
        node.cluster_cidr.to_string(),
        "fd00:10:244::/62",
        "covers both nodes"
    );
    assert_eq!(node.gateway_ip, v6("fd00:10:244:1::1"));
    assert_eq!(node.node_ips, vec![v6("2001:db8::11")]);
    let a6 = snap.v6.pod(v6("fd00:10:244:1::5")).expect("pod a in IPv6");
    let a4 = snap.ports.pod(c.ip("default", "a")).unwrap();
    assert_eq!((a6.port, a6.mac, a6.ip4), (a4.port, a4.mac, Some(a4.ip)));
    assert_eq!(
        snap.v6.pod_on(a4.port).map(|p| p.ip),
        Some(v6("fd00:10:244:1::5"))
    );
    // Pod b has no IPv6 address: IPv4 only.
    let b4 = snap.ports.pod(c.ip("default", "b")).unwrap();
    assert!(snap.v6.pod_on(b4.port).is_none());
    let remote = snap
        .v6
        .lookup(v6("fd00:10:244:2::9"))
        .expect("node-b's IPv6 pods");
    assert_eq!(remote.name, NODE_B);
    assert_eq!(
        remote.node_ip,
        snap.routes.nodes()[0].node_ip,
        "through its IPv4 VTEP"
    );
    assert_eq!(remote.node_ips, vec![v6("2001:db8::12")]);
    assert!(
        snap.v6.lookup(v6("fd00:10:244:1::9")).is_none(),
        "never routes to itself"
    );
}

#[test]
fn the_ipv6_cluster_range_comes_from_the_settings_when_they_have_one() {
    let mut c = cluster();
    c.state.settings_mut().secondary_cluster_cidr = Some("fd00:10:244::/56".parse().unwrap());
    let compiled = c.compile(NODE_A);
    let node = compiled.snapshot.v6.node().unwrap();
    assert_eq!(node.cluster_cidr.to_string(), "fd00:10:244::/56");
    // A pod address beyond both nodes' podCIDRs but inside the range is a pod address.
    assert!(node.is_pod_network(v6("fd00:10:244:ff::1")));
}

#[test]
fn the_masquerade_address_is_the_first_ipv6_internal_ip() {
    let mut c = cluster();
    let mut n = c.state.node(NODE_A).unwrap().clone();
    let addresses = n.status.as_mut().unwrap().addresses.as_mut().unwrap();
    addresses.insert(
        0,
        NodeAddress {
            type_: "ExternalIP".into(),
            address: "2001:db8:e::1".into(),
        },
    );
    c.state.insert(Object::Node(Box::new(n)));
    let compiled = c.compile(NODE_A);
    let node = compiled.snapshot.v6.node().unwrap();
    assert_eq!(node.masquerade_address(), Some(v6("2001:db8::11")));
    assert!(node.is_own_address(v6("2001:db8:e::1")));
}

#[test]
fn ipv4_only_nodes_get_no_ipv6_and_bad_pod_addresses_are_reported() {
    let c = Cluster::new();
    assert!(c.compile(NODE_A).snapshot.v6.node().is_none());

    let mut c = cluster();
    pod_ipv6(&mut c, "a", "fd00:99::5", true);
    pod_ipv6(&mut c, "b", "fd00:10:244:1::6", false);
    let compiled = c.compile(NODE_A);
    assert!(compiled.snapshot.v6.pod(v6("fd00:99::5")).is_none());
    let mentions = |pod: &str, text: &str| {
        compiled
            .problems
            .iter()
            .any(|p| p.object == format!("Pod default/{pod}") && p.message.contains(text))
    };
    assert!(
        mentions("a", "outside the node's IPv6 podCIDR"),
        "{:?}",
        compiled.problems
    );
    assert!(
        mentions("b", "only an IPv6 address"),
        "{:?}",
        compiled.problems
    );
}

#[test]
fn an_mtu_below_1280_leaves_ipv6_out_with_a_problem() {
    let c = cluster();
    let ports = super::PortAssignments::sequential(c.state(), NODE_A);
    let local = super::NodeLocal {
        underlay_mtu: 1300,
        ..super::NodeLocal::default()
    };
    let compiled = super::compile(c.state(), NODE_A, &local, &ports).unwrap();
    assert!(compiled.snapshot.v6.node().is_none());
    assert!(
        compiled
            .problems
            .iter()
            .any(|p| p.message.contains("IPv6 needs at least 1280")),
        "{:?}",
        compiled.problems
    );
}

#[test]
fn ipv6_masquerade_exemptions_go_to_the_ipv6_side() {
    let c = cluster();
    let ports = super::PortAssignments::sequential(c.state(), NODE_A);
    let local = super::NodeLocal {
        masquerade_exempt: vec![
            "2001:db8:100::/48".parse().unwrap(),
            "172.16.0.0/12".parse().unwrap(),
        ],
        ..super::NodeLocal::default()
    };
    let compiled = super::compile(c.state(), NODE_A, &local, &ports).unwrap();
    let node = compiled.snapshot.v6.node().unwrap();
    assert_eq!(
        node.masquerade_exempt
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        vec!["2001:db8:100::/48"]
    );
    assert_eq!(
        compiled.snapshot.node.masquerade_exempt.len(),
        1,
        "the IPv4 one stays IPv4's"
    );
    assert!(
        !compiled
            .problems
            .iter()
            .any(|p| p.message.contains("masquerade")),
        "{:?}",
        compiled.problems
    );
}

#[test]
fn a_second_pod_claiming_an_ipv6_address_is_left_out_and_reported() {
    let mut c = cluster();
    pod_ipv6(&mut c, "a", "fd00:10:244:1::5", true);
    pod_ipv6(&mut c, "b", "fd00:10:244:1::5", true);
    let compiled = c.compile(NODE_A);
    let pod = compiled.snapshot.v6.pod(v6("fd00:10:244:1::5")).unwrap();
    let ports: Vec<_> = compiled
        .snapshot
        .ports
        .pods()
        .filter(|p| compiled.snapshot.v6.pod_on(p.port).is_some())
        .map(|p| p.port)
        .collect();
    assert_eq!(ports, vec![pod.port], "one port owns the address");
    assert_eq!(&*pod.name, "default/a", "the first in namespace/name order");
    assert!(
        compiled
            .problems
            .iter()
            .any(|p| p.message.contains("is also pod")),
        "{:?}",
        compiled.problems
    );
}

/// A dual-stack Service `web` (TCP 80 named `http`, UDP 53 named `dns`) written straight into the
/// state, with one IPv6 EndpointSlice (and an IPv4 one, which the IPv6 side ignores).
fn dual_stack_service(cluster: &mut Cluster, ready: &[(&str, bool)]) {
    use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
    use k8s_openapi::api::discovery::v1::{
        Endpoint, EndpointConditions, EndpointPort, EndpointSlice,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    let meta = |name: &str, labels: bool| ObjectMeta {
        name: Some(name.into()),
        namespace: Some("default".into()),
        labels: labels.then(|| {
            [("kubernetes.io/service-name".to_owned(), "web".to_owned())]
                .into_iter()
                .collect()
        }),
        ..Default::default()
    };
    let port = |name: &str, protocol: &str, number: i32| ServicePort {
        name: Some(name.into()),
        protocol: Some(protocol.into()),
        port: number,
        ..Default::default()
    };
    let svc = Service {
        metadata: meta("web", false),
        spec: Some(ServiceSpec {
            cluster_ip: Some("10.96.0.50".into()),
            cluster_ips: Some(vec!["10.96.0.50".into(), "fd00:10:96::50".into()]),
            ports: Some(vec![port("http", "TCP", 80), port("dns", "UDP", 53)]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let slice = |name: &str, family: &str, endpoints: Vec<Endpoint>| EndpointSlice {
        metadata: meta(name, true),
        address_type: family.into(),
        endpoints,
        ports: Some(vec![
            EndpointPort {
                name: Some("http".into()),
                protocol: Some("TCP".into()),
                port: Some(8080),
                ..Default::default()
            },
            EndpointPort {
                name: Some("dns".into()),
                protocol: Some("UDP".into()),
                port: Some(5353),
                ..Default::default()
            },
        ]),
    };
    let endpoint = |ip: &str, ready: bool| Endpoint {
        addresses: vec![ip.into()],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            ..Default::default()
        }),
        ..Default::default()
    };
    cluster.state.insert(Object::Service(Box::new(svc)));
    let six = ready.iter().map(|(ip, r)| endpoint(ip, *r)).collect();
    cluster
        .state
        .insert(Object::EndpointSlice(Box::new(slice("web-6", "IPv6", six))));
    let four = vec![endpoint("10.244.1.9", true)];
    cluster.state.insert(Object::EndpointSlice(Box::new(slice(
        "web-4", "IPv4", four,
    ))));
}

#[test]
fn ipv6_cluster_ips_get_frontends_with_ready_ipv6_endpoints() {
    let mut c = cluster();
    dual_stack_service(
        &mut c,
        &[
            ("fd00:10:244:2::9", true),
            ("fd00:10:244:1::5", true),
            ("fd00:10:244:1::6", false),
        ],
    );
    let compiled = c.compile(NODE_A);
    let v6tables = &compiled.snapshot.v6;
    let want = [
        (v6("fd00:10:244:1::5"), 8080),
        (v6("fd00:10:244:2::9"), 8080),
    ];
    assert_eq!(
        v6tables.service(v6("fd00:10:96::50"), 80, 6),
        Some(&want[..])
    );
    let dns: Vec<_> = want.iter().map(|(ip, _)| (*ip, 5353)).collect();
    assert_eq!(
        v6tables.service(v6("fd00:10:96::50"), 53, 17),
        Some(&dns[..])
    );
    assert_eq!(v6tables.service(v6("fd00:10:96::50"), 80, 17), None);
}

#[test]
fn an_ipv6_frontend_without_ready_endpoints_is_kept_empty_for_reject() {
    let mut c = cluster();
    dual_stack_service(&mut c, &[("fd00:10:244:1::6", false)]);
    let compiled = c.compile(NODE_A);
    let v6tables = &compiled.snapshot.v6;
    assert_eq!(v6tables.service(v6("fd00:10:96::50"), 80, 6), Some(&[][..]));
    assert!(v6tables.is_vip(v6("fd00:10:96::50")));
}

/// Makes `web` a LoadBalancer with nodePorts, an IPv6 and an IPv4 ingress IP, an IPv6
/// externalIP, the given traffic policy and source ranges.
fn make_load_balancer(cluster: &mut Cluster, local: bool, ranges: &[&str]) {
    use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, ServiceStatus};
    let mut svc = cluster
        .state
        .get::<k8s_openapi::api::core::v1::Service>("default", "web")
        .unwrap()
        .clone();
    let spec = svc.spec.as_mut().unwrap();
    spec.type_ = Some("LoadBalancer".into());
    for (port, node_port) in spec.ports.iter_mut().flatten().zip([30080, 30053]) {
        port.node_port = Some(node_port);
    }
    spec.external_traffic_policy = Some(if local { "Local" } else { "Cluster" }.into());
    spec.external_ips = Some(vec!["2001:db8:200::7".into()]);
    spec.load_balancer_source_ranges =
        (!ranges.is_empty()).then(|| ranges.iter().map(|r| (*r).to_owned()).collect());
    let ingress = |ip: &str| LoadBalancerIngress {
        ip: Some(ip.into()),
        ..Default::default()
    };
    svc.status = Some(ServiceStatus {
        load_balancer: Some(LoadBalancerStatus {
            ingress: Some(vec![ingress("198.51.100.5"), ingress("2001:db8:100::5")]),
        }),
        ..Default::default()
    });
    cluster.state.insert(Object::Service(Box::new(svc)));
}

#[test]
fn node_ports_load_balancer_ips_and_external_ips_get_ipv6_frontends() {
    use dataplane::tables::v6::Kind6;
    let mut c = cluster();
    pod_ipv6(&mut c, "a", "fd00:10:244:1::5", true);
    dual_stack_service(
        &mut c,
        &[("fd00:10:244:1::5", true), ("fd00:10:244:2::9", true)],
    );
    make_load_balancer(&mut c, true, &["2001:db8:9::/48", "203.0.113.0/24"]);
    let compiled = c.compile(NODE_A);
    let t = &compiled.snapshot.v6;
    let node_port = t
        .frontend(v6("2001:db8::11"), 30080, 6)
        .expect("NodePort on node-a");
    assert_eq!(node_port.kind, Kind6::NodePort);
    assert!(node_port.external_local);
    assert_eq!(node_port.backends.len(), 2);
    assert_eq!(
        &node_port.local[..],
        &[(v6("fd00:10:244:1::5"), 8080)],
        "node-a's endpoint"
    );
    assert!(
        t.frontend(v6("2001:db8::12"), 30080, 6).is_none(),
        "node-b's address is node-b's"
    );
    let lb = t.frontend(v6("2001:db8:100::5"), 53, 17).expect("LB IP");
    assert_eq!(lb.kind, Kind6::External);
    assert!(lb.admits(v6("2001:db8:9::1")));
    assert!(
        !lb.admits(v6("2001:db8:8::1")),
        "only the IPv6 range admits"
    );
    let external = t
        .frontend(v6("2001:db8:200::7"), 80, 6)
        .expect("externalIP");
    assert!(
        external.admits(v6("2001:db8:8::1")),
        "no ranges on externalIPs"
    );
    let cluster_ip = t.frontend(v6("fd00:10:96::50"), 80, 6).unwrap();
    assert_eq!(cluster_ip.kind, Kind6::ClusterIp);
    assert!(
        !cluster_ip.external_local,
        "ClusterIPs have no external policy"
    );

    // nodePortAddresses CIDRs pick among the node's IPv6 addresses.
    let ports = super::PortAssignments::sequential(c.state(), NODE_A);
    for (cidr, answers) in [("2001:db8::/64", true), ("2001:db8:1::/64", false)] {
        let local = super::NodeLocal {
            node_port_cidrs: vec![cidr.parse().unwrap()],
            ..super::NodeLocal::default()
        };
        let compiled = super::compile(c.state(), NODE_A, &local, &ports).unwrap();
        let found = compiled.snapshot.v6.frontend(v6("2001:db8::11"), 30080, 6);
        assert_eq!(found.is_some(), answers, "{cidr}");
    }

    // Only IPv4 ranges: no IPv6 client is admitted (never wider than asked).
    make_load_balancer(&mut c, false, &["203.0.113.0/24"]);
    let compiled = c.compile(NODE_A);
    let lb = compiled
        .snapshot
        .v6
        .frontend(v6("2001:db8:100::5"), 80, 6)
        .unwrap();
    assert!(!lb.admits(v6("2001:db8:9::1")));
    assert!(!lb.external_local);
}

#[test]
fn network_policy_peers_compile_for_ipv6_blocks_and_selected_pods() {
    use dataplane::flow::L4Proto::Tcp;
    use dataplane::tables::policy::PolicyVerdict;
    let mut c = cluster();
    pod_ipv6(&mut c, "a", "fd00:10:244:1::5", true);
    pod_ipv6(&mut c, "b", "fd00:10:244:1::6", true);
    c.apply(
        "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: b-from-a
spec:
  podSelector:
    matchLabels:
      app: b
  ingress:
  - from:
    - podSelector:
        matchLabels:
          app: a
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: a-out
spec:
  podSelector:
    matchLabels:
      app: a
  policyTypes: [Egress]
  egress:
  - to:
    - ipBlock:
        cidr: 2001:db8:9::/48
        except: [2001:db8:9:1::/64]
    ports:
    - port: 443
",
    );
    let compiled = c.compile(NODE_A);
    assert!(
        !compiled
            .problems
            .iter()
            .any(|p| p.message.contains("ipBlock")),
        "{:?}",
        compiled.problems
    );
    let table = &compiled.snapshot.policy;
    let (a4, b4) = (c.ip("default", "a"), c.ip("default", "b"));
    let allowed = |v: PolicyVerdict| matches!(v, PolicyVerdict::Allowed(_));
    assert!(allowed(table.check_ingress6(
        b4,
        v6("fd00:10:244:1::5"),
        Tcp,
        80
    )));
    assert!(!allowed(table.check_ingress6(
        b4,
        v6("fd00:10:244:1::7"),
        Tcp,
        80
    )));
    assert!(allowed(table.check_egress6(
        a4,
        v6("2001:db8:9::1"),
        Tcp,
        443
    )));
    assert!(!allowed(table.check_egress6(
        a4,
        v6("2001:db8:9::1"),
        Tcp,
        80
    )));
    assert!(
        !allowed(table.check_egress6(a4, v6("2001:db8:9:1::1"), Tcp, 443)),
        "except"
    );
    // The IPv6 block says nothing about IPv4 destinations.
    assert!(!allowed(table.check_egress(
        a4,
        crate::compile::tests::ip("192.0.2.1"),
        Tcp,
        443
    )));
}
