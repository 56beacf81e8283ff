//! The benchmark's cluster, generated object by object as Kubernetes JSON (so the same bytes
//! feed the state directory and the recorded API server): `nodes` Nodes with podCIDRs and
//! flannel VTEPs, 100 namespaces, `services` ClusterIP Services with one EndpointSlice each
//! (`endpoints / services` ready endpoints, one Pod behind each), and `policies`
//! NetworkPolicies with one ingress rule (a podSelector peer and a port) each.
//!
//! Churn: an endpoint change flips one endpoint's `ready` in a slice; a Service change flips
//! its `sessionAffinity`. Both stamp `endpoints.kubernetes.io/last-change-trigger-time` with
//! the time the change was due, which the node turns into programming latency.

use std::net::Ipv4Addr;

use serde_json::{Value, json};

pub const NAMESPACES: usize = 100;
pub const TRIGGER: &str = "endpoints.kubernetes.io/last-change-trigger-time";

#[derive(Clone, Copy, Debug)]
pub struct Scale {
    pub nodes: usize,
    pub services: usize,
    pub endpoints: usize,
    pub policies: usize,
}

impl Scale {
    pub fn per_service(&self) -> usize {
        (self.endpoints / self.services.max(1)).max(1)
    }
}

pub fn node_name(i: usize) -> String {
    format!("n{i:04}")
}

fn namespace_of(service: usize) -> String {
    format!("ns{:02}", service % NAMESPACES)
}

/// Node `i`'s pod CIDR: a /24 of 10.128.0.0/9.
fn pod_base(node: usize) -> u32 {
    u32::from(Ipv4Addr::new(10, 128, 0, 0)) + ((node as u32) << 8)
}

fn node_ip(node: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 16, 0, 10)) + node as u32)
}

pub fn namespace(k: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": format!("ns{k:02}"), "resourceVersion": "1",
            "labels": {"kubernetes.io/metadata.name": format!("ns{k:02}")}}})
}

pub fn node(i: usize) -> Value {
    let mac = format!(
        "0e:00:{:02x}:{:02x}:{:02x}:01",
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff
    );
    let ip = node_ip(i).to_string();
    json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": node_name(i), "resourceVersion": "1",
            "annotations": {
                "flannel.alpha.coreos.com/backend-data": format!("{{\"VNI\":1,\"VtepMAC\":\"{mac}\"}}"),
                "flannel.alpha.coreos.com/backend-type": "vxlan",
                "flannel.alpha.coreos.com/public-ip": ip,
                "flannel.alpha.coreos.com/kube-subnet-manager": "true"}},
        "spec": {"podCIDR": format!("{}/24", Ipv4Addr::from(pod_base(i)))},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}]}})
}

/// Endpoint `r` of Service `s`: its pod's node and IP.
fn endpoint_place(scale: &Scale, s: usize, r: usize) -> (usize, Ipv4Addr) {
    let global = s * scale.per_service() + r;
    let node = global % scale.nodes;
    let slot = global / scale.nodes;
    (node, Ipv4Addr::from(pod_base(node) + 2 + slot as u32))
}

pub fn pod(scale: &Scale, s: usize, r: usize) -> Value {
    let (node, ip) = endpoint_place(scale, s, r);
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("s{s:05}-{r}"), "namespace": namespace_of(s),
            "resourceVersion": "1", "labels": {"app": format!("s{s:05}")}},
        "spec": {"nodeName": node_name(node), "containers": [{"name": "app", "image": "app",
            "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]}]},
        "status": {"phase": "Running", "podIP": ip.to_string(), "podIPs": [{"ip": ip.to_string()}],
            "conditions": [{"type": "Ready", "status": "True"}]}})
}

fn cluster_ip(s: usize) -> String {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 16, 0)) + s as u32).to_string()
}

/// Service `s`; `affinity` flips with each Service change.
pub fn service(s: usize, version: u64, affinity: bool, trigger: Option<&str>) -> Value {
    let mut meta = json!({"name": format!("s{s:05}"), "namespace": namespace_of(s),
        "resourceVersion": version.to_string()});
    if let Some(at) = trigger {
        meta["annotations"] = json!({TRIGGER: at});
    }
    json!({"apiVersion": "v1", "kind": "Service", "metadata": meta,
        "spec": {"type": "ClusterIP", "clusterIP": cluster_ip(s), "clusterIPs": [cluster_ip(s)],
            "selector": {"app": format!("s{s:05}")},
            "sessionAffinity": if affinity { "ClientIP" } else { "None" },
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}})
}

/// Service `s`'s slice; endpoint `not_ready` (if any) is not ready.
pub fn slice(
    scale: &Scale,
    s: usize,
    version: u64,
    not_ready: Option<usize>,
    trigger: Option<&str>,
) -> Value {
    let endpoints: Vec<Value> = (0..scale.per_service())
        .map(|r| {
            let (node, ip) = endpoint_place(scale, s, r);
            let ready = not_ready != Some(r);
            json!({"addresses": [ip.to_string()],
                "conditions": {"ready": ready, "serving": ready, "terminating": false},
                "nodeName": node_name(node),
                "targetRef": {"kind": "Pod", "namespace": namespace_of(s), "name": format!("s{s:05}-{r}")}})
        })
        .collect();
    let mut meta = json!({"name": format!("s{s:05}-1"), "namespace": namespace_of(s),
        "resourceVersion": version.to_string(),
        "labels": {"kubernetes.io/service-name": format!("s{s:05}"),
            "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}});
    if let Some(at) = trigger {
        meta["annotations"] = json!({TRIGGER: at});
    }
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": meta,
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints})
}

/// Policy `k`: pods of one Service accept port 8080 from the pods of the next Service in
/// the same namespace.
pub fn policy(scale: &Scale, k: usize) -> Value {
    let s = k % scale.services;
    let peer = (s + NAMESPACES) % scale.services;
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": format!("p{k:05}"), "namespace": namespace_of(s), "resourceVersion": "1"},
        "spec": {"podSelector": {"matchLabels": {"app": format!("s{s:05}")}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": format!("s{peer:05}")}}}],
                "ports": [{"port": 8080, "protocol": "TCP"}]}]}})
}

/// Every object of the cluster, kind by kind (namespaces, nodes, pods, services, slices,
/// policies), each handed to `each` as JSON.
pub fn for_each_object(scale: &Scale, mut each: impl FnMut(&str, Value)) {
    for k in 0..NAMESPACES {
        each("namespaces", namespace(k));
    }
    for i in 0..scale.nodes {
        each("nodes", node(i));
    }
    for s in 0..scale.services {
        for r in 0..scale.per_service() {
            each("pods", pod(scale, s, r));
        }
    }
    for s in 0..scale.services {
        each("services", service(s, 1, false, None));
    }
    for s in 0..scale.services {
        each("endpointslices", slice(scale, s, 1, None, None));
    }
    for k in 0..scale.policies {
        each("networkpolicies", policy(scale, k));
    }
}

/// The cluster settings the objects fit (pod CIDRs in 10.128.0.0/9).
pub fn settings() -> control::ClusterSettings {
    control::ClusterSettings::from_json(br#"{"clusterCIDR": "10.128.0.0/9"}"#)
        .unwrap_or_else(|e| panic!("bench settings: {e}"))
}
