//! The IPv6 conntrack table: directions, rewrites, collisions, capacity and expiry.
#![allow(clippy::unwrap_used, reason = "tests: literals")]

use std::net::Ipv6Addr;

use super::*;

fn ip(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn tuple(src: &str, dst: &str, sport: u16, dport: u16, proto: u8) -> Tuple6 {
    Tuple6 {
        src: ip(src),
        dst: ip(dst),
        sport,
        dport,
        proto,
    }
}

const CLIENT: &str = "fd00:10:244:1::a";
const SERVICE: &str = "fd00:10:96::10";
const BACKEND: &str = "fd00:10:244:2::7";

/// A client -> ClusterIP:80 flow DNATed to backend:8080.
fn dnat_flow() -> (Tuple6, Tuple6) {
    let original = tuple(CLIENT, SERVICE, 40000, 80, PROTO_TCP);
    let reply = tuple(BACKEND, CLIENT, 8080, 40000, PROTO_TCP);
    (original, reply)
}

#[test]
fn dnat_flow_rewrites_both_directions() {
    let mut ct = Conntrack6::new(8);
    let (original, reply) = dnat_flow();
    let flow = ct.insert(original, reply, 100).unwrap();
    let fwd = ct.lookup(&original, 101).unwrap();
    assert_eq!(fwd.flow, flow);
    assert_eq!(fwd.dir, Dir6::Original);
    assert_eq!(
        fwd.rewrite_to,
        tuple(CLIENT, BACKEND, 40000, 8080, PROTO_TCP)
    );
    let back = ct.lookup(&reply, 102).unwrap();
    assert_eq!(back.dir, Dir6::Reply);
    assert_eq!(
        back.rewrite_to,
        tuple(SERVICE, CLIENT, 80, 40000, PROTO_TCP)
    );
}

#[test]
fn untranslated_flow_rewrites_to_itself() {
    let mut ct = Conntrack6::new(4);
    let original = tuple(CLIENT, BACKEND, 7, 7, PROTO_ICMPV6);
    ct.insert(original, original.inverse(), 0).unwrap();
    assert_eq!(ct.lookup(&original, 1).unwrap().rewrite_to, original);
    let reply = original.inverse();
    assert_eq!(ct.lookup(&reply, 1).unwrap().rewrite_to, reply);
}

#[test]
fn colliding_tuples_are_refused_and_change_nothing() {
    let mut ct = Conntrack6::new(8);
    let (original, reply) = dnat_flow();
    ct.insert(original, reply, 0).unwrap();
    assert_eq!(ct.insert(original, reply, 0), Err(Insert6Error::Exists));
    // A second client flow that would need the same reply tuple.
    let other = tuple("fd00:10:244:1::b", SERVICE, 40000, 80, PROTO_TCP);
    assert_eq!(ct.insert(other, reply, 0), Err(Insert6Error::ReplyTaken));
    assert_eq!(ct.len(), 1);
    assert!(ct.lookup(&other, 0).is_none());
    let sctp = tuple(CLIENT, BACKEND, 1, 2, 132);
    assert_eq!(
        ct.insert(sctp, sctp.inverse(), 0),
        Err(Insert6Error::Untracked)
    );
}

#[test]
fn full_table_refuses_until_a_flow_ends() {
    let mut ct = Conntrack6::new(2);
    let flow = |n: u16| tuple(CLIENT, BACKEND, n, 53, PROTO_UDP);
    let a = ct.insert(flow(1), flow(1).inverse(), 0).unwrap();
    ct.insert(flow(2), flow(2).inverse(), 0).unwrap();
    assert_eq!(
        ct.insert(flow(3), flow(3).inverse(), 0),
        Err(Insert6Error::Full)
    );
    assert!(ct.remove(a));
    assert!(!ct.remove(a));
    assert!(ct.lookup(&flow(1).inverse(), 0).is_none());
    ct.insert(flow(3), flow(3).inverse(), 0).unwrap();
    assert_eq!(ct.len(), 2);
}

#[test]
fn unreplied_flows_expire_sooner_than_replied_ones() {
    let mut ct = Conntrack6::new(4);
    let udp = |n: u16| tuple(CLIENT, BACKEND, n, 53, PROTO_UDP);
    ct.insert(udp(1), udp(1).inverse(), 0).unwrap();
    ct.insert(udp(2), udp(2).inverse(), 0).unwrap();
    assert!(ct.lookup(&udp(2).inverse(), 10).is_some()); // replied
    let later = 10 + UNREPLIED_TIMEOUT + 1;
    assert!(
        ct.lookup(&udp(1), later).is_none(),
        "unreplied flow expired"
    );
    assert!(ct.lookup(&udp(2), later).is_some(), "replied flow lives on");
    assert_eq!(ct.len(), 1);
    // An expired flow's tuples are free for a new flow.
    let much_later = later + UDP_REPLIED_TIMEOUT + 1;
    ct.insert(udp(2), udp(2).inverse(), much_later).unwrap();
    assert_eq!(ct.len(), 1);
}

#[test]
fn sweep_removes_only_expired_flows_within_its_budget() {
    let mut ct = Conntrack6::new(4);
    let tcp = |n: u16| tuple(CLIENT, BACKEND, n, 443, PROTO_TCP);
    for n in 0..4 {
        ct.insert(tcp(n), tcp(n).inverse(), 0).unwrap();
    }
    ct.lookup(&tcp(3), UNREPLIED_TIMEOUT).unwrap(); // refreshed
    let now = UNREPLIED_TIMEOUT + 1;
    assert_eq!(ct.sweep(now, 2), 2);
    assert_eq!(ct.sweep(now, 2), 1);
    assert_eq!(ct.len(), 1);
    assert!(ct.lookup(&tcp(3), now).is_some());
}

#[test]
fn inserts_within_capacity_do_not_grow_the_index() {
    let mut ct = Conntrack6::new(64);
    let before = ct.index.capacity();
    for round in 0..32u16 {
        let flow = |n: u16| tuple(CLIENT, BACKEND, round * 100 + n, 80, PROTO_TCP);
        let ids: Vec<u32> = (0..64)
            .map(|n| ct.insert(flow(n), flow(n).inverse(), 0).unwrap())
            .collect();
        for id in ids {
            assert!(ct.remove(id));
        }
    }
    // hashbrown's capacity() counts tombstones against it; a growth would double it.
    assert!(ct.index.capacity() <= before);
    assert!(ct.is_empty());
}

#[test]
fn bytes_per_flow_counts_slot_and_index() {
    let ct = Conntrack6::new(WORKER_CAPACITY);
    let b = ct.bytes_per_flow();
    // At least the slot's two 40-byte tuples and four index buckets of a 40-byte key.
    assert!(b >= 4 * 40 + 80, "{b}");
    println!("conntrack6 bytes per flow at {WORKER_CAPACITY} flows: {b}");
}

#[test]
fn a_closing_tcp_flow_expires_after_the_closing_timeout() {
    let mut ct = Conntrack6::new(4);
    let (original, reply) = dnat_flow();
    let flow = ct.insert(original, reply, 0).unwrap();
    ct.lookup(&reply, 1).unwrap();
    ct.close(flow);
    assert!(ct.lookup(&original, 1 + TCP_CLOSING_TIMEOUT).is_some());
    let later = 1 + 2 * TCP_CLOSING_TIMEOUT + 1;
    assert!(ct.lookup(&original, later).is_none());
    assert!(ct.is_empty());
}

#[test]
fn peek_changes_nothing_and_policy_stamps_stick() {
    let mut ct = Conntrack6::new(4);
    let (original, reply) = dnat_flow();
    let flow = ct.insert(original, reply, 0).unwrap();
    // Peeking at the reply side neither marks the flow replied nor refreshes it: it still
    // expires as an unreplied flow from its first packet.
    let seen = ct.peek(&reply, UNREPLIED_TIMEOUT).unwrap();
    assert_eq!((seen.dir, seen.policy_epoch), (Dir6::Reply, 0));
    assert!(ct.peek(&reply, UNREPLIED_TIMEOUT + 1).is_none());
    assert_eq!(ct.tuples(flow), Some((original, reply)));
    ct.stamp_policy(flow, 9);
    assert_eq!(ct.lookup(&original, 1).unwrap().policy_epoch, 9);
    assert!(ct.lookup(&original, UNREPLIED_TIMEOUT + 2).is_none());
    assert_eq!(ct.tuples(flow), None);
}
