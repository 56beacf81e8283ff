//! The events of the live `/monitor` stream, in the manner of `cilium monitor`: drops of every
//! reason, with the policy behind a policy drop, and the NetworkPolicy verdicts on new flows of
//! isolated pods (allowed by which policy, denied by which). A worker builds them after each
//! round it traced, from the pipeline trace and what its ports did with the round's frames.
//!
//! Invariants:
//! - Every drop a worker counts in a traced round yields one `Drop` event: those the pipeline
//!   decided (its verdict), frames answered with ICMP frag-needed (`mtu_exceeded`, counted
//!   although the answer goes out), frames routed past the port table (`no_route`) or to a
//!   port with no device (`tx_ring_full`), and frames the device refused (`tx_ring_full`).
//!   The worker counts those last ones by number, so the refused frames are taken to be the
//!   last ones of the port's burst, which is what a full ring refuses.
//! - A `Policy` event is made for each verdict on an isolated pod, allowed or denied; a pod no
//!   policy isolates has no verdict to report.
//! - Building events reads the trace only: nothing here touches a worker's packets or tables.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::time::Duration;

use dataplane::drop::DropReason;
use dataplane::flow::FlowKey;
use dataplane::packet::{PortId, Verdict};
use dataplane::pipeline::TraceEvent;
use dataplane::tables::policy::{PolicyId, PolicyVerdict};

use super::ports::PortNames;

/// The trace note of a frame answered with ICMP frag-needed (its `mtu_exceeded` drop is
/// counted while the answer goes out).
const FRAG_NEEDED: &str = "icmp frag-needed";

/// One event of the monitor stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonitorEvent {
    /// Since the Unix epoch.
    pub at: Duration,
    pub worker: usize,
    /// The port the packet came in by; for a drop on transmit, the port it was to leave by.
    pub port: PortId,
    /// The 5-tuple as received, when the packet got as far as being parsed.
    pub key: Option<FlowKey>,
    pub kind: EventKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    Drop {
        reason: DropReason,
        /// Dropped when it was to leave by `port` (no device there, or the device refused).
        on_transmit: bool,
        /// The policy verdict that denied it, for policy drops.
        denied_by: Option<PolicyDecision>,
    },
    Policy(PolicyDecision),
}

/// A NetworkPolicy verdict on the first packet of a flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyDecision {
    /// The receiving pod's ingress rules, or else the sending pod's egress rules.
    pub ingress: bool,
    /// The pod whose rules decided.
    pub pod: Ipv4Addr,
    pub allowed: bool,
    /// The allowing policy, or one of the isolating ones for a denial (`namespace/name`);
    /// `None` for a denial by the legacy `DefaultDeny` namespace annotation.
    pub policy: Option<String>,
}

impl MonitorEvent {
    pub fn is_drop(&self) -> bool {
        matches!(self.kind, EventKind::Drop { .. })
    }

    /// The event as a line of `ferroplane monitor`.
    pub fn line(&self, names: &PortNames) -> String {
        let secs = self.at.as_secs();
        let millis = self.at.subsec_millis();
        let port = names
            .label(self.port)
            .map_or_else(|| format!("port {}", self.port.0), |l| l.name.clone());
        let flow = self.key.map_or_else(
            || "(not parsed)".to_owned(),
            |k| {
                let proto = k.proto.name();
                format!("{proto} {}:{} -> {}:{}", k.src, k.sport, k.dst, k.dport)
            },
        );
        let worker = self.worker;
        match &self.kind {
            EventKind::Drop {
                reason,
                on_transmit,
                denied_by,
            } => {
                let way = if *on_transmit { "to" } else { "from" };
                let reason = reason.name();
                let mut line = format!(
                    "{secs}.{millis:03} xx drop ({reason}) flow {flow} {way} {port} worker {worker}"
                );
                if let Some(decision) = denied_by {
                    let _ = write!(line, " policy-pod {}", decision.pod);
                    if let Some(policy) = &decision.policy {
                        let _ = write!(line, " policy {policy}");
                    }
                }
                line
            }
            EventKind::Policy(decision) => {
                let direction = if decision.ingress {
                    "ingress"
                } else {
                    "egress"
                };
                let action = if decision.allowed { "allow" } else { "deny" };
                let policy = decision
                    .policy
                    .as_deref()
                    .unwrap_or("(namespace DefaultDeny annotation)");
                let pod = decision.pod;
                format!(
                    "{secs}.{millis:03} policy-verdict {direction} {action} flow {flow} \
                     from {port} worker {worker} policy-pod {pod} policy {policy}"
                )
            }
        }
    }
}

