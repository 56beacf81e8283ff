//! NetworkPolicy changes re-evaluate established flows (security review M5): a deny applied
//! to a live flow cuts it at its next packet, in both directions, as `policy_revoked`; an
//! allow that comes back resumes it; an unchanged policy table costs no re-check.

mod common;

use std::sync::Arc;

use common::frames::{self, L4};
use common::*;
use dataplane::drop::DropReason;
use dataplane::flow::L4Proto;
use dataplane::packet::Verdict;
use dataplane::pipeline::TraceEvent;
use dataplane::tables::policy::{Peer, PodRules, PodSet, PolicyTable, PortRange, Rule};

/// store-db isolated for ingress with no rule at all: nothing may reach it.
fn db_denies_everything() -> PolicyTable {
    let mut b = PolicyTable::builder();
    let id = b.add_policy("default/deny-all");
    b.set_pod(
        ip(DB_IP),
        PodRules {
            ingress: Some(vec![]),
            egress: None,
            ingress_isolated_by: vec![id],
            egress_isolated_by: vec![],
        },
    );
    b.build()
}

/// client isolated for egress, allowed only to `peer`:`port` over `proto`.
fn client_egress_only_to(proto: L4Proto, peer: &str, port: u16) -> PolicyTable {
    let mut b = PolicyTable::builder();
    let id = b.add_policy("default/client-egress");
    let peers: PodSet = [ip(peer)].into_iter().collect();
    b.set_pod(
        ip(CLIENT_IP),
        PodRules {
            ingress: None,
            egress: Some(vec![Rule {
                peers: vec![Peer::Pods(Arc::new(peers))],
                ports: vec![PortRange::single(proto, port)],
                policy: id,
            }]),
            ingress_isolated_by: vec![],
            egress_isolated_by: vec![id],
        },
    );
    b.build()
}

fn tcp(h: &Harness, src_mac: dataplane::wire::MacAddr, src: &str, dst: &str, l4: L4) -> Vec<u8> {
    frames::ipv4(
        src_mac,
        h.snap.node.gateway_mac,
        ip(src),
        ip(dst),
        64,
        true,
        l4,
        b"data",
    )
}

/// store-be-1 -> store-db:6379, handshake done under the fixture's policy (which allows it).
fn established_be_to_db(h: &mut Harness) -> (Vec<u8>, Vec<u8>) {
    let syn = tcp(
        h,
        BE1_MAC,
        BE1_IP,
        DB_IP,
        L4::Syn {
            sport: 45000,
            dport: 6379,
            seq: 1,
        },
    );
    h.expect_tx(BE1, &syn, DB);
    let syn_ack = tcp(
        h,
        DB_MAC,
        DB_IP,
        BE1_IP,
        L4::SynAck {
            sport: 6379,
            dport: 45000,
            seq: 100,
            ack: 2,
        },
    );
    h.expect_tx(DB, &syn_ack, BE1);
    let ack = tcp(
        h,
        BE1_MAC,
        BE1_IP,
        DB_IP,
        L4::Ack {
            sport: 45000,
            dport: 6379,
            seq: 2,
            ack: 101,
        },
    );
    h.expect_tx(BE1, &ack, DB);
    let back = tcp(
        h,
        DB_MAC,
        DB_IP,
        BE1_IP,
        L4::Ack {
            sport: 6379,
            dport: 45000,
            seq: 101,
            ack: 6,
        },
    );
    h.expect_tx(DB, &back, BE1);
    (ack, back)
}

#[test]
fn a_deny_applied_to_a_live_flow_cuts_it_at_the_next_packet() {
    let mut h = Harness::new();
    let (ack, back) = established_be_to_db(&mut h);
    let allowing = Arc::clone(&h.snap.policy);

    h.snap.policy = Arc::new(db_denies_everything());
    assert_eq!(h.run(BE1, &ack).0, Verdict::Drop(DropReason::PolicyRevoked));
    assert_eq!(
        h.run(DB, &back).0,
        Verdict::Drop(DropReason::PolicyRevoked),
        "the reply direction is cut too"
    );
    assert_eq!(
        h.run(BE1, &ack).0,
        Verdict::Drop(DropReason::PolicyRevoked),
        "and stays cut"
    );
    assert_eq!(h.pipe.drops.get(DropReason::PolicyRevoked), 3);
    assert_eq!(
        h.pipe.conntrack().len(),
        1,
        "the entry stays (an allow may come back)"
    );

    // The earlier table allows it again: the flow resumes where it was.
    h.snap.policy = allowing;
    h.expect_tx(BE1, &ack, DB);
    h.expect_tx(DB, &back, BE1);
}

#[test]
fn a_rebuilt_policy_that_still_allows_the_flow_checks_it_once() {
    let mut h = Harness::new();
    let (ack, _) = established_be_to_db(&mut h);
    h.snap.policy = Arc::new(policy());
    h.pipe.enable_trace();
    h.expect_tx(BE1, &ack, DB);
    let checks = |trace: &[TraceEvent]| {
        trace
            .iter()
            .filter(|e| matches!(e, TraceEvent::Policy { .. }))
            .count()
    };
    assert_eq!(
        checks(&h.pipe.take_trace()),
        2,
        "re-checked under the new table (store-be-1's egress, store-db's ingress)"
    );
    h.expect_tx(BE1, &ack, DB);
    assert_eq!(checks(&h.pipe.take_trace()), 0, "once per flow per table");
}

#[test]
fn egress_is_re_checked_on_the_post_dnat_destination() {
    let mut h = Harness::new();
    let query = frames::ipv4(
        CLIENT_MAC,
        h.snap.node.gateway_mac,
        ip(CLIENT_IP),
        ip(VIP_DNS),
        64,
        true,
        L4::Udp {
            sport: 46000,
            dport: 53,
        },
        b"q",
    );
    h.expect_tx(CLIENT, &query, UPLINK);
    // Allowed to the backend behind the VIP (not to the VIP itself): the flow goes on.
    h.snap.policy = Arc::new(client_egress_only_to(L4Proto::Udp, REMOTE_DNS, 5353));
    h.expect_tx(CLIENT, &query, UPLINK);
    // Allowed elsewhere only: cut.
    h.snap.policy = Arc::new(client_egress_only_to(L4Proto::Udp, REMOTE_DNS, 53));
    assert_eq!(
        h.run(CLIENT, &query).0,
        Verdict::Drop(DropReason::PolicyRevoked)
    );
}

#[test]
fn node_started_flows_are_never_cut_by_ingress_policy() {
    let mut h = Harness::new();
    let host_mac = h.snap.node.host_mac;
    let datagram = frames::ipv4(
        host_mac,
        h.snap.node.gateway_mac,
        ip(NODE_A),
        ip(DB_IP),
        64,
        true,
        L4::Udp {
            sport: 47000,
            dport: 8080,
        },
        b"",
    );
    h.expect_tx(HOST, &datagram, DB);
    h.snap.policy = Arc::new(db_denies_everything());
    h.expect_tx(HOST, &datagram, DB);
}
