//! One NetworkPolicy compiled into the dataplane's rules: peers resolved once per policy,
//! ports compiled, named ports resolved per destination pod (user-needs K3, K4, K9).
//!
//! Invariants:
//! - Nothing is ever widened: a rule whose listed peers or ports all compile to nothing (an
//!   unreadable block, a named port no destination pod has) is dropped, never turned into
//!   an "any" rule.
//! - Both families: `ipBlock` keeps its family (`Peer::Block` / `Peer::Block6`) and a selector
//!   peer holds the selected pods' IPv4 and IPv6 addresses; the IPv6 path checks IPv6 traffic
//!   of a dual-stack pod against the same rules (keyed by the pod's IPv4 address).
//! - Ingress named ports depend on the destination, the local pod, so ingress rules are kept
//!   as [`RuleShape`]s and finished per pod; egress named ports are expanded into one rule per
//!   distinct (protocol, number) over the peer pods that define the name, so egress rules are
//!   final per policy.
//! - Protocol defaults to TCP (admission normalises case); a port without a number is the whole
//!   protocol; `endPort` makes a range.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use dataplane::cidr6::Cidr6;
use dataplane::flow::L4Proto;
use dataplane::tables::policy::{Block6, Peer, PodSet, PolicyId, PortRange, Rule};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::peers::{NetPod, Resolver};
use crate::compile::Problem;
use crate::compile::node::to_dp_cidr;
use crate::model::pod::named_container_port;
use crate::net::Cidr;

/// One `ports` entry before named ports are resolved.
#[derive(Clone, Debug)]
enum PortSpec {
    Range(PortRange),
    Named { proto: L4Proto, name: String },
}

/// A rule with its peers resolved and its ports compiled, named ports still by name.
#[derive(Clone, Debug)]
pub(super) struct RuleShape {
    peers: Vec<Peer>,
    ports: Vec<PortSpec>,
    /// The rule listed ports (so an empty result means "nothing", not "any").
    ports_listed: bool,
}

/// A policy as the local pods it selects see it.
#[derive(Clone, Debug)]
pub(super) struct PolicyRules {
    pub id: PolicyId,
    /// `None` when the policy does not isolate for ingress.
    pub ingress: Option<Vec<RuleShape>>,
    /// `None` when the policy does not isolate for egress.
    pub egress: Option<Vec<Rule>>,
}

/// The effective `policyTypes` (K1): as listed, or `Ingress` plus `Egress` when egress rules
/// exist.
fn policy_types(policy: &NetworkPolicy) -> (bool, bool) {
    let spec = policy.spec.as_ref();
    match spec.and_then(|s| s.policy_types.as_ref()) {
        Some(types) => (
            types.iter().any(|t| t == "Ingress"),
            types.iter().any(|t| t == "Egress"),
        ),
        None => (true, spec.is_some_and(|s| s.egress.is_some())),
    }
}

pub(super) fn compile_policy<'a>(
    policy: &NetworkPolicy,
    id: PolicyId,
    resolver: &mut Resolver<'a>,
    problems: &mut Vec<Problem>,
) -> PolicyRules {
    let namespace = policy.metadata.namespace.as_deref().unwrap_or_default();
    let object = format!(
        "NetworkPolicy {namespace}/{}",
        policy.metadata.name.as_deref().unwrap_or_default()
    );
    let mut problem = |message: String| problems.push(Problem::new(object.clone(), message));
    let (ingress_on, egress_on) = policy_types(policy);
    let spec = policy.spec.as_ref();
    let ingress = ingress_on.then(|| {
        spec.and_then(|s| s.ingress.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|rule| {
                let (peers, _) = peers(namespace, rule.from.as_deref(), resolver, &mut problem)?;
                Some(shape(peers, rule.ports.as_deref(), &mut problem))
            })
            .collect()
    });
    let egress = egress_on.then(|| {
        let mut rules = Vec::new();
        for rule in spec.and_then(|s| s.egress.as_ref()).into_iter().flatten() {
            let Some((peers, pods)) = peers(namespace, rule.to.as_deref(), resolver, &mut problem)
            else {
                continue;
            };
            let shape = shape(peers, rule.ports.as_deref(), &mut problem);
            let named = shape
                .ports
                .iter()
                .any(|p| matches!(p, PortSpec::Named { .. }));
            let destinations = match pods {
                Some(pods) => pods,
                None if named => resolver.all_pods().pods.to_vec(),
                None => Vec::new(),
            };
            egress_rules(shape, &destinations, id, &mut rules);
        }
        rules
    });
    PolicyRules {
        id,
        ingress,
        egress,
    }
}

