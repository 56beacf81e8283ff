//! Monitor events from hand-written round traces: one drop event per counted drop, policy
//! verdicts named, transmit drops put on the port they were to leave by.

use dataplane::tables::ports::PortKind;

use super::*;
use dataplane::flow::L4Proto;

const AT: Duration = Duration::from_secs(1_700_000_000);

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, 0, last)
}

fn key(sport: u16) -> FlowKey {
    FlowKey::new(L4Proto::Tcp, ip(2), sport, ip(3), 8080)
}

fn received(port: u16, sport: u16) -> [TraceEvent; 2] {
    [
        TraceEvent::Received {
            port: PortId(port),
            kind: Some(PortKind::Pod),
        },
        TraceEvent::Parsed { key: key(sport) },
    ]
}

fn name(id: PolicyId) -> Option<String> {
    ["default/allow-web", "default/deny-all"]
        .get(id as usize)
        .map(|n| (*n).to_owned())
}

fn events(ports: &[Option<usize>], trace: &[TraceEvent]) -> Vec<MonitorEvent> {
    let round = Round {
        worker: 1,
        at: AT,
        ports,
    };
    round_events(&round, trace, name)
}

fn drop_event(port: u16, sport: u16, reason: DropReason, on_transmit: bool) -> MonitorEvent {
    MonitorEvent {
        at: AT,
        worker: 1,
        port: PortId(port),
        key: Some(key(sport)),
        kind: EventKind::Drop {
            reason,
            on_transmit,
            denied_by: None,
        },
    }
}

#[test]
fn policy_verdicts_name_the_policy_and_a_denial_names_it_on_the_drop() {
    let mut trace = Vec::new();
    trace.extend(received(2, 1000));
    trace.push(TraceEvent::Policy {
        ingress: true,
        pod: ip(3),
        verdict: PolicyVerdict::Allowed(0),
    });
    trace.push(TraceEvent::Verdict(Verdict::Tx(PortId(3))));
    trace.extend(received(2, 1001));
    trace.push(TraceEvent::Policy {
        ingress: false,
        pod: ip(2),
        verdict: PolicyVerdict::NotIsolated,
    });
    trace.push(TraceEvent::Policy {
        ingress: true,
        pod: ip(3),
        verdict: PolicyVerdict::Denied(Some(1)),
    });
    trace.push(TraceEvent::Verdict(Verdict::Drop(
        DropReason::PolicyIngressDenied,
    )));
    trace.extend(received(2, 1002));
    trace.push(TraceEvent::Policy {
        ingress: false,
        pod: ip(2),
        verdict: PolicyVerdict::Denied(None),
    });
    trace.push(TraceEvent::Verdict(Verdict::Drop(
        DropReason::PolicyEgressDenied,
    )));
    let allowed = PolicyDecision {
        ingress: true,
        pod: ip(3),
        allowed: true,
        policy: Some("default/allow-web".to_owned()),
    };
    let denied = PolicyDecision {
        ingress: true,
        pod: ip(3),
        allowed: false,
        policy: Some("default/deny-all".to_owned()),
    };
    let annotation = PolicyDecision {
        ingress: false,
        pod: ip(2),
        allowed: false,
        policy: None,
    };
    let policy = |sport, decision: &PolicyDecision| MonitorEvent {
        at: AT,
        worker: 1,
        port: PortId(2),
        key: Some(key(sport)),
        kind: EventKind::Policy(decision.clone()),
    };
    let denied_drop = |sport, reason, decision: &PolicyDecision| MonitorEvent {
        kind: EventKind::Drop {
            reason,
            on_transmit: false,
            denied_by: Some(decision.clone()),
        },
        ..drop_event(2, sport, reason, false)
    };
    assert_eq!(
        events(&[Some(0), Some(0), Some(0), Some(0)], &trace),
        vec![
            policy(1000, &allowed),
            policy(1001, &denied),
            denied_drop(1001, DropReason::PolicyIngressDenied, &denied),
            policy(1002, &annotation),
            denied_drop(1002, DropReason::PolicyEgressDenied, &annotation),
        ]
    );
}

