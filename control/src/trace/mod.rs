//! `ferroplane trace`: a synthetic first packet run through the real pipeline of every node it
//! crosses, offline, from the cluster state.
//!
//! Each node's snapshot is compiled from the state ([`crate::compile`], sequential ports) with
//! that node's own node-local settings when the caller has them (`trace --node-config`: the
//! node's `node.yaml` resolved exactly as `ferroplane run` resolves it, so nodePortAddresses,
//! masquerade exemptions, externalIPs and SNAT ports are the node's), else the defaults, and
//! gets a fresh conntrack. The packet enters its first node
//! from a pod's port (source MAC the pod's, destination the gateway's), the host port (a source
//! equal to the node's IP) or the uplink (anything else: an external client). Whenever a node
//! sends it out of its uplink towards another node (VXLAN to that node's IP, a plain packet to
//! its IP, or in routed mode to its podCIDR), the underlay delivers it to that node's uplink and
//! the trace goes on, until it is delivered to a pod or a host, leaves the cluster, is rejected
//! or dropped.
//!
//! Invariants: the pipeline code is the workers' own (`Pipeline::process`), with tracing on;
//! a trace never crosses more than [`MAX_HOPS`] nodes; the result depends only on the state
//! and the request (backend choice uses a fixed seed).

mod describe;
mod frame;
mod ipv6;
mod node_settings;
mod outcome;

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;

use dataplane::cidr::Cidr;
use dataplane::flow::L4Proto;
use dataplane::packet::{Packet, PortId};
use dataplane::pipeline::Pipeline;
use dataplane::snapshot::Snapshot;
use dataplane::tables::affinity::AffinityTable;
use dataplane::tables::conntrack::{Conntrack, ConntrackConfig, Now};
use dataplane::wire::EthernetFrame;
use k8s_openapi::api::core::v1::Pod;

use crate::compile::host_ports::PodHostPort;
use crate::compile::node::node_ip;
use crate::compile::ports::{is_host_network, pod_network_ip};
use crate::compile::{HOST_PORT, NodeLocal, PortAssignments, UPLINK_PORT, compile};
use crate::model::{node as node_model, pod};
use crate::state::ClusterState;
use frame::{Probe, first_packet};
pub use ipv6::{Source6, TraceRequest6, trace_ipv6};
pub use node_settings::node_locals;
pub use outcome::{Delivery, DeliveryKind, Endpoint, NodeStages, Outcome, TraceReport};

/// Source port of the probe when the request names none.
pub const DEFAULT_SOURCE_PORT: u16 = 40000;
/// The most nodes one trace crosses.
pub const MAX_HOPS: usize = 8;
/// The pipeline's clock during a trace (any value works: every table starts empty).
const NOW: Now = 1000;
/// Seed of the pipelines' randomness (backend and SNAT port choice).
const SEED: u64 = 0x7472_6163_6500_0001;

/// Where the traced packet comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A pod, by namespace and name.
    Pod { namespace: String, name: String },
    /// An address: a pod's or a node's IP, or an external client.
    Address { ip: Ipv4Addr, port: Option<u16> },
}

/// What to trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceRequest {
    pub source: Source,
    pub dst: Ipv4Addr,
    /// Ignored for ICMP.
    pub dport: u16,
    pub proto: L4Proto,
    /// The node an external client's packet enters at.
    pub node: Option<String>,
}

/// A node as the trace runs it.
struct Simulated {
    snapshot: Snapshot,
    pipeline: Pipeline,
}

/// Where each node is, from the state: by underlay IP and by podCIDR.
struct NodeIndex {
    /// Every InternalIP / ExternalIP of each node.
    by_ip: HashMap<Ipv4Addr, String>,
    /// Each node's underlay IP (its first InternalIP).
    primary: HashMap<String, Ipv4Addr>,
    by_cidr: Vec<(Cidr, String)>,
}

