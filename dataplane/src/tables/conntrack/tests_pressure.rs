//! Hostile traffic against the table: eviction never takes assured flows, unreplied flows are
//! limited per source and destination, RSTs are checked against the sequence marks.

use std::net::Ipv4Addr;

use super::tests::{ACK, SYN, SYN_ACK, backend, created, dnat, state_of, table};
use super::*;
use crate::flow::L4Proto;

const RST: u8 = 0x04;

fn limited_table(capacity: usize, per_source: u32, per_destination: u32) -> Conntrack {
    Conntrack::new(ConntrackConfig {
        capacity,
        limits: FlowLimits {
            unreplied_per_source: per_source,
            unreplied_per_destination: per_destination,
        },
        ..ConntrackConfig::default()
    })
}

/// A SYN from a random-looking internet source to the node's NodePort, DNAT to one backend.
fn flood_syn(i: u32) -> NewFlow {
    let src = Ipv4Addr::from(0x0b00_0000 + i.wrapping_mul(2_654_435_761) % 0x00ff_ffff);
    let original = FlowKey::new(
        L4Proto::Tcp,
        src,
        1024 + (i % 60_000) as u16,
        NODE_IP,
        30080,
    );
    NewFlow {
        original,
        reply: FlowKey::new(L4Proto::Tcp, backend(9), 8080, src, original.sport),
        service: 7,
        backend: 0,
        flags: flags::DNAT,
        tcp_flags: SYN,
    }
}

const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);

/// Walks a DNAT flow through the handshake to ESTABLISHED.
fn establish(ct: &Conntrack, cport: u16, now: Now) -> NewFlow {
    let flow = dnat(L4Proto::Tcp, cport, 7, SYN);
    let hit = created(ct.insert(&flow, now));
    let reply = ct.lookup(&flow.reply, now).expect("reply record");
    assert_eq!(ct.on_packet(&reply, SYN_ACK, now), Track::Ok);
    assert_eq!(ct.on_packet(&hit, ACK, now), Track::Ok);
    assert_eq!(
        state_of(ct, &flow.original, now),
        Some(FlowState::Established)
    );
    flow
}

#[test]
fn a_syn_flood_at_ten_times_capacity_never_evicts_established_flows() {
    let capacity = 1024;
    let ct = limited_table(capacity, 0, 0);
    let established: Vec<NewFlow> = (0..100).map(|i| establish(&ct, 20_000 + i, 100)).collect();
    let mut full = 0;
    for i in 0..(10 * capacity as u32) {
        match ct.insert(&flood_syn(i), 200) {
            Ok(_) => {}
            Err(InsertError::Full) => full += 1,
            other => panic!("flood insert {i}: {other:?}"),
        }
    }
    for flow in &established {
        let hit = ct
            .lookup(&flow.original, 300)
            .expect("established flow survived");
        assert_eq!(ct.on_packet(&hit, ACK, 300), Track::Ok);
    }
    let stats = ct.stats();
    assert_eq!(
        stats.evictions_by_state[FlowState::Established.index()],
        0,
        "{stats:?}"
    );
    assert!(
        stats.evictions_by_state[FlowState::SynSent.index()] >= 8 * capacity as u64,
        "the flood evicted its own kind: {stats:?}"
    );
    assert_eq!(stats.insert_failed, full);
    assert!(ct.len() <= capacity);
}

#[test]
fn unreplied_flows_go_first_then_the_oldest_unassured() {
    // One bucket pair's worth: every flow competes for the same capacity.
    let ct = limited_table(3, 0, 0);
    let established = establish(&ct, 1000, 10);
    let replied = dnat(L4Proto::Tcp, 1001, 7, SYN);
    created(ct.insert(&replied, 11));
    let reply = ct.lookup(&replied.reply, 11).unwrap();
    assert_eq!(ct.on_packet(&reply, SYN_ACK, 11), Track::Ok); // SYN_RECV: replied, unassured
    let unreplied = dnat(L4Proto::Tcp, 1002, 7, SYN);
    created(ct.insert(&unreplied, 50)); // newest, but never replied

    created(ct.insert(&dnat(L4Proto::Tcp, 1003, 7, SYN), 60));
    assert!(
        ct.lookup(&unreplied.original, 60).is_none(),
        "the unreplied flow went first"
    );
    assert!(ct.lookup(&replied.original, 60).is_some());
    // Now the newcomer (1003) is the only unreplied flow: it goes next.
    let newer = dnat(L4Proto::Tcp, 1004, 7, SYN);
    created(ct.insert(&newer, 61));
    assert!(ct.lookup(&replied.original, 61).is_some());
    assert!(ct.lookup(&established.original, 61).is_some());
    // With no unreplied flow left, the least recently seen unassured one goes (SYN_RECV, 11).
    let reply = ct.lookup(&newer.reply, 62).unwrap();
    assert_eq!(ct.on_packet(&reply, SYN_ACK, 62), Track::Ok);
    created(ct.insert(&dnat(L4Proto::Tcp, 1005, 7, SYN), 63));
    assert!(ct.lookup(&replied.original, 63).is_none());
    assert!(ct.lookup(&newer.original, 63).is_some());
    assert!(ct.lookup(&established.original, 63).is_some());
    let stats = ct.stats();
    assert_eq!(
        stats.evictions_by_state[FlowState::SynSent.index()],
        2,
        "{stats:?}"
    );
    assert_eq!(
        stats.evictions_by_state[FlowState::SynRecv.index()],
        1,
        "{stats:?}"
    );
    assert_eq!(stats.evictions_by_state[FlowState::Established.index()], 0);
}