/// Compiled peers and, when peers are listed, the pods they selected (`None`: no peers, any
/// destination). `None` overall when peers were listed but none can match.
#[allow(clippy::type_complexity)]
fn peers<'a>(
    namespace: &str,
    listed: Option<&[NetworkPolicyPeer]>,
    resolver: &mut Resolver<'a>,
    problem: &mut impl FnMut(String),
) -> Option<(Vec<Peer>, Option<Vec<NetPod<'a>>>)> {
    let Some(listed) = listed.filter(|l| !l.is_empty()) else {
        return Some((Vec::new(), None));
    };
    let mut compiled = Vec::new();
    let mut pods = Vec::new();
    for peer in listed {
        if let Some(block) = &peer.ip_block {
            if let Some(peer) = ip_block(&block.cidr, block.except.as_deref(), problem) {
                compiled.push(peer);
            }
        } else {
            let selected = resolver.select(
                namespace,
                peer.pod_selector.as_ref(),
                peer.namespace_selector.as_ref(),
            );
            pods.extend(selected.pods.iter().copied());
            compiled.push(Peer::Pods(selected.set));
        }
    }
    (!compiled.is_empty()).then_some((compiled, Some(pods)))
}

/// An `ipBlock` peer (K9) of either family: an IPv4 block matches IPv4 addresses only, an
/// IPv6 one IPv6 addresses only; an `except` entry of the other family excepts nothing.
fn ip_block(
    cidr: &str,
    except: Option<&[String]>,
    problem: &mut impl FnMut(String),
) -> Option<Peer> {
    let cidr = match Cidr::parse_lenient(cidr) {
        Ok(cidr) => cidr,
        Err(message) => {
            problem(format!("ipBlock: {message}; peer skipped"));
            return None;
        }
    };
    let mut holes = Vec::new();
    for text in except.unwrap_or_default() {
        match Cidr::parse_lenient(text) {
            Ok(hole) => holes.push(hole),
            Err(message) => {
                // An except that cannot be read must not widen the block: drop the peer.
                problem(format!("ipBlock.except: {message}; peer skipped"));
                return None;
            }
        }
    }
    if let Some(block) = to_dp_cidr(&cidr) {
        return Some(Peer::Block {
            cidr: block,
            except: holes.iter().filter_map(to_dp_cidr).collect(),
        });
    }
    Some(Block6::peer(
        to_cidr6(&cidr)?,
        holes.iter().filter_map(to_cidr6).collect(),
    ))
}

/// The IPv6 block `cidr` is, if it is one.
fn to_cidr6(cidr: &Cidr) -> Option<Cidr6> {
    match cidr.network() {
        IpAddr::V6(net) => Cidr6::new(net, cidr.prefix_len()).ok(),
        IpAddr::V4(_) => None,
    }
}

fn shape(
    peers: Vec<Peer>,
    ports: Option<&[NetworkPolicyPort]>,
    problem: &mut impl FnMut(String),
) -> RuleShape {
    let listed = ports.unwrap_or_default();
    RuleShape {
        peers,
        ports: listed
            .iter()
            .filter_map(|p| port_spec(p, problem))
            .collect(),
        ports_listed: !listed.is_empty(),
    }
}