impl NodeIndex {
    fn new(state: &ClusterState) -> NodeIndex {
        let mut index = NodeIndex {
            by_ip: HashMap::new(),
            primary: HashMap::new(),
            by_cidr: Vec::new(),
        };
        for node in state.nodes() {
            let name = node.metadata.name.clone().unwrap_or_default();
            if let Some(ip) = node_ip(node) {
                index.by_ip.insert(ip, name.clone());
                index.primary.insert(name.clone(), ip);
                for other in crate::compile::node::other_addresses(node, ip) {
                    index.by_ip.entry(other).or_insert_with(|| name.clone());
                }
            }
            let cidr = node_model::pod_cidr(node);
            if let Some(cidr) = cidr.as_ref().and_then(crate::compile::node::to_dp_cidr) {
                index.by_cidr.push((cidr, name));
            }
        }
        index
    }

    /// The node a packet leaving an uplink towards `dst` reaches, if any.
    fn reached_by(&self, dst: Ipv4Addr) -> Option<&str> {
        self.by_ip.get(&dst).map(String::as_str).or_else(|| {
            self.by_cidr
                .iter()
                .find(|(cidr, _)| cidr.contains(dst))
                .map(|(_, name)| name.as_str())
        })
    }
}

/// The nodes compiled so far, each with its own pipeline and conntrack.
struct Nodes<'a> {
    state: &'a ClusterState,
    /// Node-local settings by node name; a node not listed gets the defaults.
    locals: &'a BTreeMap<String, NodeLocal>,
    compiled: BTreeMap<String, Simulated>,
    /// The pods' hostPorts, by node (what the nodes recorded from the CNI plugin).
    host_ports: &'a HostPorts,
}

/// Pods' hostPorts by node name.
pub type HostPorts = BTreeMap<String, Vec<PodHostPort>>;

impl Nodes<'_> {
    fn get(&mut self, name: &str) -> Result<&mut Simulated, String> {
        if !self.compiled.contains_key(name) {
            let mut ports = PortAssignments::sequential(self.state, name);
            for host_port in self.host_ports.get(name).into_iter().flatten() {
                ports.host_port(host_port.clone());
            }
            let default = NodeLocal::default();
            let local = self.locals.get(name).unwrap_or(&default);
            let compiled = compile(self.state, name, local, &ports)
                .map_err(|e| format!("cannot compile {e}"))?;
            let ct = Conntrack::new(ConntrackConfig {
                capacity: 1024,
                ..ConntrackConfig::default()
            });
            let mut pipeline = Pipeline::new(Arc::new(ct), Arc::new(AffinityTable::new(64)), SEED);
            pipeline.enable_trace();
            pipeline.begin_batch(NOW);
            self.compiled.insert(
                name.to_owned(),
                Simulated {
                    snapshot: compiled.snapshot,
                    pipeline,
                },
            );
        }
        self.compiled
            .get_mut(name)
            .ok_or_else(|| format!("node {name} vanished"))
    }
}

/// How the probe enters its first node.
enum Entry {
    Pod,
    Host,
    Uplink,
}

/// The first node, how the packet enters it, its source address and port.
type Start = (String, Entry, Ipv4Addr, u16);

fn entry(state: &ClusterState, index: &NodeIndex, request: &TraceRequest) -> Result<Start, String> {
    match &request.source {
        Source::Pod { namespace, name } => {
            let pod = state
                .pod(namespace, name)
                .ok_or_else(|| format!("pod {namespace}/{name} not found"))?;
            pod_entry(pod, index, DEFAULT_SOURCE_PORT)
        }
        Source::Address { ip, port } => {
            let port = port.unwrap_or(DEFAULT_SOURCE_PORT);
            if let Some(pod) = state.pods().find(|p| pod_network_ip(p) == Some(*ip)) {
                return pod_entry(pod, index, port);
            }
            match (request.node.as_ref(), index.by_ip.get(ip)) {
                (None, Some(owner)) => Ok((owner.clone(), Entry::Host, *ip, port)),
                (Some(node), Some(owner)) if node == owner => {
                    Ok((node.clone(), Entry::Host, *ip, port))
                }
                (Some(node), _) => Ok((node.clone(), Entry::Uplink, *ip, port)),
                (None, None) => Err(format!(
                    "{ip} is neither a pod nor a node: give --node, the node where the packet enters"
                )),
            }
        }
    }
}

