//! Single-thread conntrack tests: translations, timeouts, the TCP state walk. Expected tuples
//! are written out literally, not derived with `reversed()`. Shared helpers live here too.

use std::net::Ipv4Addr;

use super::*;
use crate::flow::L4Proto;

pub(super) const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 5);
pub(super) const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
pub(super) const NODE: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);
pub(super) const REMOTE: Ipv4Addr = Ipv4Addr::new(93, 184, 216, 34);

pub(super) const SYN: u8 = 0x02;
pub(super) const ACK: u8 = 0x10;
const FIN: u8 = 0x01;
const RST: u8 = 0x04;
pub(super) const SYN_ACK: u8 = SYN | ACK;
const FIN_ACK: u8 = FIN | ACK;

pub(super) fn backend(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, 2, n)
}

/// A table without the per-source limits (most tests insert many flows from one client).
pub(super) fn table(capacity: usize) -> Conntrack {
    Conntrack::new(ConntrackConfig {
        capacity,
        limits: FlowLimits::NONE,
        ..ConntrackConfig::default()
    })
}

/// client:cport -> VIP:port, DNAT to backend(n):8080.
pub(super) fn dnat(proto: L4Proto, cport: u16, n: u8, tcp_flags: u8) -> NewFlow {
    NewFlow {
        original: FlowKey::new(proto, CLIENT, cport, VIP, 80),
        reply: FlowKey::new(proto, backend(n), 8080, CLIENT, cport),
        service: 42,
        backend: u32::from(n),
        flags: flags::DNAT,
        tcp_flags,
    }
}

pub(super) fn state_of(ct: &Conntrack, original: &FlowKey, now: Now) -> Option<FlowState> {
    let mut found = None;
    ct.for_each(now, |view| {
        if view.original == *original {
            found = Some(view.state);
        }
    });
    found
}

pub(super) fn created(result: Result<Inserted, InsertError>) -> Hit {
    match result {
        Ok(Inserted::Created(hit)) => hit,
        other => panic!("expected Created, got {other:?}"),
    }
}

#[test]
fn dnat_flow_translates_both_directions() {
    let ct = table(1024);
    let flow = dnat(L4Proto::Tcp, 40000, 7, SYN);
    let hit = created(ct.insert(&flow, 100));
    let to_backend = FlowKey::new(L4Proto::Tcp, CLIENT, 40000, backend(7), 8080);
    assert_eq!(hit.xlate, to_backend);

    let original = ct.lookup(&flow.original, 100).unwrap();
    assert_eq!((original.dir, original.xlate), (Dir::Original, to_backend));
    assert_eq!(
        (original.service, original.backend, original.flags),
        (42, 7, flags::DNAT)
    );
    assert_eq!(original.entry, hit.entry);

    let reply = ct.lookup(
        &FlowKey::new(L4Proto::Tcp, backend(7), 8080, CLIENT, 40000),
        100,
    );
    let reply = reply.unwrap();
    let from_vip = FlowKey::new(L4Proto::Tcp, VIP, 80, CLIENT, 40000);
    assert_eq!((reply.dir, reply.xlate), (Dir::Reply, from_vip));
    assert_eq!((reply.service, reply.backend), (42, 7));
    assert_eq!(
        reply.entry, hit.entry,
        "both directions name the original record"
    );

    // The un-NATed reverse tuple is not tracked: only the post-NAT reply is.
    assert_eq!(
        ct.lookup(&FlowKey::new(L4Proto::Tcp, VIP, 80, CLIENT, 40000), 100),
        None
    );
    assert_eq!(ct.len(), 1);
}

