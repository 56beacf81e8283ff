//! The batch driver (two passes with conntrack prefetch) against the one-packet path: the same
//! frames, fed one by one through `Pipeline::process` and in batches of several sizes through
//! `Pipeline::process_batch`, give the same verdicts, the same output bytes and the same
//! counters. The mix has conntrack hits in both directions, new flows (inserted earlier in the
//! same batch as their hits), drops of several reasons, ARP, VXLAN decap, an ICMP error about a
//! translated flow and a reject.

mod common;

use common::frames::{self, L4, arp_request, vxlan};
use common::*;
use dataplane::drop::DropReason;
use dataplane::packet::{Packet, PortId, Verdict};

fn from_client(h: &Harness, dst: &str, l4: L4) -> Vec<u8> {
    let gw = h.snap.node.gateway_mac;
    frames::ipv4(
        CLIENT_MAC,
        gw,
        ip(CLIENT_IP),
        ip(dst),
        64,
        true,
        l4,
        b"hello",
    )
}

/// A frame from node B's overlay, wrapped in VXLAN.
fn from_node_b(h: &Harness, src: &str, l4: L4) -> Vec<u8> {
    let inner = frames::ipv4(
        NODE_B_VTEP_MAC,
        h.snap.node.vtep_mac,
        ip(src),
        ip(CLIENT_IP),
        63,
        true,
        l4,
        b"",
    );
    wrap(h, &inner)
}

fn wrap(h: &Harness, inner: &[u8]) -> Vec<u8> {
    vxlan(
        NODE_B_UPLINK_MAC,
        h.snap.node.uplink_mac,
        ip(NODE_B),
        ip(NODE_A),
        8472,
        1,
        inner,
    )
}

/// ICMP port unreachable from `from` quoting the IPv4 packet of `frame`.
fn unreachable_about(frame: &[u8], from: &str) -> Vec<u8> {
    let quote = &frame[14..14 + 20 + 8];
    let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(quote);
    let c = !frames::ones_sum(&[&icmp]);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut iph = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0];
    iph[2..4].copy_from_slice(&((20 + icmp.len()) as u16).to_be_bytes());
    iph.extend_from_slice(&ip(from).octets());
    iph.extend_from_slice(&ip(CLIENT_IP).octets());
    let c = !frames::ones_sum(&[&iph]);
    iph[10..12].copy_from_slice(&c.to_be_bytes());
    let mut f = Vec::new();
    f.extend_from_slice(&NODE_B_VTEP_MAC.0);
    f.extend_from_slice(&[0x0a, 0, 0, 0, 0, 1]);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&iph);
    f.extend_from_slice(&icmp);
    f
}

/// The mixed traffic, in arrival order.
fn traffic(h: &Harness) -> Vec<(PortId, Vec<u8>)> {
    let mut t = Vec::new();
    let syn = |sport| L4::Syn {
        sport,
        dport: 80,
        seq: 1,
    };
    let ack = |sport| L4::Ack {
        sport,
        dport: 80,
        seq: 2,
        ack: 1,
    };
    // Many flows to the ClusterIP: SYNs (misses), the backend's SYN-ACKs over VXLAN (reply
    // hits, decap), then ACKs (original hits), so a batch holds more keys than the prefetch
    // windows.
    for sport in 41_000..41_150 {
        t.push((CLIENT, from_client(h, VIP_STORE, syn(sport))));
    }
    for sport in 41_000..41_150 {
        let synack = L4::SynAck {
            sport: 8080,
            dport: sport,
            seq: 9,
            ack: 2,
        };
        t.push((UPLINK, from_node_b(h, REMOTE_BE, synack)));
        t.push((CLIENT, from_client(h, VIP_STORE, ack(sport))));
    }
    // A new flow and its hit (the SYN retransmitted) one packet apart.
    t.push((CLIENT, from_client(h, VIP_STORE, syn(42_000))));
    t.push((CLIENT, from_client(h, VIP_STORE, syn(42_000))));
    // DNS: new flow, hit, and an ICMP error about it from the backend (reverse-translated).
    let dns = L4::Udp {
        sport: 40_012,
        dport: 53,
    };
    t.push((CLIENT, from_client(h, VIP_DNS, dns)));
    t.push((CLIENT, from_client(h, VIP_DNS, dns)));
    let sent = frames::ipv4(
        CLIENT_MAC,
        NODE_B_VTEP_MAC,
        ip(CLIENT_IP),
        ip(REMOTE_DNS),
        63,
        true,
        L4::Udp {
            sport: 40_012,
            dport: 5353,
        },
        b"hello",
    );
    t.push((UPLINK, wrap(h, &unreachable_about(&sent, REMOTE_DNS))));
    // ARP for the gateway, answered in place.
    t.push((
        CLIENT,
        arp_request(CLIENT_MAC, ip(CLIENT_IP), h.snap.node.gateway_ip),
    ));
    // Drops: spoofed source, TCP without a flow, a truncated frame, an unknown port.
    let spoofed = frames::ipv4(
        CLIENT_MAC,
        h.snap.node.gateway_mac,
        ip("10.244.1.99"),
        ip(BE1_IP),
        64,
        true,
        L4::Udp { sport: 1, dport: 2 },
        b"",
    );
    t.push((CLIENT, spoofed));
    t.push((CLIENT, from_client(h, VIP_STORE, ack(43_000))));
    let ok = from_client(h, BE1_IP, syn(44_000));
    t.push((CLIENT, ok[..30].to_vec()));
    t.push((PortId(99), ok.clone()));
    // A Service without endpoints (RST), pod to pod, pod to the internet (SNAT) and its reply.
    t.push((CLIENT, from_client(h, VIP_EMPTY, syn(45_000))));
    t.push((CLIENT, ok));
    t.push((CLIENT, from_client(h, EXTERNAL, syn(46_000))));
    t
}