/// A pod's packets enter at its port, or at the host port for a hostNetwork pod.
fn pod_entry(pod: &Pod, index: &NodeIndex, port: u16) -> Result<Start, String> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let node = pod::node_name(pod).ok_or_else(|| format!("pod {name} is not bound to a node"))?;
    if is_host_network(pod) {
        let ip = index
            .primary
            .get(node)
            .copied()
            .ok_or_else(|| format!("node {node} has no IPv4 InternalIP"))?;
        return Ok((node.to_owned(), Entry::Host, ip, port));
    }
    let ip = pod_network_ip(pod)
        .ok_or_else(|| format!("pod {name} has no IPv4 address or has finished"))?;
    Ok((node.to_owned(), Entry::Pod, ip, port))
}

/// Runs the trace with every node on the default node-local settings.
pub fn trace(state: &ClusterState, request: &TraceRequest) -> Result<TraceReport, String> {
    trace_with(state, request, &BTreeMap::new(), &HostPorts::new())
}

/// Runs the trace; `locals` holds the node-local settings of the nodes whose configuration
/// is known (by node name), the others get the defaults; `host_ports` the pods' hostPorts
/// each node recorded from the CNI plugin, programmed as the nodes program them.
pub fn trace_with(
    state: &ClusterState,
    request: &TraceRequest,
    locals: &BTreeMap<String, NodeLocal>,
    host_ports: &HostPorts,
) -> Result<TraceReport, String> {
    let index = NodeIndex::new(state);
    let (mut node, entry, src, sport) = entry(state, &index, request)?;
    let mut nodes = Nodes {
        state,
        locals,
        compiled: BTreeMap::new(),
        host_ports,
    };
    let first = nodes.get(&node)?;
    let config = &first.snapshot.node;
    let (in_port, src_mac, dst_mac) = match entry {
        Entry::Pod => {
            let pod = first
                .snapshot
                .ports
                .pod(src)
                .ok_or_else(|| format!("pod {src} has no port on {node}"))?;
            (pod.port, pod.mac, config.gateway_mac)
        }
        Entry::Host => (HOST_PORT, config.host_mac, config.gateway_mac),
        Entry::Uplink => (UPLINK_PORT, config.uplink_next_hop_mac, config.uplink_mac),
    };
    let mut frame = first_packet(&Probe {
        src_mac,
        dst_mac,
        proto: request.proto,
        src,
        sport,
        dst: request.dst,
        dport: request.dport,
    });
    let mut in_port: PortId = in_port;
    let mut report = TraceReport::default();
    for _ in 0..MAX_HOPS {
        let sim = nodes.get(&node)?;
        if in_port == UPLINK_PORT {
            EthernetFrame::new_unchecked(&mut frame[..]).set_dst_addr(sim.snapshot.node.uplink_mac);
        }
        let mut packet =
            Packet::from_frame(&frame).ok_or("the probe does not fit a packet buffer")?;
        packet.meta.in_port = in_port;
        let verdict = sim.pipeline.process(&sim.snapshot, &mut packet);
        let events = sim.pipeline.take_trace();
        report.nodes.push(node.clone());
        report.record(&sim.snapshot, &node, &events);
        match outcome::conclude(&sim.snapshot, &events, verdict, packet.data()) {
            outcome::Step::Done(end) => {
                report.finish(end);
                return Ok(report);
            }
            outcome::Step::Uplink(dst) => match index.reached_by(dst) {
                Some(next) if next != node => {
                    frame = packet.data().to_vec();
                    EthernetFrame::new_unchecked(&mut frame[..])
                        .set_src_addr(sim.snapshot.node.uplink_next_hop_mac);
                    node = next.to_owned();
                    in_port = UPLINK_PORT;
                }
                _ => {
                    report.finish(outcome::End::egress());
                    return Ok(report);
                }
            },
        }
    }
    report.finish(outcome::End::drop("trace_hop_limit"));
    Ok(report)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_matrix;
#[cfg(test)]
mod tests_node_settings;
#[cfg(test)]
mod tests_service_cidr;
#[cfg(test)]
mod tests_topology;
