//! Tests of the dataplane compiler on small clusters built in memory through the API server
//! (so objects carry the defaults, IPs and EndpointSlices a real apply gives them). Expected
//! values are written from the Kubernetes semantics, not read back from the compiler.

mod endpoints;
mod incremental;
mod ipv6;
mod node_ports;
mod policy;
mod policy_ports;
mod services;
mod underlay6;
mod verdicts;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use dataplane::snapshot::Snapshot;
use dataplane::tables::services::{Backend, Service};
use k8s_openapi::jiff::Timestamp;

use super::{Compiled, NodeLocal, PortAssignments, compile};
use crate::apiserver::ApiServer;
use crate::manifest;
use crate::model::ObjectRef;
use crate::model::pod::pod_ip;
use crate::settings::ClusterSettings;
use crate::state::ClusterState;

pub const NODE_A: &str = "node-a";
pub const NODE_B: &str = "node-b";

/// A cluster state that grows by applying YAML, one API server session per call.
pub struct Cluster {
    state: ClusterState,
    /// The objects the last `apply` or `delete` wrote or removed.
    touched: BTreeSet<ObjectRef>,
}

impl Cluster {
    /// Two nodes, `node-a` (192.168.50.11) and `node-b` (192.168.50.12); externalIPs
    /// allowed from 192.0.2.0/24 (TEST-NET-1).
    pub fn new() -> Cluster {
        let settings = ClusterSettings {
            external_ip_cidrs: vec!["192.0.2.0/24".parse().unwrap()],
            ..ClusterSettings::default()
        };
        let mut cluster = Cluster {
            state: ClusterState::new(settings),
            touched: BTreeSet::new(),
        };
        cluster.apply(&[node(NODE_A, "192.168.50.11"), node(NODE_B, "192.168.50.12")].concat());
        cluster
    }

    /// Applies every document; each must be accepted.
    pub fn apply(&mut self, yaml: &str) -> &mut Cluster {
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let mut api = ApiServer::new(std::mem::take(&mut self.state), now);
        for entry in manifest::parse("test.yaml", yaml) {
            let object = entry.result.unwrap();
            api.apply(object, None).unwrap();
        }
        self.finish(api)
    }

    fn finish(&mut self, api: ApiServer) -> &mut Cluster {
        let finished = api.finish();
        self.state = finished.state;
        self.touched = finished.touched;
        self
    }

    pub fn delete(&mut self, key: &ObjectRef) -> &mut Cluster {
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let mut api = ApiServer::new(std::mem::take(&mut self.state), now);
        api.delete(key).unwrap();
        self.finish(api)
    }

    pub fn touched(&self) -> &BTreeSet<ObjectRef> {
        &self.touched
    }

    pub fn state(&self) -> &ClusterState {
        &self.state
    }

    /// The IPv4 address the simulated kubelet gave a pod.
    pub fn ip(&self, namespace: &str, name: &str) -> Ipv4Addr {
        match pod_ip(self.state.pod(namespace, name).unwrap()).unwrap() {
            std::net::IpAddr::V4(v4) => v4,
            std::net::IpAddr::V6(_) => panic!("IPv6 pod"),
        }
    }

    /// The snapshot of `node` with sequential ports and default node-local settings.
    pub fn compile(&self, node: &str) -> Compiled {
        let ports = PortAssignments::sequential(&self.state, node);
        compile(&self.state, node, &NodeLocal::default(), &ports).unwrap()
    }
}

pub fn node(name: &str, internal_ip: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\nstatus:\n  addresses:\n  - type: InternalIP\n    address: {internal_ip}\n---\n"
    )
}

/// A pod bound to `node` (its IP comes from the node's podCIDR). `labels` is `k=v,k=v`;
/// `ports` are named TCP container ports.
pub fn pod(namespace: &str, name: &str, labels: &str, node: &str, ports: &[(&str, i32)]) -> String {
    let labels: String = labels
        .split(',')
        .filter(|l| !l.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap();
            format!("    {k}: {v}\n")
        })
        .collect();
    let ports: String = ports
        .iter()
        .map(|(n, p)| format!("    - name: {n}\n      containerPort: {p}\n"))
        .collect();
    let ports = if ports.is_empty() {
        String::new()
    } else {
        format!("    ports:\n{ports}")
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {namespace}\n  labels:\n{labels}spec:\n  nodeName: {node}\n  containers:\n  - name: app\n    image: example\n{ports}---\n"
    )
}

/// The compiled Service ports, by spec name.
pub fn service<'a>(snapshot: &'a Snapshot, name: &str) -> Option<&'a Service> {
    snapshot
        .services
        .iter()
        .map(|(_, s)| s)
        .find(|s| &**s.name() == name)
}

/// `(ip, port)` of every backend.
pub fn endpoints(service: &Service) -> Vec<(Ipv4Addr, u16)> {
    service.backends().iter().map(|b| (b.ip, b.port)).collect()
}

pub fn backend(service: &Service, ip: Ipv4Addr) -> &Backend {
    service.backends().iter().find(|b| b.ip == ip).unwrap()
}

pub fn ip(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}