#[test]
fn a_table_of_assured_flows_refuses_new_ones_instead_of_evicting() {
    let ct = limited_table(4, 0, 0);
    let flows: Vec<NewFlow> = (0..4).map(|i| establish(&ct, 3000 + i, 10)).collect();
    assert_eq!(
        ct.insert(&dnat(L4Proto::Tcp, 4000, 7, SYN), 20),
        Err(InsertError::Full)
    );
    let stats = ct.stats();
    assert_eq!((stats.insert_failed, stats.evictions), (1, 0), "{stats:?}");
    for flow in &flows {
        assert!(ct.lookup(&flow.original, 20).is_some());
    }
}

#[test]
fn unreplied_flows_are_limited_per_source_until_replied_or_ended() {
    let ct = limited_table(1024, 4, 0);
    let hits: Vec<Hit> = (0..4)
        .map(|i| created(ct.insert(&dnat(L4Proto::Tcp, 5000 + i, 7, SYN), 10)))
        .collect();
    let fifth = dnat(L4Proto::Tcp, 5004, 7, SYN);
    assert_eq!(
        ct.insert(&fifth, 10),
        Err(InsertError::Limited(Limited::Source))
    );
    assert_eq!(ct.stats().limited_source, 1);
    // A reply moves one out of the unreplied states: room for one more.
    let reply = ct
        .lookup(&dnat(L4Proto::Tcp, 5000, 7, SYN).reply, 10)
        .unwrap();
    assert_eq!(ct.on_packet(&reply, SYN_ACK, 10), Track::Ok);
    created(ct.insert(&fifth, 10));
    // Ending one (here: removing it) frees its place too.
    assert!(ct.remove(&hits[1]));
    created(ct.insert(&dnat(L4Proto::Tcp, 5005, 7, SYN), 10));
    assert_eq!(
        ct.insert(&dnat(L4Proto::Tcp, 5006, 7, SYN), 10),
        Err(InsertError::Limited(Limited::Source))
    );
    // Another source is not affected; UDP counts the same way.
    let mut other = dnat(L4Proto::Udp, 5007, 7, 0);
    other.original.src = Ipv4Addr::new(10, 244, 1, 99);
    other.reply.dst = other.original.src;
    created(ct.insert(&other, 10));
}

#[test]
fn unreplied_flows_are_limited_per_destination() {
    let ct = limited_table(1024, 0, 3);
    for i in 0..3 {
        created(ct.insert(&flood_syn(i), 10));
    }
    assert_eq!(
        ct.insert(&flood_syn(3), 10),
        Err(InsertError::Limited(Limited::Destination))
    );
    // Expiry releases them once housekeeping ends them (SYN_SENT lives 120 s).
    ct.sweep(&mut SweepCursor::default(), usize::MAX, 200);
    created(ct.insert(&flood_syn(4), 200));
    assert_eq!(ct.stats().limited_destination, 1);
}

fn seg(seq: u32, len: u32) -> Option<SegmentSeq> {
    Some(SegmentSeq { seq, len })
}

#[test]
fn rsts_close_only_when_exact_pass_in_window_and_drop_outside() {
    let ct = table(64);
    let flow = dnat(L4Proto::Tcp, 6000, 7, SYN);
    let hit = created(ct.insert(&flow, 10));
    let reply = ct.lookup(&flow.reply, 10).unwrap();
    // Handshake with sequence numbers: client ISN 100, server ISN 900_000.
    assert_eq!(
        ct.on_segment(&reply, SYN_ACK, seg(900_000, 1), 10),
        Track::Ok
    );
    let original = ct.lookup(&flow.original, 10).unwrap();
    assert_eq!(ct.on_segment(&original, ACK, seg(101, 500), 10), Track::Ok);
    assert_eq!(
        state_of(&ct, &flow.original, 10),
        Some(FlowState::Established)
    );

    // Blind RSTs from either side: out of window, dropped, flow untouched.
    for (side, seq) in [(&reply, 0), (&reply, 900_001 + (64 << 20)), (&original, 7)] {
        assert_eq!(
            ct.on_segment(side, RST, seg(seq, 0), 11),
            Track::RstOutOfWindow
        );
    }
    // In the window but not exact: passed on, no state change.
    assert_eq!(
        ct.on_segment(&reply, RST | ACK, seg(950_000, 0), 11),
        Track::Ok
    );
    assert_eq!(
        state_of(&ct, &flow.original, 11),
        Some(FlowState::Established)
    );
    // A SYN on the established flow follows it (Ignore): no restart, no new backend.
    assert_eq!(ct.on_segment(&original, SYN, seg(55, 1), 11), Track::Ok);
    assert_eq!(ct.lookup(&flow.original, 11).unwrap().entry, hit.entry);
    // Exact: closes.
    assert_eq!(ct.on_segment(&original, RST, seg(601, 0), 12), Track::Ok);
    assert_eq!(state_of(&ct, &flow.original, 12), Some(FlowState::Close));
}