#[test]
fn transmit_drops_are_no_route_past_the_ports_and_tx_ring_full_on_a_missing_or_full_device() {
    let mut trace = Vec::new();
    // Ports 0..4: 2 has no device; 3 refused one of the three frames it was given.
    for (sport, out) in [(1, 9), (2, 2), (3, 3), (4, 3), (5, 3), (6, 1)] {
        trace.extend(received(1, sport));
        trace.push(TraceEvent::Verdict(Verdict::Tx(PortId(out))));
    }
    assert_eq!(
        events(&[Some(0), Some(0), None, Some(1)], &trace),
        vec![
            drop_event(9, 1, DropReason::NoRoute, true),
            drop_event(2, 2, DropReason::TxRingFull, true),
            drop_event(3, 5, DropReason::TxRingFull, true),
        ]
    );
}

#[test]
fn pipeline_drops_and_frag_needed_answers_are_drops_where_the_packet_came_in() {
    let mut trace = vec![TraceEvent::Verdict(Verdict::Drop(DropReason::Malformed))];
    trace.extend(received(0, 7));
    trace.push(TraceEvent::Verdict(Verdict::Drop(DropReason::NoRoute)));
    trace.extend(received(2, 8));
    trace.push(TraceEvent::Generated("icmp frag-needed"));
    trace.push(TraceEvent::Verdict(Verdict::Tx(PortId(2))));
    trace.extend(received(2, 9));
    trace.push(TraceEvent::Generated("tcp rst"));
    trace.push(TraceEvent::Verdict(Verdict::Tx(PortId(2))));
    assert_eq!(
        events(&[Some(0), Some(0), Some(0)], &trace),
        vec![
            drop_event(0, 7, DropReason::NoRoute, false),
            drop_event(2, 8, DropReason::MtuExceeded, false),
        ],
        "an event outside a packet is ignored; a generated reset is no drop"
    );
    let unparsed = [
        TraceEvent::Received {
            port: PortId(1),
            kind: None,
        },
        TraceEvent::Verdict(Verdict::Drop(DropReason::Malformed)),
    ];
    let event = &events(&[Some(0), Some(0)], &unparsed)[0];
    assert_eq!((event.key, event.port), (None, PortId(1)));
}

#[test]
fn lines_name_reason_or_verdict_flow_port_and_policy() {
    let mut names = PortNames::default();
    names.0.insert(
        2,
        crate::node::ports::PortLabel {
            name: "default/web".to_owned(),
            interface: "fp0123456789".to_owned(),
        },
    );
    let decision = PolicyDecision {
        ingress: true,
        pod: ip(3),
        allowed: false,
        policy: Some("default/deny-all".to_owned()),
    };
    let event = MonitorEvent {
        at: Duration::new(1_700_000_000, 5_000_000),
        worker: 0,
        port: PortId(2),
        key: Some(FlowKey::new(L4Proto::Udp, ip(2), 1000, ip(3), 53)),
        kind: EventKind::Drop {
            reason: DropReason::PolicyIngressDenied,
            on_transmit: false,
            denied_by: Some(decision.clone()),
        },
    };
    assert_eq!(
        event.line(&names),
        "1700000000.005 xx drop (policy_ingress_denied) flow udp 10.244.0.2:1000 -> \
         10.244.0.3:53 from default/web worker 0 policy-pod 10.244.0.3 policy default/deny-all"
    );
    let refused = MonitorEvent {
        port: PortId(7),
        kind: EventKind::Drop {
            reason: DropReason::TxRingFull,
            on_transmit: true,
            denied_by: None,
        },
        ..event.clone()
    };
    assert_eq!(
        refused.line(&names),
        "1700000000.005 xx drop (tx_ring_full) flow udp 10.244.0.2:1000 -> 10.244.0.3:53 \
         to port 7 worker 0"
    );
    let allowed = MonitorEvent {
        kind: EventKind::Policy(PolicyDecision {
            allowed: true,
            policy: Some("default/allow-dns".to_owned()),
            ..decision.clone()
        }),
        ..event.clone()
    };
    assert_eq!(
        allowed.line(&names),
        "1700000000.005 policy-verdict ingress allow flow udp 10.244.0.2:1000 -> 10.244.0.3:53 \
         from default/web worker 0 policy-pod 10.244.0.3 policy default/allow-dns"
    );
    let annotation = MonitorEvent {
        kind: EventKind::Policy(PolicyDecision {
            ingress: false,
            policy: None,
            ..decision
        }),
        key: None,
        ..event
    };
    assert_eq!(
        annotation.line(&names),
        "1700000000.005 policy-verdict egress deny flow (not parsed) from default/web worker 0 \
         policy-pod 10.244.0.3 policy (namespace DefaultDeny annotation)"
    );
}
