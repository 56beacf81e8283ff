//! The trace's result ([`TraceReport`], printed as JSON by `ferroplane trace -o json`) and how
//! one node's verdict ends the trace or hands the packet to the underlay.
//!
//! Invariants: `reason` is set exactly for `reject` (`"no endpoints"`, `"no service port"`, or what the node
//! generated) and `drop` (the `DropReason` name); `delivered_to` exactly for `delivered`;
//! `dnat` is the first Service translation on the way, `snat` the last source rewrite;
//! `policies` lists each policy that allowed or isolated the flow once, in the order met.

use std::net::Ipv4Addr;

use dataplane::packet::Verdict;
use dataplane::pipeline::TraceEvent;
use dataplane::snapshot::Snapshot;
use dataplane::tables::policy::PolicyVerdict;
use dataplane::tables::ports::PortKind;
use dataplane::tables::services::Frontend;
use dataplane::wire::{EthernetFrame, Ipv4Packet, ethernet};
use serde::Serialize;

use super::describe;

/// How the trace ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Handed to a pod or a host.
    Delivered,
    /// Sent out of the cluster through an uplink.
    Egress,
    /// Answered with a TCP RST or an ICMP error.
    Reject,
    /// Discarded.
    #[default]
    Drop,
}

/// An address and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryKind {
    Pod,
    Host,
}

/// Who received the packet: a pod (`namespace/name`) or a node's host stack (node name).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Delivery {
    pub kind: DeliveryKind,
    pub name: String,
}

/// The decisions of one node, one line each.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeStages {
    pub node: String,
    pub events: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TraceReport {
    pub verdict: Outcome,
    pub reason: Option<String>,
    pub dnat: Option<Endpoint>,
    pub snat: Option<Endpoint>,
    pub delivered_to: Option<Delivery>,
    /// The nodes crossed, in order.
    pub nodes: Vec<String>,
    pub policies: Vec<String>,
    pub stages: Vec<NodeStages>,
    /// What the trace did not cover (an IPv6 probe is followed through its first node only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The end of a trace.
pub(super) struct End {
    outcome: Outcome,
    reason: Option<String>,
    delivered_to: Option<Delivery>,
}

impl End {
    /// The drop or reject reason, if any.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    pub fn egress() -> End {
        End {
            outcome: Outcome::Egress,
            reason: None,
            delivered_to: None,
        }
    }

    pub fn drop(reason: &str) -> End {
        End {
            outcome: Outcome::Drop,
            reason: Some(reason.to_owned()),
            delivered_to: None,
        }
    }

    fn reject(reason: &str) -> End {
        End {
            outcome: Outcome::Reject,
            reason: Some(reason.to_owned()),
            delivered_to: None,
        }
    }

    fn delivered(kind: DeliveryKind, name: &str) -> End {
        End {
            outcome: Outcome::Delivered,
            reason: None,
            delivered_to: Some(Delivery {
                kind,
                name: name.to_owned(),
            }),
        }
    }
}

/// What happens after one node's verdict.
pub(super) enum Step {
    Done(End),
    /// Sent out of the uplink to this (outer) destination address.
    Uplink(Ipv4Addr),
}

/// Reads one node's events and verdict. `frame` is the packet as it left the node.
pub(super) fn conclude(
    snapshot: &Snapshot,
    events: &[TraceEvent],
    verdict: Verdict,
    frame: &[u8],
) -> Step {
    if events.contains(&TraceEvent::Rejected) {
        return Step::Done(End::reject(reject_reason(snapshot, events)));
    }
    if let Some(what) = events.iter().find_map(|e| match e {
        TraceEvent::Generated(what) => Some(*what),
        _ => None,
    }) {
        return Step::Done(End::reject(what));
    }
    let port = match verdict {
        Verdict::Tx(port) => port,
        Verdict::Drop(reason) => return Step::Done(End::drop(reason.name())),
        Verdict::Pending => return Step::Done(End::drop("pending")),
    };
    match snapshot.ports.kind(port) {
        Some(PortKind::Pod) => match snapshot.ports.pod_on(port) {
            Some(pod) => Step::Done(End::delivered(DeliveryKind::Pod, &pod.name)),
            None => Step::Done(End::drop("unattached_port")),
        },
        Some(PortKind::Host) => Step::Done(End::delivered(DeliveryKind::Host, &snapshot.node.name)),
        Some(PortKind::Uplink) => match outer_destination(frame) {
            Some(dst) => Step::Uplink(dst),
            None => Step::Done(End::egress()),
        },
        None => Step::Done(End::drop("unknown_port")),
    }
}

