//! The DNS 5-second-delay race (user-needs A1): two workers see the first packets of one
//! UDP flow at the same moment. They must end up on one conntrack entry and one backend.

mod common;

use std::sync::{Arc, Barrier};

use common::frames::{self, L4, seen};
use common::*;
use dataplane::packet::{Packet, Verdict};
use dataplane::pipeline::Pipeline;
use dataplane::tables::services::{Backend, ServiceTable};

#[test]
fn two_workers_racing_on_one_udp_flow_share_one_entry_and_one_backend() {
    // kube-dns with 10 remote endpoints, so two independent random picks usually differ.
    let mut specs = services();
    let dns = specs
        .iter_mut()
        .find(|s| &*s.name == "kube-system/kube-dns:dns")
        .expect("fixture has kube-dns");
    dns.backends = (0..10)
        .map(|i| Backend {
            ip: ip(&format!("10.244.2.{}", 30 + i)),
            port: 5353,
            node_local: false,
            serving: true,
            terminating: false,
            pod: None,
        })
        .collect();
    let mut snap = snapshot(dataplane::tables::node::OverlayMode::Vxlan);
    snap.services = std::sync::Arc::new(
        ServiceTable::build(specs, &snap.node.node_port_addresses, 251).expect("services"),
    );
    let snap = Arc::new(snap);
    let (ct, aff) = tables(1 << 16);

    let rounds = 1000;
    let gw = snap.node.gateway_mac;
    let mut differing_seeds = 0;
    for round in 0..rounds {
        let sport = 10_000 + round as u16;
        let query = frames::ipv4(
            CLIENT_MAC,
            gw,
            ip(CLIENT_IP),
            ip(VIP_DNS),
            64,
            true,
            L4::Udp { sport, dport: 53 },
            b"A?",
        );
        let barrier = Arc::new(Barrier::new(2));
        let handles: Vec<_> = (0..2u64)
            .map(|w| {
                let (snap, ct, aff, barrier, query) = (
                    snap.clone(),
                    ct.clone(),
                    aff.clone(),
                    barrier.clone(),
                    query.clone(),
                );
                std::thread::spawn(move || {
                    let mut pipe = Pipeline::new(ct, aff, 1 + w * 7919 + round as u64 * 104_729);
                    pipe.begin_batch(1000);
                    let mut pkt = Packet::from_frame(&query).expect("fits");
                    pkt.meta.in_port = CLIENT;
                    barrier.wait();
                    let v = pipe.process(&snap, &mut pkt);
                    (v, pkt.data().to_vec(), pipe.stats.races_lost)
                })
            })
            .collect();
        let outs: Vec<_> = handles
            .into_iter()
            .map(|t| t.join().expect("worker thread"))
            .collect();
        let backends: Vec<_> = outs
            .iter()
            .map(|(v, bytes, _)| {
                assert_eq!(*v, Verdict::Tx(UPLINK));
                let inner = &seen(bytes).payload[8..];
                let s = seen(inner);
                (s.dst, s.dport)
            })
            .collect();
        assert_eq!(
            backends[0], backends[1],
            "round {round}: both packets go to one backend"
        );
        differing_seeds += outs.iter().map(|o| o.2).sum::<u64>();
    }
    assert_eq!(ct.len(), rounds, "one entry per flow");
    println!("races lost (insert raced and adopted the winner): {differing_seeds} of {rounds}");
}
