//! SCTP through the pipeline on crafted frames: Service DNAT (ClusterIP, NodePort) with the
//! CRC32c right after every port rewrite (checked by an independent bitwise CRC32c), the
//! association's conntrack states, NetworkPolicy on SCTP ports, and the reject of an unserved
//! SCTP port of a ClusterIP.

mod common;

use std::net::Ipv4Addr;
use std::sync::Arc;

use common::frames::ones_sum;
use common::*;
use dataplane::drop::DropReason;
use dataplane::flow::L4Proto;
use dataplane::packet::Verdict;
use dataplane::tables::policy::{Peer, PodRules, PodSet, PolicyTable, PortRange, Rule};
use dataplane::tables::services::{Backend, Scheduler, ServiceSpec, ServiceTable};
use dataplane::wire::MacAddr;

const VIP_SCTP: &str = "10.96.0.70"; // SCTP 9999 -> local store-be-1:7777, NodePort 30999
const NODE_PORT_SCTP: u16 = 30999;
const L3: usize = 14;
const INIT: u8 = 1;
const INIT_ACK: u8 = 2;
const ABORT: u8 = 6;
const COOKIE_ECHO: u8 = 10;
const COOKIE_ACK: u8 = 11;
const DATA: u8 = 0;

/// CRC32c (Castagnoli, reflected 0x82F63B78), bit by bit: independent of the dataplane's crate.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// An Ethernet/IPv4/SCTP frame with one chunk of `chunk` type (and 8 value bytes).
#[allow(clippy::too_many_arguments, reason = "one argument per header field")]
fn sctp(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: &str,
    dst: &str,
    sport: u16,
    dport: u16,
    vtag: u32,
    chunk: u8,
) -> Vec<u8> {
    let mut s = Vec::new();
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&vtag.to_be_bytes());
    s.extend_from_slice(&[0; 4]);
    s.extend_from_slice(&[chunk, 0, 0, 12]);
    s.extend_from_slice(&0x0102_0304_0506_0708u64.to_be_bytes());
    let c = crc32c(&s);
    s[8..12].copy_from_slice(&c.to_le_bytes());
    let mut f = Vec::new();
    f.extend_from_slice(&dst_mac.0);
    f.extend_from_slice(&src_mac.0);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + s.len()) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x40, 0, 64, 132, 0, 0]);
    f.extend_from_slice(&ip(src).octets());
    f.extend_from_slice(&ip(dst).octets());
    let c = !ones_sum(&[&f[L3..L3 + 20]]);
    f[L3 + 10..L3 + 12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&s);
    f
}

/// What left: (src, sport, dst, dport, vtag), after checking both checksums independently.
fn decode(f: &[u8]) -> (Ipv4Addr, u16, Ipv4Addr, u16, u32) {
    assert_eq!(ones_sum(&[&f[L3..L3 + 20]]), 0xffff, "IPv4 header checksum");
    assert_eq!(f[L3 + 9], 132);
    let total = usize::from(u16::from_be_bytes([f[L3 + 2], f[L3 + 3]]));
    let s = &f[L3 + 20..L3 + total];
    let mut zeroed = s.to_vec();
    zeroed[8..12].fill(0);
    assert_eq!(&s[8..12], &crc32c(&zeroed).to_le_bytes(), "SCTP CRC32c");
    let a = |o: usize| Ipv4Addr::new(f[o], f[o + 1], f[o + 2], f[o + 3]);
    (
        a(L3 + 12),
        u16::from_be_bytes([s[0], s[1]]),
        a(L3 + 16),
        u16::from_be_bytes([s[2], s[3]]),
        u32::from_be_bytes([s[4], s[5], s[6], s[7]]),
    )
}

fn harness() -> Harness {
    let mut h = Harness::new();
    let mut specs = services();
    specs.push(ServiceSpec {
        name: Arc::from("default/sctp-svc:assoc"),
        proto: L4Proto::Sctp,
        port: 9999,
        cluster_ips: vec![ip(VIP_SCTP)],
        external_ips: vec![],
        lb_ips: vec![],
        node_port: Some(NODE_PORT_SCTP),
        backends: vec![Backend {
            ip: ip(BE1_IP),
            port: 7777,
            node_local: true,
            serving: true,
            terminating: false,
            pod: None,
        }],
        scheduler: Scheduler::Random,
        affinity_timeout: None,
        internal_local: false,
        external_local: false,
        lb_source_ranges: vec![],
    });
    let table =
        ServiceTable::build(specs, &h.snap.node.node_port_addresses, 251).expect("services");
    h.snap.services = Arc::new(table);
    // store-db accepts only store-be-1, on SCTP 9999.
    let mut b = PolicyTable::builder();
    let id = b.add_policy("default/db-sctp");
    let be: PodSet = [ip(BE1_IP)].into_iter().collect();
    b.set_pod(
        ip(DB_IP),
        PodRules {
            ingress: Some(vec![Rule {
                peers: vec![Peer::Pods(Arc::new(be))],
                ports: vec![PortRange::single(L4Proto::Sctp, 9999)],
                policy: id,
            }]),
            egress: None,
            ingress_isolated_by: vec![id],
            egress_isolated_by: vec![],
        },
    );
    h.snap.policy = Arc::new(b.build());
    h
}

fn tx(
    h: &mut Harness,
    port: dataplane::packet::PortId,
    f: &[u8],
    out: dataplane::packet::PortId,
) -> Vec<u8> {
    let (v, bytes) = h.run(port, f);
    assert_eq!(v, Verdict::Tx(out), "frame from {port:?}");
    bytes
}