/// One round of a worker as the monitor sees it.
pub struct Round<'a> {
    pub worker: usize,
    pub at: Duration,
    /// By port number: `None` where no device is attached, else how many of the frames
    /// given to the device this round it refused.
    pub ports: &'a [Option<usize>],
}

/// The events of one round's trace (whole packets, `Received` to `Verdict`).
pub fn round_events(
    round: &Round<'_>,
    trace: &[TraceEvent],
    policy_name: impl Fn(PolicyId) -> Option<String>,
) -> Vec<MonitorEvent> {
    let refused_from = first_refused(round, trace);
    let mut sent_to = vec![0usize; round.ports.len()];
    let mut events = Vec::new();
    let mut packet: Option<(PortId, Option<FlowKey>, Option<PolicyDecision>)> = None;
    let event = |port, key, kind| MonitorEvent {
        at: round.at,
        worker: round.worker,
        port,
        key,
        kind,
    };
    for trace_event in trace {
        if let TraceEvent::Received { port, .. } = trace_event {
            packet = Some((*port, None, None));
            continue;
        }
        let Some((port, key, denied_by)) = packet.as_mut() else {
            continue;
        };
        match trace_event {
            TraceEvent::Parsed { key: parsed } => *key = Some(*parsed),
            TraceEvent::Policy {
                ingress,
                pod,
                verdict,
            } => {
                let (allowed, policy) = match verdict {
                    PolicyVerdict::NotIsolated => continue,
                    PolicyVerdict::Allowed(id) => (true, policy_name(*id)),
                    PolicyVerdict::Denied(id) => (false, id.and_then(&policy_name)),
                };
                let decision = PolicyDecision {
                    ingress: *ingress,
                    pod: *pod,
                    allowed,
                    policy,
                };
                if !allowed {
                    *denied_by = Some(decision.clone());
                }
                events.push(event(*port, *key, EventKind::Policy(decision)));
            }
            TraceEvent::Generated(FRAG_NEEDED) => {
                let kind = EventKind::Drop {
                    reason: DropReason::MtuExceeded,
                    on_transmit: false,
                    denied_by: None,
                };
                events.push(event(*port, *key, kind));
            }
            TraceEvent::Verdict(verdict) => {
                let dropped = match *verdict {
                    Verdict::Drop(reason) => Some((*port, reason, false)),
                    Verdict::Tx(out) => {
                        let index = usize::from(out.0);
                        let reason = match round.ports.get(index) {
                            None => Some(DropReason::NoRoute),
                            Some(None) => Some(DropReason::TxRingFull),
                            Some(Some(_)) => {
                                let nth = sent_to[index];
                                sent_to[index] += 1;
                                (nth >= refused_from[index]).then_some(DropReason::TxRingFull)
                            }
                        };
                        reason.map(|reason| (out, reason, true))
                    }
                    Verdict::Pending => None,
                };
                if let Some((at_port, reason, on_transmit)) = dropped {
                    let kind = EventKind::Drop {
                        reason,
                        on_transmit,
                        denied_by: denied_by.take(),
                    };
                    events.push(event(at_port, *key, kind));
                }
                packet = None;
            }
            _ => {}
        }
    }
    events
}

/// By port: the index, among the round's frames sent to that port, of the first one the
/// device refused (the last `refused` frames).
fn first_refused(round: &Round<'_>, trace: &[TraceEvent]) -> Vec<usize> {
    let mut offered = vec![0usize; round.ports.len()];
    for trace_event in trace {
        if let TraceEvent::Verdict(Verdict::Tx(port)) = trace_event
            && let Some(count) = offered.get_mut(usize::from(port.0))
        {
            *count += 1;
        }
    }
    offered
        .iter()
        .zip(round.ports)
        .map(|(&offered, refused)| offered.saturating_sub(refused.unwrap_or(0)))
        .collect()
}

#[cfg(test)]
mod tests;
