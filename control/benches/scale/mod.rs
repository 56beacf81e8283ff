//! A cluster at the scale of the performance targets, built in memory through the API server:
//! 100 nodes, 100 namespaces, 10,000 Services (one named port each), 100,000 endpoint pods
//! (10 per Service, spread over the nodes, each resolving the named targetPort) and 1,000
//! NetworkPolicies (10 per namespace, podSelector and namespaceSelector peers, numeric and
//! named ports).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use control::apiserver::ApiServer;
use control::model::{Object, ObjectRef, StoredKind};
use control::{ClusterSettings, ClusterState};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Namespace, Node, NodeAddress, NodeStatus, Pod, PodCondition, PodSpec,
    PodStatus, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

pub const NODES: usize = 100;
pub const NAMESPACES: usize = 100;
pub const SERVICES_PER_NAMESPACE: usize = 100;
pub const PODS_PER_SERVICE: usize = 10;
pub const POLICIES_PER_NAMESPACE: usize = 10;

pub fn node_name(i: usize) -> String {
    format!("n{i:03}")
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn meta(namespace: Option<&str>, name: &str, pairs: &[(&str, &str)]) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(labels(pairs)),
        ..ObjectMeta::default()
    }
}

fn node(i: usize) -> Object {
    Node {
        metadata: meta(None, &node_name(i), &[]),
        status: Some(NodeStatus {
            addresses: Some(vec![NodeAddress {
                type_: "InternalIP".to_owned(),
                address: Ipv4Addr::from(0xc0a8_0000_u32 + 10 + i as u32).to_string(),
            }]),
            ..NodeStatus::default()
        }),
        ..Node::default()
    }
    .into_object()
}

