//! Hostile traffic through the whole pipeline, on real frames (security review H1, H2, M2, L2
//! and the NAT tuple clash): SYN floods past the table's capacity, blind RSTs, bogus flags,
//! floods of unroutable packets, and one client port reused through two Services.

mod common;

use std::net::Ipv4Addr;

use common::frames::{self, L4, seen, vxlan};
use common::*;
use dataplane::drop::DropReason;
use dataplane::packet::Verdict;
use dataplane::pipeline::Pipeline;
use dataplane::tables::conntrack::{Conntrack, ConntrackConfig, FlowLimits, FlowState};
use dataplane::tables::node::OverlayMode;

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;
/// store-np's ClusterIP: TCP 80 -> the same backend as VIP_STORE (10.244.2.20:8080).
const VIP_STORE_NP: &str = "10.96.0.101";

fn harness(ct: Conntrack) -> Harness {
    let (_, aff) = tables(16);
    let mut pipe = Pipeline::new(std::sync::Arc::new(ct), aff, 7);
    pipe.begin_batch(1000);
    Harness {
        snap: snapshot(OverlayMode::Vxlan),
        pipe,
    }
}

fn harness_with_capacity(capacity: usize) -> Harness {
    harness(Conntrack::new(ConntrackConfig {
        capacity,
        ..ConntrackConfig::default()
    }))
}

/// A TCP segment from the client pod.
fn from_client(h: &Harness, dst: &str, sport: u16, seq: u32, ack: u32, flags: u8) -> Vec<u8> {
    let l4 = L4::Tcp {
        sport,
        dport: 80,
        seq,
        ack,
        flags,
    };
    frames::ipv4(
        CLIENT_MAC,
        h.snap.node.gateway_mac,
        ip(CLIENT_IP),
        ip(dst),
        64,
        true,
        l4,
        b"hello",
    )
}

/// A TCP segment from the remote backend 10.244.2.20:8080 to `dport` of `dst`, over VXLAN.
fn from_backend(h: &Harness, dst: Ipv4Addr, dport: u16, seq: u32, ack: u32, flags: u8) -> Vec<u8> {
    let l4 = L4::Tcp {
        sport: 8080,
        dport,
        seq,
        ack,
        flags,
    };
    let inner = frames::ipv4(
        NODE_B_VTEP_MAC,
        h.snap.node.vtep_mac,
        ip(REMOTE_BE),
        dst,
        63,
        true,
        l4,
        b"",
    );
    vxlan(
        NODE_B_UPLINK_MAC,
        h.snap.node.uplink_mac,
        ip(NODE_B),
        ip(NODE_A),
        8472,
        1,
        &inner,
    )
}

/// An external client's SYN to the NodePort.
fn external_syn(h: &Harness, src: Ipv4Addr, sport: u16) -> Vec<u8> {
    let l4 = L4::Syn {
        sport,
        dport: NODE_PORT,
        seq: 1,
    };
    frames::ipv4(
        ROUTER_MAC,
        h.snap.node.uplink_mac,
        src,
        ip(NODE_A),
        60,
        true,
        l4,
        b"",
    )
}

/// Client ISN 100, server ISN 5000; the client's ACK carries 5 bytes.
fn establish(h: &mut Harness, sport: u16) {
    h.expect_tx(
        CLIENT,
        &from_client(h, VIP_STORE, sport, 100, 0, SYN),
        UPLINK,
    );
    let syn_ack = from_backend(h, ip(CLIENT_IP), sport, 5000, 101, SYN | ACK);
    h.expect_tx(UPLINK, &syn_ack, CLIENT);
    h.expect_tx(
        CLIENT,
        &from_client(h, VIP_STORE, sport, 101, 5001, ACK),
        UPLINK,
    );
}

/// The time of the checks (the flows are made at 1000).
const NOW: u32 = 1100;

fn state_of(h: &Harness, sport: u16) -> Option<FlowState> {
    let mut found = None;
    h.pipe.conntrack().for_each(NOW, |v| {
        if v.original.src == ip(CLIENT_IP) && v.original.sport == sport {
            found = Some(v.state);
        }
    });
    found
}

fn random_source(i: u32) -> Ipv4Addr {
    // 11.0.0.0/8 and up: outside every fixture CIDR.
    Ipv4Addr::from(0x0b00_0000 + (i.wrapping_mul(2_654_435_761) >> 8))
}

