//! Address ownership (security review H5, CVE-2020-8554): an externalIP or LB IP owns only
//! its Service's (ip, port, proto) front ends. Every other port of that address goes on
//! exactly as if no Service were there; only a ClusterIP owns its whole address.

mod common;

use std::sync::Arc;

use common::frames::{self, L4};
use common::*;
use dataplane::drop::DropReason;
use dataplane::flow::L4Proto;
use dataplane::packet::{PortId, Verdict};
use dataplane::pipeline::TraceEvent;
use dataplane::tables::services::{Backend, Scheduler, ServiceSpec, ServiceTable};

const HIJACK_CLUSTER_IP: &str = "10.96.0.200";
const LB_OTHER: &str = "198.51.100.20";

/// A Service that names node B's address as an externalIP (the review's repro) and an LB IP.
fn hijacker() -> ServiceSpec {
    ServiceSpec {
        name: Arc::from("default/hijack:x"),
        proto: L4Proto::Tcp,
        port: 9999,
        cluster_ips: vec![ip(HIJACK_CLUSTER_IP)],
        external_ips: vec![ip(NODE_B)],
        lb_ips: vec![ip(LB_OTHER)],
        node_port: None,
        backends: vec![Backend {
            ip: ip(REMOTE_BE),
            port: 8080,
            node_local: false,
            serving: true,
            terminating: false,
            pod: None,
        }],
        scheduler: Scheduler::Random,
        affinity_timeout: None,
        internal_local: false,
        external_local: false,
        lb_source_ranges: vec![],
    }
}

fn with_hijacker() -> Harness {
    let mut h = Harness::new().reproducible();
    let mut specs = services();
    specs.push(hijacker());
    let table = ServiceTable::build(specs, &h.snap.node.node_port_addresses, 251).expect("table");
    h.snap.services = Arc::new(table);
    h
}

fn syn(
    src_mac: dataplane::wire::MacAddr,
    h: &Harness,
    src: &str,
    dst: &str,
    dport: u16,
) -> Vec<u8> {
    frames::ipv4(
        src_mac,
        h.snap.node.gateway_mac,
        ip(src),
        ip(dst),
        64,
        true,
        L4::Syn {
            sport: 41000,
            dport,
            seq: 1,
        },
        b"x",
    )
}

/// Runs the frame with and without the hijacking Service; asserts identical outcomes.
fn same_as_without_service(
    port: PortId,
    src_mac: dataplane::wire::MacAddr,
    src: &str,
    dst: &str,
    dport: u16,
) -> Verdict {
    let mut plain = Harness::new().reproducible();
    let mut hijacked = with_hijacker();
    let f = syn(src_mac, &plain, src, dst, dport);
    let (v_plain, out_plain) = plain.run(port, &f);
    let (v, out) = hijacked.run(port, &f);
    assert_eq!(v, v_plain, "{src} -> {dst}:{dport} from {port:?}");
    assert_eq!(out, out_plain, "{src} -> {dst}:{dport} leaves unchanged");
    assert_ne!(v, Verdict::Drop(DropReason::VipNoService));
    v
}

#[test]
fn pod_reaches_other_ports_of_a_node_address_named_as_external_ip() {
    let v = same_as_without_service(CLIENT, CLIENT_MAC, CLIENT_IP, NODE_B, 10250);
    assert_eq!(v, Verdict::Tx(UPLINK), "routed to node B");
}

#[test]
fn host_reaches_other_ports_of_a_node_address_named_as_external_ip() {
    let host_mac = Harness::new().snap.node.host_mac;
    let v = same_as_without_service(HOST, host_mac, NODE_A, NODE_B, 10256);
    assert_eq!(v, Verdict::Tx(UPLINK), "the host's own traffic to node B");
}

#[test]
fn other_ports_of_an_lb_ip_go_on_as_if_no_service_were_there() {
    same_as_without_service(CLIENT, CLIENT_MAC, CLIENT_IP, LB_OTHER, 22);
    let host_mac = Harness::new().snap.node.host_mac;
    same_as_without_service(HOST, host_mac, NODE_A, LB_OTHER, 22);
}

#[test]
fn the_service_port_itself_is_still_balanced() {
    let mut h = with_hijacker();
    h.pipe.enable_trace();
    let f = syn(CLIENT_MAC, &h, CLIENT_IP, NODE_B, 9999);
    let (v, _) = h.run(CLIENT, &f);
    assert_eq!(v, Verdict::Tx(UPLINK));
    let trace = h.pipe.take_trace();
    assert!(
        trace.iter().any(|e| matches!(
            e,
            TraceEvent::Service { backend, .. } if *backend == (ip(REMOTE_BE), 8080)
        )),
        "externalIP:port is DNATed: {trace:?}"
    );
}

#[test]
fn a_cluster_ip_still_owns_its_unserved_ports() {
    let mut h = with_hijacker();
    let f = syn(CLIENT_MAC, &h, CLIENT_IP, HIJACK_CLUSTER_IP, 22);
    assert_eq!(
        h.run(CLIENT, &f).0,
        Verdict::Tx(CLIENT),
        "rejected (TCP RST)"
    );
    assert_eq!(h.pipe.stats.rejects, 1);
}
