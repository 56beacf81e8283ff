//! Flushing stale flows when a new snapshot replaces the old one (user-needs A3, A5, A10, C1).

mod common;

use common::frames::{self, L4};
use common::*;
use dataplane::reconcile::flush_stale;
use dataplane::snapshot::Snapshot;
use dataplane::tables::node::OverlayMode;
use dataplane::tables::ports::{PortKind, PortTable};
use dataplane::tables::services::{ServiceSpec, ServiceTable};

fn with_services(mut f: impl FnMut(&mut Vec<ServiceSpec>)) -> Snapshot {
    let mut snap = snapshot(OverlayMode::Vxlan);
    let mut specs = services();
    f(&mut specs);
    snap.services = std::sync::Arc::new(
        ServiceTable::build(specs, &snap.node.node_port_addresses, 251).expect("services"),
    );
    snap
}

fn open_flows(h: &mut Harness) {
    let gw = h.snap.node.gateway_mac;
    let dns = frames::ipv4(
        CLIENT_MAC,
        gw,
        ip(CLIENT_IP),
        ip(VIP_DNS),
        64,
        true,
        L4::Udp {
            sport: 5000,
            dport: 53,
        },
        b"q",
    );
    let web = frames::ipv4(
        CLIENT_MAC,
        gw,
        ip(CLIENT_IP),
        ip(VIP_STORE),
        64,
        true,
        L4::Syn {
            sport: 5001,
            dport: 80,
            seq: 1,
        },
        b"",
    );
    let local = frames::ipv4(
        CLIENT_MAC,
        gw,
        ip(CLIENT_IP),
        ip(BE1_IP),
        64,
        true,
        L4::Syn {
            sport: 5002,
            dport: 80,
            seq: 1,
        },
        b"",
    );
    h.expect_tx(CLIENT, &dns, UPLINK);
    h.expect_tx(CLIENT, &web, UPLINK);
    h.expect_tx(CLIENT, &local, BE1);
    assert_eq!(h.pipe.conntrack().len(), 3);
}

#[test]
fn removing_a_udp_backend_flushes_its_flows_but_keeps_tcp() {
    let mut h = Harness::new();
    open_flows(&mut h);
    let new = with_services(|specs| {
        for s in specs.iter_mut() {
            s.backends.clear();
        }
    });
    let report = flush_stale(h.pipe.conntrack(), &h.snap, &new, 1000);
    assert_eq!(report.udp_backend_removed, 1, "the DNS flow is gone");
    assert_eq!(report.total(), 1, "TCP flows finish gracefully (C1)");
    assert_eq!(h.pipe.conntrack().len(), 2);
}

#[test]
fn changing_a_service_port_flushes_the_flows_of_its_old_front_end() {
    let mut h = Harness::new();
    open_flows(&mut h);
    let new = with_services(|specs| {
        for s in specs
            .iter_mut()
            .filter(|s| &*s.name == "default/store-be:http")
        {
            for b in s.backends.iter_mut() {
                b.port = 9090;
            }
        }
    });
    let report = flush_stale(h.pipe.conntrack(), &h.snap, &new, 1000);
    assert_eq!(
        report.service_changed, 1,
        "targetPort changed: flows to the old port go"
    );
    assert_eq!(report.total(), 1);
    let same = with_services(|_| {});
    assert_eq!(
        flush_stale(h.pipe.conntrack(), &h.snap, &same, 1000).total(),
        0,
        "no change, no flush"
    );
}

#[test]
fn deleting_a_local_pod_flushes_its_flows() {
    let mut h = Harness::new();
    open_flows(&mut h);
    let mut new = snapshot(OverlayMode::Vxlan);
    let pods: Vec<_> = new
        .ports
        .pods()
        .filter(|p| p.ip != ip(BE1_IP))
        .cloned()
        .collect();
    new.ports = PortTable::new(
        vec![
            PortKind::Uplink,
            PortKind::Host,
            PortKind::Pod,
            PortKind::Pod,
            PortKind::Pod,
        ],
        pods,
    );
    let report = flush_stale(h.pipe.conntrack(), &h.snap, &new, 1000);
    assert_eq!(report.pod_deleted, 1);
    assert_eq!(h.pipe.conntrack().len(), 2);
}