/// Verdicts and output frames, packet by packet.
type Outcome = Vec<(Verdict, Vec<u8>)>;

fn one_by_one(h: &mut Harness, traffic: &[(PortId, Vec<u8>)]) -> Outcome {
    traffic.iter().map(|(port, f)| h.run(*port, f)).collect()
}

fn batched(h: &mut Harness, traffic: &[(PortId, Vec<u8>)], sizes: &[usize]) -> Outcome {
    let mut out = Vec::new();
    let mut rest = traffic;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (now, later) = rest.split_at(size.min(rest.len()));
        rest = later;
        let mut batch: Vec<Packet> = now
            .iter()
            .map(|(port, f)| {
                let mut p = Packet::from_frame(f).expect("frame fits");
                p.meta.in_port = *port;
                p
            })
            .collect();
        h.pipe.process_batch(&h.snap, &mut batch);
        out.extend(batch.iter().map(|p| (p.meta.verdict, p.data().to_vec())));
    }
    out
}

fn counters(h: &Harness) -> String {
    let drops: Vec<_> = h.pipe.drops.iter().collect();
    format!(
        "{drops:?} {:?} {:?}",
        h.pipe.stats,
        h.pipe.conntrack().stats()
    )
}

#[test]
fn batches_give_the_verdicts_bytes_and_counts_of_one_by_one_processing() {
    let mut single = Harness::new().reproducible();
    let traffic = traffic(&single);
    let expected = one_by_one(&mut single, &traffic);

    // The mix exercises what it claims to.
    let count = |f: &dyn Fn(&Verdict) -> bool| expected.iter().filter(|(v, _)| f(v)).count();
    assert!(count(&|v| *v == Verdict::Tx(UPLINK)) >= 300, "encapsulated");
    assert!(count(&|v| *v == Verdict::Tx(CLIENT)) >= 150, "decapsulated");
    for reason in [
        DropReason::SpoofedSource,
        DropReason::CtInvalid,
        DropReason::Malformed,
        DropReason::NotForUs,
    ] {
        assert_eq!(single.pipe.drops.get(reason), 1, "{reason:?}");
    }
    assert_eq!(single.pipe.stats.rejects, 1);
    assert!(single.pipe.stats.new_flows >= 150);

    for sizes in [&[256][..], &[1, 7, 64, 3], &[traffic.len()]] {
        let mut h = Harness::new().reproducible();
        let got = batched(&mut h, &traffic, sizes);
        assert_eq!(got.len(), expected.len());
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(g.0, e.0, "verdict of packet {i} (batch sizes {sizes:?})");
            assert_eq!(g.1, e.1, "bytes of packet {i} (batch sizes {sizes:?})");
        }
        assert_eq!(counters(&h), counters(&single), "batch sizes {sizes:?}");
    }
}

#[test]
fn a_traced_batch_keeps_each_packets_events_together() {
    let mut h = Harness::new().reproducible();
    let traffic = traffic(&h);
    h.pipe.enable_trace();
    batched(&mut h, &traffic[..3], &[3]);
    let events = h.pipe.take_trace();
    let verdicts: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, dataplane::pipeline::TraceEvent::Verdict(_)))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(verdicts.len(), 3);
    assert_eq!(verdicts.last(), Some(&(events.len() - 1)));
    // Each packet's events start with its arrival, right after the previous verdict.
    for &v in &verdicts[..2] {
        assert!(matches!(
            events[v + 1],
            dataplane::pipeline::TraceEvent::Received { .. }
        ));
    }
}
