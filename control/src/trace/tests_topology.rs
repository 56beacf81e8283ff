//! Topology-aware routing (`trafficDistribution`, EndpointSlice hints) through the endpoints
//! controller, the compiler and `trace`: a node prefers endpoints hinted for its zone and
//! falls back to all of them as kube-proxy does.

use dataplane::flow::L4Proto;
use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::apiserver::ApiServer;
use crate::compile::tests::{Cluster, NODE_A, NODE_B, endpoints, ip, pod, service};
use crate::manifest;

fn zoned_node(name: &str, address: &str, zone: Option<&str>) -> String {
    let labels = zone.map_or_else(String::new, |z| {
        format!("  labels:\n    topology.kubernetes.io/zone: {z}\n")
    });
    format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n{labels}status:\n  addresses:\n  - type: InternalIP\n    address: {address}\n---\n"
    )
}

fn web(distribution: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n{distribution}  selector:\n    app: web\n  ports:\n  - port: 80\n"
    )
}

const PREFER_CLOSE: &str = "  trafficDistribution: PreferClose\n";

/// node-a in zone-a, node-b in zone-b, one `web` pod on each, a client on each.
fn two_zones(distribution: &str) -> Cluster {
    let mut cluster = Cluster::new();
    cluster.apply(
        &[
            zoned_node(NODE_A, "192.168.50.11", Some("zone-a")),
            zoned_node(NODE_B, "192.168.50.12", Some("zone-b")),
            pod("default", "web-a", "app=web", NODE_A, &[]),
            pod("default", "web-b", "app=web", NODE_B, &[]),
            pod("default", "client-a", "role=client", NODE_A, &[]),
            pod("default", "client-b", "role=client", NODE_B, &[]),
            web(distribution),
        ]
        .concat(),
    );
    cluster
}

fn backends_on(cluster: &Cluster, node: &str) -> Vec<Ipv4Addr> {
    let compiled = cluster.compile(node);
    let spec = service(&compiled.snapshot, "default/web:80").expect("web compiled");
    endpoints(spec).into_iter().map(|(ip, _)| ip).collect()
}

fn hints(cluster: &Cluster) -> Vec<(String, Option<Vec<String>>)> {
    let mut found: Vec<_> = cluster
        .state()
        .endpoint_slices_of("default", "web")
        .flat_map(|s| s.endpoints.iter())
        .map(|e| {
            let zones = e.hints.as_ref().and_then(|h| h.for_zones.as_ref());
            (
                e.addresses[0].clone(),
                zones.map(|z| z.iter().map(|z| z.name.clone()).collect()),
            )
        })
        .collect();
    found.sort();
    found
}

fn vip(cluster: &Cluster) -> Ipv4Addr {
    let spec = cluster.state().service("default", "web").unwrap();
    ip(spec.spec.as_ref().unwrap().cluster_ip.as_deref().unwrap())
}

fn from(cluster: &Cluster, client: &str) -> TraceReport {
    let request = TraceRequest {
        source: Source::Pod {
            namespace: "default".to_owned(),
            name: client.to_owned(),
        },
        dst: vip(cluster),
        dport: 80,
        proto: L4Proto::Tcp,
        node: None,
    };
    trace(cluster.state(), &request).unwrap()
}

/// PreferClose: each ready endpoint is hinted for its own zone (upstream's trafficdist), and
/// each node uses only its zone's endpoints: a pod's request goes to its zone's endpoint.
#[test]
fn prefer_close_keeps_traffic_in_the_zone() {
    let cluster = two_zones(PREFER_CLOSE);
    let (a, b) = (
        cluster.ip("default", "web-a"),
        cluster.ip("default", "web-b"),
    );
    assert_eq!(
        hints(&cluster),
        vec![
            (a.to_string(), Some(vec!["zone-a".to_owned()])),
            (b.to_string(), Some(vec!["zone-b".to_owned()])),
        ]
    );
    assert_eq!(backends_on(&cluster, NODE_A), vec![a]);
    assert_eq!(backends_on(&cluster, NODE_B), vec![b]);
    for (client, expected) in [("client-a", "web-a"), ("client-b", "web-b")] {
        let report = from(&cluster, client);
        assert_eq!(report.verdict, Outcome::Delivered, "{client}: {report:?}");
        assert_eq!(
            report.delivered_to.map(|d| d.name),
            Some(format!("default/{expected}")),
            "{client}"
        );
    }
}