#[test]
fn snat_flow_translates_both_directions() {
    let ct = table(1024);
    let flow = NewFlow {
        original: FlowKey::new(L4Proto::Udp, CLIENT, 5353, REMOTE, 443),
        reply: FlowKey::new(L4Proto::Udp, REMOTE, 443, NODE, 61000),
        service: 0,
        backend: 0,
        flags: flags::SNAT | flags::EXTERNAL,
        tcp_flags: 0,
    };
    created(ct.insert(&flow, 5));
    let out = ct.lookup(&flow.original, 5).unwrap();
    assert_eq!(
        out.xlate,
        FlowKey::new(L4Proto::Udp, NODE, 61000, REMOTE, 443)
    );
    assert_eq!(out.flags, flags::SNAT | flags::EXTERNAL);
    let back = ct.lookup(&flow.reply, 5).unwrap();
    assert_eq!(
        back.xlate,
        FlowKey::new(L4Proto::Udp, REMOTE, 443, CLIENT, 5353)
    );
    assert_eq!(back.dir, Dir::Reply);
}

#[test]
fn udp_expires_after_30s_unreplied_and_120s_assured() {
    let ct = table(64);
    let flow = dnat(L4Proto::Udp, 1000, 1, 0);
    let hit = created(ct.insert(&flow, 1000));
    assert!(ct.lookup(&flow.original, 1030).is_some());
    assert!(ct.lookup(&flow.original, 1031).is_none());
    assert_eq!(
        state_of(&ct, &flow.original, 1000),
        Some(FlowState::UdpUnreplied)
    );

    let reply = ct.lookup(&flow.reply, 1020).unwrap();
    assert_eq!(ct.on_packet(&reply, 0, 1020), Track::Ok);
    assert_eq!(
        state_of(&ct, &flow.original, 1020),
        Some(FlowState::UdpAssured)
    );
    assert!(ct.lookup(&flow.reply, 1140).is_some());
    assert!(ct.lookup(&flow.reply, 1141).is_none());
    assert!(ct.lookup(&flow.original, 1141).is_none());
    // Original-direction packets keep it assured and refresh it.
    assert_eq!(ct.on_packet(&hit, 0, 1100), Track::Ok);
    assert!(ct.lookup(&flow.original, 1220).is_some());
    assert_eq!(
        state_of(&ct, &flow.original, 1220),
        Some(FlowState::UdpAssured)
    );
}

#[test]
fn icmp_and_tcp_states_use_their_timeouts() {
    let ct = table(64);
    let ping = NewFlow {
        original: FlowKey::new(L4Proto::Icmp, CLIENT, 77, REMOTE, 77),
        reply: FlowKey::new(L4Proto::Icmp, REMOTE, 77, NODE, 77),
        service: 0,
        backend: 0,
        flags: flags::SNAT,
        tcp_flags: 0,
    };
    created(ct.insert(&ping, 0));
    assert!(ct.lookup(&ping.reply, 30).is_some());
    assert!(ct.lookup(&ping.reply, 31).is_none());

    let syn = dnat(L4Proto::Tcp, 2000, 1, SYN);
    created(ct.insert(&syn, 0));
    assert!(ct.lookup(&syn.original, 120).is_some());
    assert!(ct.lookup(&syn.original, 121).is_none());

    // A mid-stream packet (no SYN) is picked up as ESTABLISHED: 24 h.
    let pickup = dnat(L4Proto::Tcp, 2001, 1, ACK);
    created(ct.insert(&pickup, 0));
    assert!(ct.lookup(&pickup.original, 86_400).is_some());
    assert!(ct.lookup(&pickup.original, 86_401).is_none());
}

#[test]
fn tcp_handshake_and_fin_close_walk_the_states() {
    let ct = table(64);
    let flow = dnat(L4Proto::Tcp, 3000, 2, SYN);
    created(ct.insert(&flow, 10));
    let steps: [(bool, u8, FlowState); 6] = [
        (false, SYN_ACK, FlowState::SynRecv),
        (true, ACK, FlowState::Established),
        (true, ACK | 0x08, FlowState::Established),
        (true, FIN_ACK, FlowState::FinWait),
        (false, FIN_ACK, FlowState::LastAck),
        (true, ACK, FlowState::TimeWait),
    ];
    for (i, (from_client, tcp_flags, expected)) in steps.into_iter().enumerate() {
        let key = if from_client {
            flow.original
        } else {
            flow.reply
        };
        let now = 11 + i as u32;
        let hit = ct.lookup(&key, now).unwrap();
        assert_eq!(ct.on_packet(&hit, tcp_flags, now), Track::Ok, "step {i}");
        assert_eq!(
            state_of(&ct, &flow.original, now),
            Some(expected),
            "step {i}"
        );
    }
    // TIME_WAIT lasts 120 s from the last ACK (at 16).
    assert!(ct.lookup(&flow.original, 136).is_some());
    assert!(ct.lookup(&flow.original, 137).is_none());
}