#[test]
fn a_syn_flood_at_ten_times_capacity_leaves_every_established_flow_alive() {
    let capacity = 1024;
    let mut h = harness_with_capacity(capacity);
    for i in 0..100 {
        establish(&mut h, 41_000 + i);
    }
    h.pipe.begin_batch(NOW);
    let (mut sent, mut refused) = (0u64, 0u64);
    for i in 0..(10 * capacity as u32) {
        let f = external_syn(&h, random_source(i), 1024 + (i % 50_000) as u16);
        match h.run(UPLINK, &f).0 {
            Verdict::Tx(UPLINK) => sent += 1,
            Verdict::Drop(DropReason::CtTableFull) => refused += 1,
            other => panic!("flood SYN {i}: {other:?}"),
        }
    }
    for i in 0..100 {
        let sport = 41_000 + i;
        let data = from_client(&h, VIP_STORE, sport, 106, 5001, ACK);
        h.expect_tx(CLIENT, &data, UPLINK);
        assert_eq!(state_of(&h, sport), Some(FlowState::Established));
    }
    let stats = h.pipe.conntrack().stats();
    let evicted = |s: FlowState| stats.evictions_by_state[s.index()];
    assert_eq!(evicted(FlowState::Established), 0, "{stats:?}");
    assert!(
        evicted(FlowState::SynSent) >= sent - capacity as u64,
        "{stats:?}"
    );
    assert_eq!(h.pipe.drops.get(DropReason::CtTableFull), refused);
    assert_eq!(stats.insert_failed, refused);
    assert_eq!(h.pipe.drops.get(DropReason::CtInvalid), 0);
}

#[test]
fn blind_rsts_are_dropped_and_the_flow_goes_on() {
    let mut h = harness_with_capacity(1024);
    let sport = 42_000;
    establish(&mut h, sport);
    h.pipe.begin_batch(NOW);
    let client = ip(CLIENT_IP);
    // Out of window, from either side.
    let blind = from_backend(&h, client, sport, 999_999_999, 0, RST);
    assert_eq!(
        h.run(UPLINK, &blind).0,
        Verdict::Drop(DropReason::TcpRstOutOfWindow)
    );
    let blind = from_client(&h, VIP_STORE, sport, 3_000_000_000, 0, RST);
    assert_eq!(
        h.run(CLIENT, &blind).0,
        Verdict::Drop(DropReason::TcpRstOutOfWindow)
    );
    assert_eq!(state_of(&h, sport), Some(FlowState::Established));
    h.expect_tx(
        CLIENT,
        &from_client(&h, VIP_STORE, sport, 106, 5001, ACK),
        UPLINK,
    );

    // In the window but not exact: passed to the client (which answers a challenge ACK),
    // the flow keeps its state.
    let near = from_backend(&h, client, sport, 15_001, 0, RST | ACK);
    h.expect_tx(UPLINK, &near, CLIENT);
    assert_eq!(state_of(&h, sport), Some(FlowState::Established));

    // A SYN on the established flow follows its entry: no new flow, no new backend.
    let new_flows = h.pipe.stats.new_flows;
    let out = h.expect_tx(
        CLIENT,
        &from_client(&h, VIP_STORE, sport, 77, 0, SYN),
        UPLINK,
    );
    assert_eq!(h.pipe.stats.new_flows, new_flows);
    let inner = seen(&out[50..]);
    assert_eq!((inner.dst, inner.dport), (ip(REMOTE_BE), 8080));
    assert_eq!(state_of(&h, sport), Some(FlowState::Established));

    // A new flow's SYN sets its first mark: a blind RST in SYN_SENT in the client's name is
    // judged already.
    let young = 42_001;
    h.expect_tx(
        CLIENT,
        &from_client(&h, VIP_STORE, young, 100, 0, SYN),
        UPLINK,
    );
    let blind = from_client(&h, VIP_STORE, young, 2_000_000_000, 0, RST);
    assert_eq!(
        h.run(CLIENT, &blind).0,
        Verdict::Drop(DropReason::TcpRstOutOfWindow)
    );
    assert_eq!(state_of(&h, young), Some(FlowState::SynSent));

    // The exact RST (seq = what the client acknowledged) closes the flow.
    let exact = from_backend(&h, client, sport, 5001, 0, RST);
    h.expect_tx(UPLINK, &exact, CLIENT);
    assert_eq!(state_of(&h, sport), Some(FlowState::Close));
}

#[test]
fn bogus_first_segments_are_dropped_and_leave_no_entry() {
    let mut h = harness_with_capacity(1024);
    for (i, flags) in [SYN | FIN, SYN | RST, 0, SYN | FIN | ACK]
        .into_iter()
        .enumerate()
    {
        let f = from_client(&h, VIP_STORE, 43_000 + i as u16, 1, 0, flags);
        assert_eq!(
            h.run(CLIENT, &f).0,
            Verdict::Drop(DropReason::TcpInvalidFlags),
            "flags {flags:#x}"
        );
    }
    assert_eq!(h.pipe.conntrack().len(), 0);
    // A bogus segment on a tracked flow is dropped the same way.
    establish(&mut h, 43_100);
    let f = from_client(&h, VIP_STORE, 43_100, 106, 5001, SYN | FIN);
    assert_eq!(
        h.run(CLIENT, &f).0,
        Verdict::Drop(DropReason::TcpInvalidFlags)
    );
    assert_eq!(h.pipe.drops.get(DropReason::TcpInvalidFlags), 5);
}