#[test]
fn an_association_through_a_cluster_ip_is_dnatted_with_its_crc_right_both_ways() {
    let mut h = harness();
    let gw = h.snap.node.gateway_mac;
    let from_client = |chunk| {
        sctp(
            CLIENT_MAC, gw, CLIENT_IP, VIP_SCTP, 40000, 9999, 0xabcd, chunk,
        )
    };
    let from_server = |chunk| sctp(BE1_MAC, gw, BE1_IP, CLIENT_IP, 7777, 40000, 0x1234, chunk);

    let out = tx(&mut h, CLIENT, &from_client(INIT), BE1);
    assert_eq!(
        decode(&out),
        (ip(CLIENT_IP), 40000, ip(BE1_IP), 7777, 0xabcd),
        "DNAT to the backend's targetPort, the verification tag untouched"
    );
    let back = tx(&mut h, BE1, &from_server(INIT_ACK), CLIENT);
    assert_eq!(
        decode(&back),
        (ip(VIP_SCTP), 9999, ip(CLIENT_IP), 40000, 0x1234),
        "the reply comes from the VIP"
    );
    tx(&mut h, CLIENT, &from_client(COOKIE_ECHO), BE1);
    tx(&mut h, BE1, &from_server(COOKIE_ACK), CLIENT);
    let data = tx(&mut h, CLIENT, &from_client(DATA), BE1);
    assert_eq!(decode(&data).2, ip(BE1_IP));
    // ABORT closes the association; only a new INIT starts one again.
    tx(&mut h, BE1, &from_server(ABORT), CLIENT);
    let (v, _) = h.run(CLIENT, &from_client(DATA));
    assert!(
        matches!(v, Verdict::Tx(BE1)),
        "a packet after ABORT follows the closed entry (not refreshed) until it expires: {v:?}"
    );
    tx(&mut h, CLIENT, &from_client(INIT), BE1);
}

#[test]
fn an_association_starts_only_with_init_and_nothing_else_passes_it_half_open() {
    let mut h = harness();
    let gw = h.snap.node.gateway_mac;
    let f = sctp(CLIENT_MAC, gw, CLIENT_IP, VIP_SCTP, 40001, 9999, 7, DATA);
    assert_eq!(h.run(CLIENT, &f).0, Verdict::Drop(DropReason::CtInvalid));
    let init = sctp(CLIENT_MAC, gw, CLIENT_IP, VIP_SCTP, 40001, 9999, 0, INIT);
    tx(&mut h, CLIENT, &init, BE1);
    assert_eq!(h.run(CLIENT, &f).0, Verdict::Drop(DropReason::CtInvalid));
}

#[test]
fn network_policy_applies_to_sctp_ports() {
    let mut h = harness();
    let gw = h.snap.node.gateway_mac;
    let denied = sctp(CLIENT_MAC, gw, CLIENT_IP, DB_IP, 40002, 9999, 0, INIT);
    assert_eq!(
        h.run(CLIENT, &denied).0,
        Verdict::Drop(DropReason::PolicyIngressDenied)
    );
    let other_port = sctp(BE1_MAC, gw, BE1_IP, DB_IP, 40003, 9998, 0, INIT);
    assert_eq!(
        h.run(BE1, &other_port).0,
        Verdict::Drop(DropReason::PolicyIngressDenied)
    );
    let allowed = sctp(BE1_MAC, gw, BE1_IP, DB_IP, 40004, 9999, 0, INIT);
    let out = tx(&mut h, BE1, &allowed, DB);
    assert_eq!(decode(&out), (ip(BE1_IP), 40004, ip(DB_IP), 9999, 0));
}

#[test]
fn a_node_port_from_outside_is_dnatted_and_masqueraded() {
    let mut h = harness();
    let uplink_mac = h.snap.node.uplink_mac;
    let f = sctp(
        ROUTER_MAC,
        uplink_mac,
        EXTERNAL,
        NODE_A,
        50000,
        NODE_PORT_SCTP,
        0,
        INIT,
    );
    let out = tx(&mut h, UPLINK, &f, BE1);
    let (src, sport, dst, dport, _) = decode(&out);
    assert_eq!((dst, dport), (ip(BE1_IP), 7777));
    assert_ne!(
        (src, sport),
        (ip(EXTERNAL), 50000),
        "externalTrafficPolicy Cluster masquerades"
    );
}

#[test]
fn an_unserved_sctp_port_of_a_cluster_ip_is_rejected() {
    let mut h = harness();
    let gw = h.snap.node.gateway_mac;
    let f = sctp(CLIENT_MAC, gw, CLIENT_IP, VIP_SCTP, 40005, 80, 0, INIT);
    let (v, out) = h.run(CLIENT, &f);
    assert_eq!(v, Verdict::Tx(CLIENT));
    assert_eq!(out[L3 + 9], 1, "ICMP");
    assert_eq!(
        (out[L3 + 20], out[L3 + 21]),
        (3, 3),
        "port unreachable, as kube-proxy rejects"
    );
}

#[test]
fn a_corrupted_sctp_packet_stays_corrupted_after_nat() {
    let mut h = harness();
    let gw = h.snap.node.gateway_mac;
    let mut f = sctp(CLIENT_MAC, gw, CLIENT_IP, VIP_SCTP, 40006, 9999, 0, INIT);
    let last = f.len() - 1;
    f[last] ^= 0x10;
    let out = tx(&mut h, CLIENT, &f, BE1);
    let s = &out[L3 + 20..];
    let mut zeroed = s.to_vec();
    zeroed[8..12].fill(0);
    assert_ne!(
        &s[8..12],
        &crc32c(&zeroed).to_le_bytes(),
        "NAT must not repair a damaged CRC"
    );
}