#[test]
fn without_a_mark_yet_an_rst_is_judged_by_state_alone() {
    let ct = table(64);
    let flow = dnat(L4Proto::Tcp, 6100, 7, SYN);
    created(ct.insert(&flow, 10));
    // The server refuses: RST+ACK, seq 0, in SYN_SENT (no reply segment seen before).
    let reply = ct.lookup(&flow.reply, 10).unwrap();
    assert_eq!(ct.on_segment(&reply, RST | ACK, seg(0, 0), 10), Track::Ok);
    assert_eq!(state_of(&ct, &flow.original, 10), Some(FlowState::Close));
}

#[test]
fn sequence_marks_never_change_the_translation() {
    let ct = table(64);
    let flow = dnat(L4Proto::Tcp, 6200, 7, SYN);
    let hit = created(ct.insert(&flow, 10));
    for i in 0..50u32 {
        let h = ct.lookup(&flow.original, 10).unwrap();
        ct.on_segment(&h, ACK, seg(i.wrapping_mul(0x0101_0101), 1460), 10);
    }
    let h = ct.lookup(&flow.original, 10).unwrap();
    assert_eq!(h.xlate, hit.xlate);
    let r = ct.lookup(&flow.reply, 10).unwrap();
    assert_eq!(r.xlate, flow.original.reversed());
    let mut seen = None;
    ct.for_each(10, |v| seen = Some((v.original, v.reply)));
    assert_eq!(seen, Some((flow.original, flow.reply)));
}

#[test]
fn racing_replies_removals_and_expiry_leave_the_limits_exact() {
    // Four threads churn unreplied flows of one source against a limit of 64: each flow is
    // replied to, removed, or left to expire, while the others race on the same counters.
    // Afterwards exactly 64 new unreplied flows fit again: none leaked, none released twice
    // while counted.
    use std::sync::{Arc, Barrier};
    const LIMIT: u32 = 64;
    let ct = Arc::new(limited_table(1 << 14, LIMIT, 0));
    let barrier = Arc::new(Barrier::new(4));
    let threads: Vec<_> = (0..4u16)
        .map(|t| {
            let (ct, barrier) = (Arc::clone(&ct), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                let mut refused = 0;
                for i in 0..2000u16 {
                    let flow = dnat(L4Proto::Tcp, 1024 + t * 2000 + i, 7, SYN);
                    let hit = match ct.insert(&flow, 10) {
                        Ok(ins) => *ins.hit(),
                        Err(InsertError::Limited(Limited::Source)) => {
                            refused += 1;
                            continue;
                        }
                        Err(e) => panic!("{e:?}"),
                    };
                    match i % 3 {
                        0 => {
                            let reply = ct.lookup(&flow.reply, 10).expect("reply record");
                            // Two packets racing on the same transition.
                            ct.on_packet(&reply, SYN_ACK, 10);
                            ct.on_packet(&reply, SYN_ACK, 10);
                        }
                        1 => {
                            ct.remove(&hit);
                        }
                        _ => {}
                    }
                }
                refused
            })
        })
        .collect();
    let refused: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(refused > 0, "the limit was reached during the churn");
    // The counter equals the unreplied flows alive: exactly the rest of the limit fits.
    let mut unreplied = 0;
    ct.for_each(10, |v| unreplied += u32::from(v.state.is_unreplied()));
    let mut fitted = 0;
    for i in 0..=LIMIT as u16 {
        match ct.insert(&dnat(L4Proto::Tcp, 50_000 + i, 7, SYN), 10) {
            Ok(_) => fitted += 1,
            Err(InsertError::Limited(Limited::Source)) => break,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(
        fitted,
        LIMIT - unreplied,
        "{unreplied} unreplied flows alive"
    );
    // Everything left unreplied expires (SYN_SENT: 120 s) and is swept: the whole limit again.
    ct.sweep(&mut SweepCursor::default(), usize::MAX, 1000);
    ct.flush(1000, |_| true);
    assert!(ct.is_empty());
    for i in 0..LIMIT as u16 {
        created(ct.insert(&dnat(L4Proto::Tcp, 60_000 + i, 7, SYN), 1000));
    }
    assert_eq!(
        ct.insert(&dnat(L4Proto::Tcp, 60_000 + LIMIT as u16, 7, SYN), 1000),
        Err(InsertError::Limited(Limited::Source))
    );
}
