#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::time::Duration;

use dataplane::drop::{DropCounters, DropReason};
use dataplane::flow::{FlowKey, L4Proto};
use dataplane::tables::conntrack::{CtStats, FlowState, FlowView, flags};
use dataplane::worker::{PortCounters, WorkerReport};

use super::*;
use crate::node::observe::Frame;
use crate::node::pcap::{pcap_header, pcap_record};
use crate::node::ports::{PortLabel, PortNames};
use crate::sync::metrics::SyncMetrics;

fn ip(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

#[test]
fn a_dnat_flow_prints_like_conntrack_l() {
    let view = FlowView {
        original: FlowKey::new(L4Proto::Tcp, ip("10.244.0.2"), 40000, ip("10.96.0.20"), 80),
        reply: FlowKey::new(
            L4Proto::Tcp,
            ip("10.244.0.3"),
            8080,
            ip("10.244.0.2"),
            40000,
        ),
        state: FlowState::Established,
        service: 1,
        backend: 0,
        flags: flags::DNAT,
        expires_in: 86399,
    };
    assert_eq!(
        conntrack_line(&view),
        "tcp     6  86399 ESTABLISHED src=10.244.0.2 dst=10.96.0.20 sport=40000 dport=80 \
         src=10.244.0.3 dst=10.244.0.2 sport=8080 dport=40000 [ASSURED] [DNAT]"
    );
    let udp = FlowView {
        original: FlowKey::new(L4Proto::Udp, ip("10.244.0.2"), 5353, ip("1.1.1.1"), 53),
        reply: FlowKey::new(L4Proto::Udp, ip("1.1.1.1"), 53, ip("192.168.1.5"), 33000),
        state: FlowState::UdpUnreplied,
        service: 0,
        backend: 0,
        flags: flags::SNAT,
        expires_in: 29,
    };
    assert_eq!(
        conntrack_line(&udp),
        "udp     17 29 src=10.244.0.2 dst=1.1.1.1 sport=5353 dport=53 \
         src=1.1.1.1 dst=192.168.1.5 sport=53 dport=33000 [UNREPLIED] [SNAT]"
    );
}

#[test]
fn pcap_bytes_are_the_classic_little_endian_format() {
    assert_eq!(
        pcap_header(),
        [
            0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0,
            0
        ]
    );
    let mut out = Vec::new();
    pcap_record(
        &Frame {
            at: Duration::new(1_700_000_000, 250_000_000),
            data: vec![0xaa, 0xbb, 0xcc],
        },
        &mut out,
    );
    assert_eq!(
        out,
        [
            0x00, 0xf1, 0x53, 0x65, 0x90, 0xd0, 0x03, 0x00, 3, 0, 0, 0, 3, 0, 0, 0, 0xaa, 0xbb,
            0xcc
        ]
    );
}

fn names() -> PortNames {
    let mut names = PortNames::default();
    names.0.insert(
        0,
        PortLabel {
            name: "uplink".to_owned(),
            interface: "eth0".to_owned(),
        },
    );
    names.0.insert(
        2,
        PortLabel {
            name: "default/web".to_owned(),
            interface: "fp0123456789".to_owned(),
        },
    );
    names
}

#[test]
fn metrics_label_ports_by_name_and_list_every_drop_reason() {
    let mut drops = DropCounters::default();
    drops.count(DropReason::Malformed);
    drops.count(DropReason::Malformed);
    let report = WorkerReport {
        worker: 1,
        drops,
        ports: vec![
            PortCounters {
                rx_packets: 5,
                rx_dropped: 6,
                ..PortCounters::default()
            },
            PortCounters::default(),
            PortCounters {
                tx_packets: 7,
                tx_refused: 1,
                ..PortCounters::default()
            },
        ],
        ..WorkerReport::default()
    };
    let sync = SyncMetrics::default();
    let input = MetricsInput {
        reports: &[report],
        names: &names(),
        conntrack: CtStats {
            entries: 3,
            evictions: 4,
            evictions_by_state: {
                let mut by_state = [0; FlowState::ALL.len()];
                by_state[FlowState::SynSent.index()] = 4;
                by_state
            },
            limited_source: 5,
            ..CtStats::default()
        },
        conntrack_capacity: 100,
        adopted_flows: 2,
        generation: 9,
        sync: &sync,
        monitor_lost: 0,
        capture_lost: 0,
    };
    let text = metrics(&input);
    for line in [
        "ferroplane_port_rx_packets_total{worker=\"1\",port=\"uplink\",interface=\"eth0\"} 5",
        "ferroplane_port_tx_packets_total{worker=\"1\",port=\"default/web\",interface=\"fp0123456789\"} 7",
        "ferroplane_port_tx_ring_full_total{worker=\"1\",port=\"default/web\",interface=\"fp0123456789\"} 1",
        "ferroplane_port_rx_dropped_total{worker=\"1\",port=\"uplink\",interface=\"eth0\"} 6",
        "ferroplane_drops_total{worker=\"1\",reason=\"malformed\"} 2",
        "ferroplane_drops_total{worker=\"1\",reason=\"ct_table_full\"} 0",
        "ferroplane_conntrack_entries 3",
        "ferroplane_conntrack_evictions_total 4",
        "ferroplane_conntrack_evicted_total{state=\"SYN_SENT\"} 4",
        "ferroplane_conntrack_evicted_total{state=\"ESTABLISHED\"} 0",
        "ferroplane_conntrack_limited_source_total 5",
        "ferroplane_conntrack_adopted_flows 2",
        "ferroplane_snapshot_generation 9",
        "ferroplane_sync_proxy_rules_syncs_total 0",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
    }
    assert!(
        !text.contains("port=\"1\""),
        "an unlabelled port without traffic is left out"
    );
    let json = stats(&input, "node-a");
    assert_eq!(json["workers"][0]["drops"]["malformed"], 2);
    assert_eq!(json["conntrack"]["evicted_by_state"]["SYN_SENT"], 4);
    assert_eq!(json["conntrack"]["limited_source"], 5);
    assert_eq!(json["workers"][0]["ports"][1]["name"], "default/web");
    assert_eq!(json["conntrack"]["entries"], 3);
}
