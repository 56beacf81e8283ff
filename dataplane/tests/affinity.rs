//! ClientIP session affinity and Maglev through the whole pipeline (user-needs E1, E2, D11).

mod common;

use std::collections::HashSet;

use common::frames::{self, L4, seen};
use common::*;
use dataplane::tables::node::OverlayMode;
use dataplane::tables::services::{Backend, Scheduler, ServiceTable};

fn harness(scheduler: Scheduler, affinity: Option<u32>) -> Harness {
    let mut h = Harness::new();
    let mut specs = services();
    let svc = specs
        .iter_mut()
        .find(|s| &*s.name == "default/store-be:http")
        .expect("fixture has store-be");
    svc.backends = (0..10)
        .map(|i| Backend {
            ip: ip(&format!("10.244.2.{}", 40 + i)),
            port: 8080,
            node_local: false,
            serving: true,
            terminating: false,
            pod: None,
        })
        .collect();
    svc.scheduler = scheduler;
    svc.affinity_timeout = affinity;
    let mut snap = snapshot(OverlayMode::Vxlan);
    snap.services = std::sync::Arc::new(
        ServiceTable::build(specs, &snap.node.node_port_addresses, 251).expect("services"),
    );
    h.snap = snap;
    h
}

/// The backend the SYN from `sport` was sent to.
fn backend_for(h: &mut Harness, sport: u16) -> std::net::Ipv4Addr {
    let gw = h.snap.node.gateway_mac;
    let f = frames::ipv4(
        CLIENT_MAC,
        gw,
        ip(CLIENT_IP),
        ip(VIP_STORE),
        64,
        true,
        L4::Syn {
            sport,
            dport: 80,
            seq: 1,
        },
        b"",
    );
    let out = h.expect_tx(CLIENT, &f, UPLINK);
    seen(&seen(&out).payload[8..]).dst
}

#[test]
fn client_ip_affinity_pins_every_connection_until_the_timeout() {
    let mut h = harness(Scheduler::Random, Some(60));
    let first = backend_for(&mut h, 1000);
    for sport in 1001..1040 {
        assert_eq!(backend_for(&mut h, sport), first, "pinned to one backend");
    }
    // Each time the pin times out, the next connection picks afresh and pins again:
    // over ten idle periods the pin must move (all ten equal has odds 1e-9).
    let mut pins = HashSet::new();
    for period in 1..=10u16 {
        h.pipe.begin_batch(1000 + u32::from(period) * 61);
        let pinned = backend_for(&mut h, 2000 + period * 10);
        assert_eq!(backend_for(&mut h, 2001 + period * 10), pinned);
        pins.insert(pinned);
    }
    assert!(pins.len() > 1, "the pin never expired: {pins:?}");
}

#[test]
fn without_affinity_random_spreads_over_all_backends() {
    let mut h = harness(Scheduler::Random, None);
    let spread: HashSet<_> = (3000..3400)
        .map(|sport| backend_for(&mut h, sport))
        .collect();
    assert_eq!(spread.len(), 10, "all 10 backends get connections");
}

#[test]
fn maglev_picks_the_same_backend_for_a_flow_on_every_node() {
    // Two independent pipelines (two nodes, empty conntrack each) agree on every flow.
    let mut a = harness(Scheduler::Maglev, None);
    let mut b = harness(Scheduler::Maglev, None);
    let mut spread = HashSet::new();
    for sport in 4000..4100 {
        let x = backend_for(&mut a, sport);
        assert_eq!(x, backend_for(&mut b, sport), "flow {sport}");
        spread.insert(x);
    }
    assert!(spread.len() >= 8, "Maglev still spreads flows: {spread:?}");
}
