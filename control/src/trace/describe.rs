//! Human-readable lines for the pipeline's trace events, with names looked up in the node's
//! snapshot (pods, Services, policies, peer nodes).

use std::net::Ipv4Addr;

use dataplane::flow::{Dir, FlowKey, L4Proto};
use dataplane::packet::{PortId, Verdict};
use dataplane::pipeline::{RouteTarget, TraceEvent};
use dataplane::snapshot::Snapshot;
use dataplane::tables::policy::PolicyVerdict;
use dataplane::tables::ports::PortKind;
use dataplane::tables::services::FrontendKind;

/// `tcp 10.244.0.2:40000 -> 10.96.0.10:80` (ICMP: the echo identifier instead of ports).
pub fn flow(key: &FlowKey) -> String {
    match key.proto {
        L4Proto::Icmp => format!("icmp {} -> {} id {}", key.src, key.dst, key.sport),
        proto => format!(
            "{} {}:{} -> {}:{}",
            proto.name(),
            key.src,
            key.sport,
            key.dst,
            key.dport
        ),
    }
}

/// `port 3 (pod default/web)`, `port 0 (uplink)`.
pub fn port(snapshot: &Snapshot, port: PortId) -> String {
    match snapshot.ports.kind(port) {
        Some(PortKind::Uplink) => format!("port {} (uplink)", port.0),
        Some(PortKind::Host) => format!("port {} (host)", port.0),
        Some(PortKind::Pod) => match snapshot.ports.pod_on(port) {
            Some(pod) => format!("port {} (pod {})", port.0, pod.name),
            None => format!("port {} (pod port, unattached)", port.0),
        },
        None => format!("port {} (unknown)", port.0),
    }
}

/// An address with what it is, when the snapshot knows: a local pod or a peer node.
fn address(snapshot: &Snapshot, ip: Ipv4Addr) -> String {
    if let Some(pod) = snapshot.ports.pod(ip) {
        format!("{ip} (pod {})", pod.name)
    } else if let Some(node) = snapshot.routes.peer(ip) {
        format!("{ip} (node {})", node.name)
    } else if ip == snapshot.node.node_ip {
        format!("{ip} (node {})", snapshot.node.name)
    } else {
        ip.to_string()
    }
}

fn frontend_kind(kind: FrontendKind) -> &'static str {
    match kind {
        FrontendKind::ClusterIp => "ClusterIP",
        FrontendKind::ExternalIp => "externalIP",
        FrontendKind::LoadBalancer => "LoadBalancer IP",
        FrontendKind::NodePort => "NodePort",
    }
}

/// The name of a policy id in this snapshot.
pub fn policy_name(snapshot: &Snapshot, id: u32) -> String {
    snapshot
        .policy
        .policy_name(id)
        .map_or_else(|| format!("policy #{id}"), str::to_owned)
}

/// What isolates a pod when no named policy does: its namespace's DefaultDeny annotation.
pub fn default_deny(snapshot: &Snapshot, pod: Ipv4Addr) -> String {
    let namespace = snapshot
        .ports
        .pod(pod)
        .and_then(|p| p.name.split_once('/').map(|(ns, _)| ns.to_owned()))
        .unwrap_or_default();
    format!("DefaultDeny(namespace {namespace})")
}

fn policy(snapshot: &Snapshot, ingress: bool, pod: Ipv4Addr, verdict: PolicyVerdict) -> String {
    let direction = if ingress { "ingress to" } else { "egress from" };
    let outcome = match verdict {
        PolicyVerdict::NotIsolated => "not isolated: allowed".to_owned(),
        PolicyVerdict::Allowed(id) => format!("allowed by {}", policy_name(snapshot, id)),
        PolicyVerdict::Denied(Some(id)) => {
            format!("denied: isolated by {}", policy_name(snapshot, id))
        }
        PolicyVerdict::Denied(None) => {
            format!("denied: isolated by {}", default_deny(snapshot, pod))
        }
    };
    format!("policy {direction} {}: {outcome}", address(snapshot, pod))
}

fn service(snapshot: &Snapshot, id: u32, kind: FrontendKind, backend: (Ipv4Addr, u16)) -> String {
    let Some(service) = snapshot.services.service(id) else {
        return format!("service #{id} -> backend {}:{}", backend.0, backend.1);
    };
    let pod = service
        .backends()
        .iter()
        .find(|b| (b.ip, b.port) == backend)
        .and_then(|b| b.pod.as_deref())
        .map(|p| format!(" (pod {p})"))
        .unwrap_or_default();
    format!(
        "service {} via {}: dnat to backend {}:{}{pod}",
        service.name(),
        frontend_kind(kind),
        backend.0,
        backend.1
    )
}

fn route(snapshot: &Snapshot, target: RouteTarget) -> String {
    match target {
        RouteTarget::Pod(ip) | RouteTarget::Node(ip) => {
            format!("route to {}", address(snapshot, ip))
        }
        RouteTarget::Host => "route to the host".to_owned(),
        RouteTarget::Uplink => "route to the uplink (leaves the cluster)".to_owned(),
    }
}

pub fn verdict(snapshot: &Snapshot, verdict: Verdict) -> String {
    match verdict {
        Verdict::Tx(out) => format!("verdict: transmit on {}", port(snapshot, out)),
        Verdict::Drop(reason) => format!("verdict: drop ({})", reason.name()),
        Verdict::Pending => "verdict: pending".to_owned(),
    }
}

/// One line for one event.
pub fn event(snapshot: &Snapshot, event: &TraceEvent) -> String {
    match event {
        TraceEvent::Received { port: p, .. } => format!("received on {}", port(snapshot, *p)),
        TraceEvent::Decapsulated { from } => {
            format!("vxlan decapsulated from {}", address(snapshot, *from))
        }
        TraceEvent::Parsed { key } => format!("flow {}", flow(key)),
        TraceEvent::ConntrackHit { dir, xlate } => {
            let dir = match dir {
                Dir::Original => "original",
                Dir::Reply => "reply",
            };
            format!("conntrack hit ({dir} direction): becomes {}", flow(xlate))
        }
        TraceEvent::ConntrackNew {
            original,
            reply,
            raced,
        } => {
            let raced = if *raced {
                " (lost an insert race, adopted the winner)"
            } else {
                ""
            };
            format!(
                "conntrack new flow {}, reply expected as {}{raced}",
                flow(original),
                flow(reply)
            )
        }
        TraceEvent::Untracked => "untracked: node traffic needs no NAT or policy".to_owned(),
        TraceEvent::IcmpRelated { tracked } => {
            format!("icmp error, related to a tracked flow: {tracked}")
        }
        TraceEvent::Service { id, kind, backend } => service(snapshot, *id, *kind, *backend),
        TraceEvent::Rejected => {
            "rejected: the Service has no usable endpoints (TCP RST / ICMP port unreachable)"
                .to_owned()
        }
        TraceEvent::Policy {
            ingress,
            pod,
            verdict,
        } => policy(snapshot, *ingress, *pod, *verdict),
        TraceEvent::Snat { ip, port } => format!("snat: source becomes {ip}:{port}"),
        TraceEvent::Generated(what) => format!("generated {what}"),
        TraceEvent::Route(target) => route(snapshot, *target),
        TraceEvent::Encapsulated { to } => {
            format!("vxlan encapsulated to {}", address(snapshot, *to))
        }
        TraceEvent::Verdict(v) => verdict(snapshot, *v),
    }
}