/// Why the node rejected the packet: a ClusterIP's unserved port or protocol, or a Service
/// port without a usable endpoint.
fn reject_reason(snapshot: &Snapshot, events: &[TraceEvent]) -> &'static str {
    let unserved = events.iter().any(|e| match e {
        TraceEvent::Parsed { key } => {
            snapshot.services.lookup(key.dst, key.dport, key.proto) == Frontend::VipOtherPort
        }
        _ => false,
    });
    if unserved {
        "no service port"
    } else {
        "no endpoints"
    }
}

/// The IPv4 destination of an Ethernet frame (the outer one for VXLAN).
fn outer_destination(frame: &[u8]) -> Option<Ipv4Addr> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != ethernet::ETHERTYPE_IPV4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(frame.get(eth.header_len()..)?).ok()?;
    Some(ip.dst_addr())
}

impl TraceReport {
    /// Adds one node's events.
    pub(super) fn record(&mut self, snapshot: &Snapshot, node: &str, events: &[TraceEvent]) {
        for event in events {
            match event {
                TraceEvent::Service { backend, .. } if self.dnat.is_none() => {
                    self.dnat = Some(Endpoint {
                        ip: backend.0,
                        port: backend.1,
                    });
                }
                TraceEvent::Snat { ip, port } => {
                    self.snat = Some(Endpoint {
                        ip: *ip,
                        port: *port,
                    });
                }
                TraceEvent::Policy { pod, verdict, .. } => {
                    let name = match verdict {
                        PolicyVerdict::NotIsolated => None,
                        PolicyVerdict::Allowed(id) | PolicyVerdict::Denied(Some(id)) => {
                            Some(describe::policy_name(snapshot, *id))
                        }
                        PolicyVerdict::Denied(None) => Some(describe::default_deny(snapshot, *pod)),
                    };
                    if let Some(name) = name.filter(|n| !self.policies.contains(n)) {
                        self.policies.push(name);
                    }
                }
                _ => {}
            }
        }
        self.stages.push(NodeStages {
            node: node.to_owned(),
            events: events
                .iter()
                .map(|e| describe::event(snapshot, e))
                .collect(),
        });
    }

    pub(super) fn finish(&mut self, end: End) {
        self.verdict = end.outcome;
        self.reason = end.reason;
        self.delivered_to = end.delivered_to;
    }

    /// The human summary: one line per stage decision, then the outcome.
    pub fn to_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .stages
            .iter()
            .flat_map(|stage| {
                stage
                    .events
                    .iter()
                    .map(move |event| format!("{}: {event}", stage.node))
            })
            .collect();
        let end = match (&self.verdict, &self.delivered_to, &self.reason) {
            (Outcome::Delivered, Some(to), _) => {
                let kind = match to.kind {
                    DeliveryKind::Pod => "pod",
                    DeliveryKind::Host => "the host of node",
                };
                format!("delivered to {kind} {}", to.name)
            }
            (Outcome::Egress, _, _) => "egress: leaves the cluster".to_owned(),
            (Outcome::Reject, _, reason) => {
                format!("rejected: {}", reason.as_deref().unwrap_or(""))
            }
            (_, _, reason) => format!("dropped: {}", reason.as_deref().unwrap_or("")),
        };
        lines.push(format!("=> {end} (nodes: {})", self.nodes.join(" -> ")));
        if let Some(dnat) = self.dnat {
            lines.push(format!("   dnat {}:{}", dnat.ip, dnat.port));
        }
        if let Some(snat) = self.snat {
            lines.push(format!("   snat {}:{}", snat.ip, snat.port));
        }
        if !self.policies.is_empty() {
            lines.push(format!("   policies: {}", self.policies.join(", ")));
        }
        if let Some(note) = &self.note {
            lines.push(format!("   note: {note}"));
        }
        lines
    }
}
