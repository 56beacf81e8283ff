//! What the pipeline mode forwards: UDP from local pod 0 to a ClusterIP whose only endpoint is
//! local pod 1, so every frame is classified, looked up in conntrack (a hit once the flow's
//! first packet inserted it), DNATed to the endpoint, checked against pod 0's egress policies
//! on the post-DNAT destination, and routed out of pod 1's port. Frames enter on path A and
//! leave on path B.
//!
//! Invariants:
//! - Frames are 60 bytes, the minimum Ethernet frame: 64 bytes on a wire that carries the
//!   4-byte FCS (veth and TAP do not).
//! - The tables are the bench fixture's node (two local pods, `FILLER_SERVICES` Services with
//!   remote endpoints beside the measured one, pod 0 egress-isolated by
//!   `POLICIES / 2` policies that allow the DNATed destination); deterministic.

use std::net::Ipv4Addr;
use std::sync::Arc;

use dataplane::flow::L4Proto;
use dataplane::packet::PortId;
use dataplane::snapshot::Snapshot;
use dataplane::tables::services::{Backend, Scheduler, ServiceSpec, ServiceTable};
use dataplane::wire::{EthernetFrame, Ipv4Packet, UdpPacket, ethernet, ipv4};

use crate::fixture::{self, FIRST_POD, Scale};
use crate::traffic::udp_frame;

/// Bytes of every generated frame (no FCS).
pub const FRAME_LEN: usize = 60;
/// UDP flows the generator cycles through (source ports `FIRST_SOURCE_PORT..`).
pub const FLOWS: u16 = 1024;
pub const FIRST_SOURCE_PORT: u16 = 10_000;
/// Services with remote endpoints besides the measured one, so lookups run on a table of a
/// realistic size.
pub const FILLER_SERVICES: u32 = 1_000;
pub const POLICIES: u32 = 100;
/// The measured Service's port, and its endpoint's target port: UDP 53, which the fixture's
/// egress policies allow inside the cluster CIDR.
pub const SERVICE_PORT: u16 = 53;
pub const TARGET_PORT: u16 = 53;

/// The port frames enter on (pod 0) and the one they leave on (pod 1).
pub const POD_A: PortId = PortId(FIRST_POD);
pub const POD_B: PortId = PortId(FIRST_POD + 1);

/// The measured Service's ClusterIP: the one after the fillers'.
pub fn service_vip() -> Ipv4Addr {
    fixture::service_vip(FILLER_SERVICES)
}

/// A UDP destination a counted frame must carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expect {
    pub dst: Ipv4Addr,
    pub dport: u16,
}

impl Expect {
    /// What the reflector sends back: the frame as sent (only the MACs swapped).
    pub fn reflected() -> Self {
        Self {
            dst: service_vip(),
            dport: SERVICE_PORT,
        }
    }

    /// What the pipeline sends out of pod 1's port: the frame DNATed to the endpoint.
    pub fn forwarded() -> Self {
        Self {
            dst: fixture::local_pod_ip(1),
            dport: TARGET_PORT,
        }
    }

    /// Whether `frame` is IPv4/UDP to this destination.
    pub fn matches(&self, frame: &[u8]) -> bool {
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return false;
        };
        if eth.ethertype() != ethernet::ETHERTYPE_IPV4 {
            return false;
        }
        let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
            return false;
        };
        if ip.protocol() != ipv4::PROTO_UDP || ip.dst_addr() != self.dst {
            return false;
        }
        UdpPacket::new_checked(ip.payload()).is_ok_and(|udp| udp.dst_port() == self.dport)
    }
}

/// One frame per flow, pod 0 -> ClusterIP, addressed to the node's gateway MAC.
pub fn frames(snap: &Snapshot) -> Vec<Vec<u8>> {
    let macs = (fixture::local_pod_mac(0), snap.node.gateway_mac);
    let payload = FRAME_LEN - ethernet::HEADER_LEN - ipv4::HEADER_LEN - 8;
    (0..FLOWS)
        .map(|flow| {
            udp_frame(
                macs,
                (fixture::local_pod_ip(0), FIRST_SOURCE_PORT + flow),
                (service_vip(), SERVICE_PORT),
                payload,
            )
        })
        .collect()
}

fn filler(s: u32) -> ServiceSpec {
    ServiceSpec {
        name: Arc::from(format!("default/filler-{s}:http")),
        proto: L4Proto::Tcp,
        port: 80,
        cluster_ips: vec![fixture::service_vip(s)],
        external_ips: vec![],
        lb_ips: vec![],
        node_port: None,
        backends: (0..4)
            .map(|j| Backend {
                ip: fixture::endpoint_ip(s, j),
                port: fixture::TARGET_PORT,
                node_local: false,
                serving: true,
                terminating: false,
                pod: None,
            })
            .collect(),
        scheduler: Scheduler::Random,
        affinity_timeout: None,
        internal_local: false,
        external_local: false,
        lb_source_ranges: vec![],
    }
}

fn measured_service() -> ServiceSpec {
    ServiceSpec {
        name: Arc::from("default/io-sink:dns"),
        proto: L4Proto::Udp,
        port: SERVICE_PORT,
        cluster_ips: vec![service_vip()],
        backends: vec![Backend {
            ip: fixture::local_pod_ip(1),
            port: TARGET_PORT,
            node_local: true,
            serving: true,
            terminating: false,
            pod: Some(Arc::from("default/client-1")),
        }],
        ..filler(FILLER_SERVICES)
    }
}

/// The node's tables for the pipeline mode.
pub fn snapshot() -> Snapshot {
    let mut snap = fixture::snapshot(Scale {
        services: 0,
        endpoints_per_service: 0,
        policies: POLICIES,
        local_pods: 2,
    });
    let mut specs: Vec<ServiceSpec> = (0..FILLER_SERVICES).map(filler).collect();
    specs.push(measured_service());
    let (services, errors) =
        ServiceTable::build_lenient(specs, &snap.node.node_port_addresses, 251);
    // Deterministic input: an error here is a bug in this file, not a runtime condition.
    assert!(errors.is_empty(), "io bench services: {errors:?}");
    snap.services = std::sync::Arc::new(services);
    snap
}