fn port_spec(port: &NetworkPolicyPort, problem: &mut impl FnMut(String)) -> Option<PortSpec> {
    let proto = match port.protocol.as_deref().unwrap_or("TCP") {
        "TCP" => L4Proto::Tcp,
        "UDP" => L4Proto::Udp,
        "SCTP" => L4Proto::Sctp,
        other => {
            problem(format!(
                "ports: protocol {other} is not carried by this dataplane; the entry matches nothing"
            ));
            return None;
        }
    };
    let number = |n: i32| u16::try_from(n).ok();
    match &port.port {
        None => Some(PortSpec::Range(PortRange {
            proto: Some(proto),
            start: 0,
            end: u16::MAX,
        })),
        Some(IntOrString::Int(start)) => {
            let start = number(*start)?;
            let end = port.end_port.and_then(number).unwrap_or(start);
            Some(PortSpec::Range(PortRange {
                proto: Some(proto),
                start,
                end,
            }))
        }
        Some(IntOrString::String(name)) => Some(PortSpec::Named {
            proto,
            name: name.clone(),
        }),
    }
}

/// The ingress rules of `shapes` for the local pod `pod`: named ports resolved against its
/// container ports.
pub(super) fn ingress_rules_for(shapes: &[RuleShape], pod: &Pod, id: PolicyId) -> Vec<Rule> {
    shapes
        .iter()
        .filter_map(|shape| {
            let ports: Vec<PortRange> = shape
                .ports
                .iter()
                .filter_map(|spec| match spec {
                    PortSpec::Range(range) => Some(*range),
                    PortSpec::Named { proto, name } => {
                        let number = named_container_port(pod, name, proto_name(*proto))?;
                        Some(PortRange::single(*proto, u16::try_from(number).ok()?))
                    }
                })
                .collect();
            if shape.ports_listed && ports.is_empty() {
                return None;
            }
            Some(Rule {
                peers: shape.peers.clone(),
                ports,
                policy: id,
            })
        })
        .collect()
}

/// Final egress rules of one shape: numeric ports as one rule, each named port expanded over
/// the destination pods that define it.
fn egress_rules(shape: RuleShape, destinations: &[NetPod<'_>], id: PolicyId, out: &mut Vec<Rule>) {
    if !shape.ports_listed {
        out.push(Rule {
            peers: shape.peers,
            ports: Vec::new(),
            policy: id,
        });
        return;
    }
    let mut numeric = Vec::new();
    let mut by_number: BTreeMap<(L4Proto, u16), (Vec<Ipv4Addr>, Vec<Ipv6Addr>)> = BTreeMap::new();
    for spec in &shape.ports {
        match spec {
            PortSpec::Range(range) => numeric.push(*range),
            PortSpec::Named { proto, name } => {
                for destination in destinations {
                    let number = named_container_port(destination.pod, name, proto_name(*proto))
                        .and_then(|n| u16::try_from(n).ok());
                    if let Some(number) = number {
                        let (four, six) = by_number.entry((*proto, number)).or_default();
                        four.push(destination.ip);
                        six.extend(destination.ip6);
                    }
                }
            }
        }
    }
    if !numeric.is_empty() {
        out.push(Rule {
            peers: shape.peers,
            ports: numeric,
            policy: id,
        });
    }
    for ((proto, number), (four, six)) in by_number {
        let set: PodSet = four.into_iter().collect();
        out.push(Rule {
            peers: vec![Peer::Pods(Arc::new(set.with_ipv6(six)))],
            ports: vec![PortRange::single(proto, number)],
            policy: id,
        });
    }
}

fn proto_name(proto: L4Proto) -> &'static str {
    match proto {
        L4Proto::Tcp => "TCP",
        L4Proto::Udp => "UDP",
        L4Proto::Icmp => "ICMP",
        L4Proto::Sctp => "SCTP",
    }
}