/// Pod `index` (over the whole cluster) runs on node `index % NODES`, in that node's /22
/// (nodes get 10.128.0.0/9's /22s in order).
fn pod(namespace: &str, service: usize, replica: usize, index: usize, ready: bool) -> Object {
    let node = index % NODES;
    let slot = index / NODES;
    let ip = Ipv4Addr::from(0x0a80_0000_u32 + (node as u32) * 1024 + 2 + slot as u32);
    let app = format!("svc-{service}");
    let role = if replica.is_multiple_of(2) {
        "be"
    } else {
        "fe"
    };
    Pod {
        metadata: meta(
            Some(namespace),
            &format!("svc-{service}-{replica}"),
            &[("app", &app), ("role", role)],
        ),
        spec: Some(PodSpec {
            node_name: Some(node_name(node)),
            containers: vec![Container {
                name: "app".to_owned(),
                ports: Some(vec![ContainerPort {
                    name: Some("http".to_owned()),
                    container_port: 8080 + (replica % 2) as i32,
                    ..ContainerPort::default()
                }]),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            pod_ip: Some(ip.to_string()),
            phase: Some("Running".to_owned()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".to_owned(),
                status: if ready { "True" } else { "False" }.to_owned(),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        }),
    }
    .into_object()
}

pub fn service(namespace: &str, i: usize, affinity: bool) -> Object {
    let app = format!("svc-{i}");
    Service {
        metadata: meta(Some(namespace), &app, &[]),
        spec: Some(ServiceSpec {
            selector: Some(labels(&[("app", &app)])),
            session_affinity: affinity.then(|| "ClientIP".to_owned()),
            ports: Some(vec![ServicePort {
                name: Some("http".to_owned()),
                port: 80,
                target_port: Some(IntOrString::String("http".to_owned())),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
    .into_object()
}

fn selector(pairs: &[(&str, &str)]) -> Option<LabelSelector> {
    Some(LabelSelector {
        match_labels: Some(labels(pairs)),
        ..LabelSelector::default()
    })
}

fn policy(namespace: &str, i: usize) -> Object {
    let app = format!("svc-{}", i * 10);
    let tcp = |port: IntOrString| NetworkPolicyPort {
        port: Some(port),
        protocol: Some("TCP".to_owned()),
        ..NetworkPolicyPort::default()
    };
    let ingress = NetworkPolicyIngressRule {
        from: Some(vec![
            NetworkPolicyPeer {
                pod_selector: selector(&[("role", "fe")]),
                ..NetworkPolicyPeer::default()
            },
            NetworkPolicyPeer {
                namespace_selector: selector(&[("team", "t0")]),
                pod_selector: selector(&[("role", "be")]),
                ..NetworkPolicyPeer::default()
            },
        ]),
        ports: Some(vec![
            tcp(IntOrString::Int(8080)),
            tcp(IntOrString::String("http".into())),
        ]),
    };
    let egress = NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            pod_selector: selector(&[("app", &format!("svc-{}", i * 10 + 1))]),
            ..NetworkPolicyPeer::default()
        }]),
        ports: Some(vec![tcp(IntOrString::String("http".into()))]),
    };
    NetworkPolicy {
        metadata: meta(Some(namespace), &format!("policy-{i}"), &[]),
        spec: Some(NetworkPolicySpec {
            pod_selector: selector(&[("app", &app)]),
            ingress: Some(vec![ingress]),
            egress: i.is_multiple_of(2).then(|| vec![egress]),
            ..NetworkPolicySpec::default()
        }),
    }
    .into_object()
}

pub fn namespace_name(k: usize) -> String {
    format!("ns{k:03}")
}

/// Applies the objects in one API server session; returns the new state and the keys of the
/// objects the session wrote.
fn session(
    state: ClusterState,
    objects: impl IntoIterator<Item = Object>,
) -> (ClusterState, BTreeSet<ObjectRef>) {
    let mut api = ApiServer::new(
        state,
        Timestamp::from_second(1_700_000_000).unwrap_or_default(),
    );
    for object in objects {
        if let Err(rejected) = api.apply(object, None) {
            panic!("{rejected}");
        }
    }
    let finished = api.finish();
    (finished.state, finished.touched)
}

pub fn cluster() -> ClusterState {
    let settings = ClusterSettings {
        cluster_cidr: "10.128.0.0/9".parse().unwrap_or_else(|e| panic!("{e}")),
        node_cidr_mask_size: 22,
        ..ClusterSettings::default()
    };
    let mut objects: Vec<Object> = (0..NODES).map(node).collect();
    let mut index = 0;
    for k in 0..NAMESPACES {
        let ns = namespace_name(k);
        let team = format!("t{}", k % 10);
        objects.push(
            Namespace {
                metadata: meta(None, &ns, &[("team", &team)]),
                ..Namespace::default()
            }
            .into_object(),
        );
        for i in 0..SERVICES_PER_NAMESPACE {
            objects.push(service(&ns, i, false));
            for replica in 0..PODS_PER_SERVICE {
                objects.push(pod(&ns, i, replica, index, true));
                index += 1;
            }
        }
        for i in 0..POLICIES_PER_NAMESPACE {
            objects.push(policy(&ns, i));
        }
    }
    session(ClusterState::new(settings), objects).0
}

/// The same cluster after one Service spec changed (ClientIP affinity switched on), and the
/// keys of the objects that differ.
pub fn with_service_change(state: &ClusterState) -> (ClusterState, BTreeSet<ObjectRef>) {
    session(state.clone(), [service(&namespace_name(7), 42, true)])
}

/// The same cluster after one endpoint changed (a pod of one Service became unready), and
/// the keys of the objects that differ.
pub fn with_endpoint_change(state: &ClusterState) -> (ClusterState, BTreeSet<ObjectRef>) {
    let index = 7 * SERVICES_PER_NAMESPACE * PODS_PER_SERVICE + 42 * PODS_PER_SERVICE;
    session(
        state.clone(),
        [pod(&namespace_name(7), 42, 0, index, false)],
    )
}