/// Without trafficDistribution no hints are written and every node uses every endpoint.
#[test]
fn without_traffic_distribution_every_endpoint_is_used() {
    let cluster = two_zones("");
    assert!(hints(&cluster).iter().all(|(_, h)| h.is_none()));
    assert_eq!(backends_on(&cluster, NODE_A).len(), 2);
}

/// kube-proxy's fallbacks: a node whose zone has no hinted endpoint, and a Service with one
/// ready endpoint lacking a zone hint, use all endpoints.
#[test]
fn no_endpoint_for_the_zone_or_a_missing_hint_means_all_endpoints() {
    let mut cluster = two_zones(PREFER_CLOSE);
    cluster.apply(&zoned_node("node-c", "192.168.50.13", Some("zone-c")));
    assert_eq!(
        backends_on(&cluster, "node-c").len(),
        2,
        "no zone-c endpoint"
    );
    cluster.apply(&zoned_node("node-d", "192.168.50.14", None));
    assert_eq!(
        backends_on(&cluster, "node-d").len(),
        2,
        "node without a zone"
    );
    cluster.apply(&pod("default", "web-d", "app=web", "node-d", &[]));
    let d = cluster.ip("default", "web-d");
    assert!(hints(&cluster).contains(&(d.to_string(), None)));
    assert_eq!(
        backends_on(&cluster, NODE_A).len(),
        3,
        "one ready endpoint without a hint turns topology off"
    );
}

/// Relabelling a node's zone re-hints its endpoints and re-narrows every node.
#[test]
fn a_zone_change_rehints_and_recompiles() {
    let mut cluster = two_zones(PREFER_CLOSE);
    cluster.apply(&zoned_node(NODE_B, "192.168.50.12", Some("zone-a")));
    let (a, b) = (
        cluster.ip("default", "web-a"),
        cluster.ip("default", "web-b"),
    );
    assert!(hints(&cluster).contains(&(b.to_string(), Some(vec!["zone-a".to_owned()]))));
    assert_eq!(backends_on(&cluster, NODE_A), vec![a, b]);
}

fn rejected(cluster: &Cluster, yaml: &str) -> String {
    let now = Timestamp::from_second(1_700_000_000).unwrap();
    let mut api = ApiServer::new(cluster.state().clone(), now);
    let object = manifest::parse("bad.yaml", yaml).remove(0).result.unwrap();
    api.apply(object, None).unwrap_err().to_string()
}

/// Bad input: an unknown trafficDistribution, hints on a Service that does not ask for them.
#[test]
fn bad_topology_input_names_the_field() {
    let cluster = two_zones("");
    let error = rejected(&cluster, &web("  trafficDistribution: Nearby\n"));
    assert!(error.contains("spec.trafficDistribution"), "{error}");
    let slice = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-manual\n  labels:\n    kubernetes.io/service-name: web\naddressType: IPv4\nports:\n- port: 80\nendpoints:\n- addresses: [10.244.0.77]\n  hints:\n    forZones: [{name: zone-a}]\n";
    let error = rejected(&cluster, slice);
    assert!(
        error.contains("endpoints[0].hints") && error.contains("trafficDistribution"),
        "{error}"
    );
    let empty = slice.replace("name: zone-a", "name: \"\"");
    let error = rejected(&two_zones(PREFER_CLOSE), &empty);
    assert!(
        error.contains("endpoints[0].hints.forZones[0].name"),
        "{error}"
    );
}

/// apply warns (naming the field) about IPv6 source ranges in this IPv4 cluster and about the
/// topology-mode annotation it does not implement.
#[test]
fn apply_warns_about_ipv6_source_ranges_and_topology_mode() {
    let cluster = Cluster::new();
    let now = Timestamp::from_second(1_700_000_000).unwrap();
    let mut api = ApiServer::new(cluster.state().clone(), now);
    let yaml = "apiVersion: v1\nkind: Service\nmetadata:\n  name: lb\n  annotations:\n    service.kubernetes.io/topology-mode: Auto\nspec:\n  type: LoadBalancer\n  loadBalancerSourceRanges: [203.0.113.0/24, \"2001:db8::/32\"]\n  ports:\n  - port: 80\n";
    let object = manifest::parse("lb.yaml", yaml).remove(0).result.unwrap();
    api.apply(object, None).unwrap();
    let warnings = api.finish().warnings;
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("spec.loadBalancerSourceRanges[1]") && w.contains("2001:db8::/32")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("service.kubernetes.io/topology-mode")),
        "{warnings:?}"
    );
}