#[test]
fn reply_side_close_goes_through_close_wait() {
    let ct = table(64);
    let flow = dnat(L4Proto::Tcp, 3001, 2, ACK);
    let hit = created(ct.insert(&flow, 10));
    let reply = ct.lookup(&flow.reply, 10).unwrap();
    assert_eq!(ct.on_packet(&reply, FIN_ACK, 11), Track::Ok);
    assert_eq!(
        state_of(&ct, &flow.original, 11),
        Some(FlowState::CloseWait)
    );
    assert_eq!(ct.on_packet(&hit, FIN_ACK, 12), Track::Ok);
    assert_eq!(state_of(&ct, &flow.original, 12), Some(FlowState::LastAck));
    assert_eq!(ct.on_packet(&reply, ACK, 13), Track::Ok);
    assert_eq!(state_of(&ct, &flow.original, 13), Some(FlowState::TimeWait));
}

#[test]
fn rst_closes_and_a_new_syn_restarts() {
    let ct = table(64);
    let flow = dnat(L4Proto::Tcp, 4000, 3, ACK);
    let hit = created(ct.insert(&flow, 50));
    let reply = ct.lookup(&flow.reply, 50).unwrap();
    assert_eq!(ct.on_packet(&reply, RST, 51), Track::Ok);
    assert_eq!(state_of(&ct, &flow.original, 51), Some(FlowState::Close));
    assert!(ct.lookup(&flow.original, 61).is_some());
    assert!(ct.lookup(&flow.original, 62).is_none(), "CLOSE lasts 10 s");

    // The client reuses its port with a SYN: restart, and the caller may pick another backend.
    assert_eq!(ct.on_packet(&hit, SYN, 55), Track::Restart);
    assert!(ct.remove(&hit));
    let again = created(ct.insert(&dnat(L4Proto::Tcp, 4000, 4, SYN), 55));
    assert_eq!(again.backend, 4);
    assert_ne!(again.entry, hit.entry);
    assert_eq!(
        ct.lookup(&flow.reply, 55),
        None,
        "the old backend's reply is gone"
    );
    assert_eq!(ct.len(), 1);
}

#[test]
fn syn_on_time_wait_restarts_but_not_on_established() {
    let ct = table(64);
    let flow = dnat(L4Proto::Tcp, 4001, 3, ACK);
    let hit = created(ct.insert(&flow, 50));
    // A stray SYN on an established flow is ignored: no refresh, no state change.
    assert_eq!(ct.on_packet(&hit, SYN, 60), Track::Ok);
    let mut expires = 0;
    ct.for_each(60, |view| expires = view.expires_in);
    assert_eq!(expires, 86_400 - 10);
    for (tcp_flags, now) in [(FIN_ACK, 61), (FIN_ACK, 62), (ACK, 63)] {
        let key = if now == 62 { flow.reply } else { flow.original };
        let hit = ct.lookup(&key, now).unwrap();
        ct.on_packet(&hit, tcp_flags, now);
    }
    assert_eq!(state_of(&ct, &flow.original, 63), Some(FlowState::TimeWait));
    assert_eq!(ct.on_packet(&hit, SYN, 64), Track::Restart);
    let reply = ct.lookup(&flow.reply, 64).unwrap();
    assert_eq!(
        ct.on_packet(&reply, SYN, 64),
        Track::Ok,
        "only the client restarts"
    );
}