fn unroutable(h: &Harness, i: u32) -> Vec<u8> {
    frames::ipv4(
        ROUTER_MAC,
        h.snap.node.uplink_mac,
        random_source(i),
        Ipv4Addr::from(0x0800_0000 + i),
        60,
        true,
        L4::Udp {
            sport: 1000,
            dport: 53,
        },
        b"x",
    )
}

#[test]
fn packets_that_are_dropped_leave_no_entry() {
    let mut h = harness_with_capacity(4096);
    for i in 0..2000 {
        assert_eq!(
            h.run(UPLINK, &unroutable(&h, i)).0,
            Verdict::Drop(DropReason::NoRoute)
        );
    }
    let stats = h.pipe.conntrack().stats();
    assert_eq!(h.pipe.conntrack().len(), 0, "{stats:?}");
    assert_eq!(stats.retracted, 2000);
}

#[test]
fn packets_that_are_dropped_evict_nothing_from_a_full_table() {
    let capacity = 64;
    let mut h = harness_with_capacity(capacity);
    for i in 0..capacity as u16 {
        let f = from_client(&h, VIP_STORE, 44_000 + i, 1, 0, SYN);
        h.expect_tx(CLIENT, &f, UPLINK);
    }
    assert_eq!(h.pipe.conntrack().len(), capacity);
    for i in 0..500 {
        assert_eq!(
            h.run(UPLINK, &unroutable(&h, i)).0,
            Verdict::Drop(DropReason::NoRoute)
        );
    }
    let stats = h.pipe.conntrack().stats();
    assert_eq!(
        (stats.entries, stats.evictions),
        (capacity as u64, 0),
        "{stats:?}"
    );
    // A packet that does leave still gets its place, by eviction.
    let f = from_client(&h, VIP_STORE, 45_500, 1, 0, SYN);
    h.expect_tx(CLIENT, &f, UPLINK);
    assert_eq!(h.pipe.conntrack().stats().evictions, 1);
}

#[test]
fn a_client_port_reused_through_another_service_to_the_same_backend_is_remapped() {
    let mut h = harness_with_capacity(1024);
    let sport = 46_000;
    // First connection through VIP_STORE, still tracked (any state: SYN_SENT here, TIME_WAIT
    // in the review's repro).
    let first = h.expect_tx(
        CLIENT,
        &from_client(&h, VIP_STORE, sport, 100, 0, SYN),
        UPLINK,
    );
    let inner = seen(&first[50..]);
    assert_eq!((inner.sport, inner.dst), (sport, ip(REMOTE_BE)));
    // The same client port through the other Service: same backend, same reply tuple.
    let second = h.expect_tx(
        CLIENT,
        &from_client(&h, VIP_STORE_NP, sport, 900, 0, SYN),
        UPLINK,
    );
    let inner = seen(&second[50..]);
    assert_eq!(
        (inner.src, inner.dst, inner.dport),
        (ip(CLIENT_IP), ip(REMOTE_BE), 8080)
    );
    assert_ne!(inner.sport, sport, "source port remapped");
    let (lo, hi) = h.snap.node.snat_ports;
    assert!((lo..=hi).contains(&inner.sport));
    // Each reply finds its own flow and goes back from the right Service.
    let back = h.expect_tx(
        UPLINK,
        &from_backend(&h, ip(CLIENT_IP), inner.sport, 7000, 901, SYN | ACK),
        CLIENT,
    );
    let b = seen(&back);
    assert_eq!((b.src, b.sport, b.dport), (ip(VIP_STORE_NP), 80, sport));
    let back = h.expect_tx(
        UPLINK,
        &from_backend(&h, ip(CLIENT_IP), sport, 8000, 101, SYN | ACK),
        CLIENT,
    );
    let b = seen(&back);
    assert_eq!((b.src, b.sport, b.dport), (ip(VIP_STORE), 80, sport));
    assert_eq!(h.pipe.drops.total(), 0);
}

#[test]
fn one_source_cannot_hold_more_unreplied_flows_than_its_limit() {
    let mut h = harness(Conntrack::new(ConntrackConfig {
        capacity: 4096,
        limits: FlowLimits {
            unreplied_per_source: 10,
            unreplied_per_destination: 0,
        },
        ..ConntrackConfig::default()
    }));
    let attacker = ip("198.18.0.1");
    for i in 0..10 {
        h.expect_tx(UPLINK, &external_syn(&h, attacker, 2000 + i), UPLINK);
    }
    assert_eq!(
        h.run(UPLINK, &external_syn(&h, attacker, 2010)).0,
        Verdict::Drop(DropReason::CtSourceLimit)
    );
    // Others are not affected.
    h.expect_tx(UPLINK, &external_syn(&h, ip("198.18.0.2"), 2000), UPLINK);
    assert_eq!(h.pipe.conntrack().stats().limited_source, 1);
}
