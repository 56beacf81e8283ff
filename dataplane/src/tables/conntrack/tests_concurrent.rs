//! Real-thread conntrack tests: the first-packet insert race (user-needs A1), readers beside a
//! writer that keeps replacing flows, and concurrent refreshes of one flow.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use super::tests::{CLIENT, VIP, backend, dnat, table};
use super::*;
use crate::flow::L4Proto;

#[test]
fn racing_inserts_of_one_tuple_make_one_flow_with_one_backend() {
    const ROUNDS: u16 = 2000;
    let ct = Arc::new(table(4096));
    let barrier = Arc::new(Barrier::new(2));
    let racers: Vec<_> = (1..=2u8)
        .map(|backend_index| {
            let (ct, barrier) = (Arc::clone(&ct), Arc::clone(&barrier));
            thread::spawn(move || {
                (0..ROUNDS)
                    .map(|round| {
                        // Same original tuple for both threads, each with its own backend.
                        let flow = dnat(L4Proto::Udp, 20_000 + round, backend_index, 0);
                        barrier.wait();
                        ct.insert(&flow, 1).unwrap()
                    })
                    .collect::<Vec<Inserted>>()
            })
        })
        .collect();
    let results: Vec<Vec<Inserted>> = racers.into_iter().map(|t| t.join().unwrap()).collect();
    for (round, (&a, &b)) in results[0].iter().zip(&results[1]).enumerate() {
        let (winner, loser) = match (a, b) {
            (Inserted::Created(w), Inserted::Existing(l)) => (w, l),
            (Inserted::Existing(l), Inserted::Created(w)) => (w, l),
            other => panic!("round {round}: {other:?}"),
        };
        assert_eq!(loser.xlate, winner.xlate, "round {round}");
        assert_eq!(loser.backend, winner.backend, "round {round}");
        assert_eq!(loser.entry, winner.entry, "round {round}");
        let cport = 20_000 + round as u16;
        let winner_reply = FlowKey::new(L4Proto::Udp, winner.xlate.dst, 8080, CLIENT, cport);
        let loser_backend = backend(3 - winner.backend as u8);
        let loser_reply = FlowKey::new(L4Proto::Udp, loser_backend, 8080, CLIENT, cport);
        assert!(ct.lookup(&winner_reply, 1).is_some(), "round {round}");
        assert!(ct.lookup(&loser_reply, 1).is_none(), "round {round}");
    }
    assert_eq!(ct.len(), usize::from(ROUNDS), "one flow per round");
    assert_eq!(ct.stats().insert_races_lost, u64::from(ROUNDS));
}

#[test]
fn readers_see_whole_flows_while_a_writer_replaces_them() {
    // Stable flows never change; churned flows keep being removed and re-created with backend 1
    // or 2. A reader must always find the stable ones, and any churned hit must be one of the two
    // written versions, consistent in every field.
    const STABLE: u16 = 64;
    const CHURNED: u16 = 64;
    let ct = Arc::new(table(1024));
    for port in 0..STABLE {
        ct.insert(&dnat(L4Proto::Tcp, port, 9, 0x10), 1).unwrap();
    }
    for port in STABLE..STABLE + CHURNED {
        ct.insert(&dnat(L4Proto::Tcp, port, 1, 0x10), 1).unwrap();
    }
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (ct, done) = (Arc::clone(&ct), Arc::clone(&done));
            thread::spawn(move || read_until_done(&ct, &done, STABLE, CHURNED))
        })
        .collect();
    for round in 0..400u32 {
        let n = (round % 2 + 1) as u8;
        for port in STABLE..STABLE + CHURNED {
            let original = dnat(L4Proto::Tcp, port, n, 0x10).original;
            if let Some(hit) = ct.lookup(&original, 1) {
                ct.remove(&hit);
            }
            ct.insert(&dnat(L4Proto::Tcp, port, n, 0x10), 1).unwrap();
        }
    }
    done.store(true, Ordering::Relaxed);
    for reader in readers {
        let churned_hits = reader.join().unwrap();
        assert!(churned_hits > 0, "the readers raced the writer");
    }
    assert_eq!(ct.len(), usize::from(STABLE + CHURNED));
}

fn read_until_done(ct: &Conntrack, done: &AtomicBool, stable: u16, churned: u16) -> u64 {
    let mut churned_hits = 0;
    while !done.load(Ordering::Relaxed) {
        for port in 0..stable {
            let flow = dnat(L4Proto::Tcp, port, 9, 0x10);
            let hit = ct.lookup(&flow.original, 1).expect("stable flow vanished");
            assert_eq!(
                hit.xlate,
                FlowKey::new(L4Proto::Tcp, CLIENT, port, backend(9), 8080)
            );
            let reply = ct.lookup(&flow.reply, 1).expect("stable reply vanished");
            assert_eq!(
                reply.xlate,
                FlowKey::new(L4Proto::Tcp, VIP, 80, CLIENT, port)
            );
        }
        for port in stable..stable + churned {
            let flow = dnat(L4Proto::Tcp, port, 1, 0x10);
            if let Some(hit) = ct.lookup(&flow.original, 1) {
                let n = hit.backend as u8;
                assert!(n == 1 || n == 2, "backend {n}");
                let expected = FlowKey::new(L4Proto::Tcp, CLIENT, port, backend(n), 8080);
                assert_eq!(hit.xlate, expected, "xlate must match its backend");
                assert_eq!(
                    (hit.dir, hit.service, hit.flags),
                    (Dir::Original, 42, flags::DNAT)
                );
                churned_hits += 1;
            }
            for n in 1..=2u8 {
                let reply = FlowKey::new(L4Proto::Tcp, backend(n), 8080, CLIENT, port);
                if let Some(hit) = ct.lookup(&reply, 1) {
                    assert_eq!(hit.backend, u32::from(n));
                    assert_eq!(hit.xlate, FlowKey::new(L4Proto::Tcp, VIP, 80, CLIENT, port));
                }
            }
        }
    }
    churned_hits
}

#[test]
fn concurrent_refreshes_keep_the_latest_time() {
    let ct = Arc::new(table(64));
    let flow = NewFlow {
        original: FlowKey::new(L4Proto::Udp, CLIENT, 999, Ipv4Addr::new(1, 1, 1, 1), 53),
        reply: FlowKey::new(L4Proto::Udp, Ipv4Addr::new(1, 1, 1, 1), 53, CLIENT, 999),
        service: 0,
        backend: 0,
        flags: 0,
        tcp_flags: 0,
    };
    let hit = *ct.insert(&flow, 0).unwrap().hit();
    let workers: Vec<_> = (0..4u32)
        .map(|worker| {
            let ct = Arc::clone(&ct);
            thread::spawn(move || {
                for now in (worker..20_000).step_by(4) {
                    assert_eq!(ct.on_packet(&hit, 0, now), Track::Ok);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    // The newest refresh (19_999) wins: alive through 19_999 + 30.
    assert!(ct.lookup(&flow.original, 20_029).is_some());
    assert!(ct.lookup(&flow.original, 20_030).is_none());
}