#[test]
fn segments_that_do_not_fit_are_invalid_and_counted() {
    let ct = table(64);
    let flow = dnat(L4Proto::Tcp, 5000, 1, SYN);
    let hit = created(ct.insert(&flow, 1));
    assert_eq!(
        ct.on_packet(&hit, ACK, 2),
        Track::Invalid,
        "ACK before SYN+ACK"
    );
    assert_eq!(ct.on_packet(&hit, SYN | FIN, 2), Track::Invalid);
    assert_eq!(ct.on_packet(&hit, 0, 2), Track::Invalid, "no flags at all");
    assert_eq!(
        ct.on_packet(&hit, SYN_ACK, 2),
        Track::Invalid,
        "SYN+ACK from the client"
    );
    assert_eq!(ct.stats().invalid, 4);
    assert_eq!(state_of(&ct, &flow.original, 2), Some(FlowState::SynSent));
}

#[test]
fn second_insert_of_a_tuple_returns_the_first_translation() {
    let ct = table(64);
    let first = created(ct.insert(&dnat(L4Proto::Udp, 53, 1, 0), 7));
    match ct.insert(&dnat(L4Proto::Udp, 53, 2, 0), 7) {
        Ok(Inserted::Existing(hit)) => {
            assert_eq!(hit.xlate, first.xlate);
            assert_eq!(hit.backend, 1);
        }
        other => panic!("expected Existing, got {other:?}"),
    }
    assert_eq!(ct.len(), 1);
    assert_eq!(ct.stats().insert_races_lost, 1);
    assert_eq!(ct.lookup(&dnat(L4Proto::Udp, 53, 2, 0).reply, 7), None);
}

#[test]
fn taken_reply_tuple_is_refused_and_nothing_stays_behind() {
    let ct = table(64);
    let a = NewFlow {
        original: FlowKey::new(L4Proto::Tcp, CLIENT, 1111, REMOTE, 443),
        reply: FlowKey::new(L4Proto::Tcp, REMOTE, 443, NODE, 61000),
        service: 0,
        backend: 0,
        flags: flags::SNAT,
        tcp_flags: SYN,
    };
    created(ct.insert(&a, 1));
    let b = NewFlow {
        original: FlowKey::new(
            L4Proto::Tcp,
            Ipv4Addr::new(10, 244, 1, 6),
            2222,
            REMOTE,
            443,
        ),
        ..a
    };
    assert_eq!(ct.insert(&b, 2), Err(InsertError::ReplyTaken));
    assert_eq!(ct.lookup(&b.original, 2), None, "rolled back");
    assert_eq!(ct.len(), 1);
    // Another port works.
    let b2 = NewFlow {
        reply: FlowKey::new(L4Proto::Tcp, REMOTE, 443, NODE, 61001),
        ..b
    };
    created(ct.insert(&b2, 2));
    // Once the first flow has expired, its port is free again.
    let later = NewFlow {
        original: FlowKey::new(L4Proto::Tcp, CLIENT, 3333, REMOTE, 443),
        ..a
    };
    created(ct.insert(&later, 1 + 121));
    assert_eq!(ct.stats().expired, 1, "a was past SYN_SENT's 120 s");
    assert_eq!(ct.len(), 2);
    // A flow whose reply equals its original cannot be tracked.
    let own = NewFlow {
        reply: a.original,
        ..a
    };
    assert_eq!(ct.insert(&own, 1), Err(InsertError::ReplyTaken));
}

#[test]
fn remove_ends_both_directions_once_and_stale_refs_touch_nothing() {
    let ct = table(64);
    let flow = dnat(L4Proto::Tcp, 6000, 1, SYN);
    let old = created(ct.insert(&flow, 1));
    assert!(ct.remove(&old));
    assert!(!ct.remove(&old));
    assert_eq!(ct.lookup(&flow.original, 1), None);
    assert_eq!(ct.lookup(&flow.reply, 1), None);
    assert!(ct.is_empty());
    // The tuple comes back, likely in the same slot: the stale hit must not act on it.
    let new = created(ct.insert(&flow, 2));
    assert_eq!(ct.on_packet(&old, RST, 3), Track::Ok);
    assert!(!ct.remove(&old));
    assert_eq!(state_of(&ct, &flow.original, 3), Some(FlowState::SynSent));
    assert_eq!(
        ct.lookup(&flow.original, 3).map(|h| h.entry),
        Some(new.entry)
    );
}
