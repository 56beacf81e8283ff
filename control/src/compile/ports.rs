//! The node's ports: uplink (`PortId(0)`), host (`PortId(1)`) and one per local pod, with the
//! port each pod is attached to taken from [`PortAssignments`] (which the node process owns,
//! since it creates the pod interfaces).
//!
//! A local pod is a Pod bound to this node, with an IPv4 `status.podIP`, not finished and not
//! hostNetwork (a hostNetwork pod shares the host port). Invariants of the table: each pod IP
//! and each pod port belongs to at most one pod (ties go to the first pod in namespace/name
//! order, the others are reported); pods without an assigned port are left out.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use dataplane::packet::PortId;
use dataplane::tables::ports::{LocalPod, PortKind, PortTable};
use k8s_openapi::api::core::v1::Pod;

use super::Problem;
use super::node::{pod_mac, to_v4};
use crate::model::pod;
use crate::state::ClusterState;

/// The uplink port of every node.
pub const UPLINK_PORT: PortId = PortId(0);
/// The host port of every node.
pub const HOST_PORT: PortId = PortId(1);
/// The first port a pod may be attached to.
pub const FIRST_POD_PORT: u16 = 2;

/// Which port each local pod is attached to, by `namespace/name`; with the IPs of pods the
/// node knows only from the CNI plugin (not yet in the state) and the pods' hostPorts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortAssignments {
    by_pod: BTreeMap<String, PortId>,
    attached_ips: BTreeMap<String, Ipv4Addr>,
    host_ports: Vec<super::host_ports::PodHostPort>,
}

impl PortAssignments {
    pub fn new() -> PortAssignments {
        PortAssignments::default()
    }

    /// Attaches the pod `namespace/name` to `port` (replacing an earlier assignment).
    pub fn assign(&mut self, pod: &str, port: PortId) {
        self.by_pod.insert(pod.to_owned(), port);
    }

    pub fn port_of(&self, pod: &str) -> Option<PortId> {
        self.by_pod.get(pod).copied()
    }

    /// Lists the pod `namespace/name` at `ip` when the state does not list it (yet): the CNI
    /// plugin attached it before the API server knew its address.
    pub fn attached_ip(&mut self, pod: &str, ip: Ipv4Addr) {
        self.attached_ips.insert(pod.to_owned(), ip);
    }

    /// Pods the state may not list, with their IPs.
    pub fn attached_ips(&self) -> &BTreeMap<String, Ipv4Addr> {
        &self.attached_ips
    }

    /// Adds a hostPort of a local pod (DNAT on the node's addresses to the pod).
    pub fn host_port(&mut self, host_port: super::host_ports::PodHostPort) {
        self.host_ports.push(host_port);
    }

    pub fn host_ports(&self) -> &[super::host_ports::PodHostPort] {
        &self.host_ports
    }

    /// Every assignment, in pod name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, PortId)> {
        self.by_pod.iter().map(|(pod, port)| (pod.as_str(), *port))
    }

    /// Ports 2, 3, ... for the node's local pods in namespace/name order: for offline use
    /// (`trace`), where no real interfaces exist. Not stable across pod additions.
    pub fn sequential(state: &ClusterState, node: &str) -> PortAssignments {
        let mut assignments = PortAssignments::new();
        for (port, (key, _, _)) in (FIRST_POD_PORT..).zip(local_pods(state, node)) {
            assignments.assign(&key, PortId(port));
        }
        assignments
    }
}

/// `namespace/name` of a pod.
pub fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Whether the pod runs in the host's network namespace.
pub fn is_host_network(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.host_network) == Some(true)
}

/// The pod's IPv4 address if it is a live pod with its own network namespace: what policy
/// selectors and the port table consider (hostNetwork pods never match selectors, K8).
pub fn pod_network_ip(pod: &Pod) -> Option<Ipv4Addr> {
    if pod::is_terminal(pod) || is_host_network(pod) {
        return None;
    }
    pod::pod_ip(pod).and_then(to_v4)
}

/// The pod's IP if it is a local pod of `node`.
pub fn local_ip(pod: &Pod, node: &str) -> Option<Ipv4Addr> {
    (pod::node_name(pod) == Some(node))
        .then(|| pod_network_ip(pod))
        .flatten()
}

/// The node's local pods with their key and IP, in namespace/name order (from the state's
/// pods-by-node index: no scan of every Pod).
pub fn local_pods<'a, 'n>(
    state: &'a ClusterState,
    node: &'n str,
) -> impl Iterator<Item = (String, &'a Pod, Ipv4Addr)> + use<'a, 'n> {
    state.pods_on_node(node).filter_map(move |p| {
        let ip = local_ip(p, node)?;
        Some((pod_key(p), p, ip))
    })
}

/// The port table for the node's local pods (`namespace/name` -> IP, as [`local_pods`] lists
/// them).
pub(super) fn port_table(
    local: &BTreeMap<String, Ipv4Addr>,
    assignments: &PortAssignments,
    problems: &mut Vec<Problem>,
) -> PortTable {
    let mut pods = Vec::new();
    let mut ips = HashSet::new();
    let mut ports: BTreeSet<u16> = BTreeSet::new();
    for (key, &ip) in local {
        let Some(port) = assignments.port_of(key) else {
            continue;
        };
        let object = format!("Pod {key}");
        if port.0 < FIRST_POD_PORT {
            problems.push(Problem::new(
                object,
                format!(
                    "assigned port {} is reserved for the uplink or host",
                    port.0
                ),
            ));
        } else if ports.contains(&port.0) {
            problems.push(Problem::new(
                object,
                format!("port {} is already attached to another pod", port.0),
            ));
        } else if !ips.insert(ip) {
            problems.push(Problem::new(
                object,
                format!("pod IP {ip} is already held by another local pod; left out"),
            ));
        } else {
            ports.insert(port.0);
            pods.push(LocalPod {
                name: Arc::from(key.as_str()),
                ip,
                mac: pod_mac(ip),
                port,
            });
        }
    }
    let port_count = ports
        .last()
        .map_or(usize::from(FIRST_POD_PORT), |&p| usize::from(p) + 1);
    let mut kinds = vec![PortKind::Pod; port_count];
    kinds[usize::from(UPLINK_PORT.0)] = PortKind::Uplink;
    kinds[usize::from(HOST_PORT.0)] = PortKind::Host;
    PortTable::new(kinds, pods)
}
