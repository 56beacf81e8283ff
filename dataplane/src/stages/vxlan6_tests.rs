//! VXLAN over an IPv6 underlay through the whole pipeline, with frames built and checked by
//! etherparse (independent of `wire`).
#![allow(clippy::unwrap_used, reason = "tests: literals and fixtures")]

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use etherparse::{NetHeaders, PacketBuilder, PacketHeaders, TransportHeader};

use crate::cidr::Cidr;
use crate::drop::DropReason;
use crate::packet::{Packet, PortId, Verdict};
use crate::pipeline::Pipeline;
use crate::snapshot::Snapshot;
use crate::tables::affinity::AffinityTable;
use crate::tables::conntrack::{Conntrack, ConntrackConfig};
use crate::tables::node::{NodeConfig, OverlayMode};
use crate::tables::policy::PolicyTable;
use crate::tables::ports::{LocalPod, PortKind, PortTable};
use crate::tables::routes::{RemoteNode, RouteTable};
use crate::tables::services::ServiceTable;
use crate::tables::v6::{Pod6, Remote6, V6Node, V6Tables};
use crate::wire::{MacAddr, icmpv6, vxlan};

const UPLINK: PortId = PortId(0);
const POD: PortId = PortId(2);
const POD_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xa]);
const PEER_MAC: MacAddr = MacAddr([2, 1, 0, 0, 0, 3]);
const PEER_VTEP_MAC: MacAddr = MacAddr([2, 2, 0, 0, 0, 3]);
const NODE4: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);
const PEER4: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 2);
const POD4: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 10);
const REMOTE_POD4: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 7);
const POD6: &str = "fd00:10:244:1::a";
const REMOTE_POD6: &str = "fd00:10:244:2::7";
const NODE6: &str = "2001:db8:50::1";
const PEER6: &str = "2001:db8:50::2";

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// Which underlay addresses the node and its peer have.
#[derive(Clone, Copy)]
struct Underlay {
    node4: bool,
    node6: bool,
    peer4: bool,
    peer6: bool,
}

const V6_ONLY: Underlay = Underlay {
    node4: false,
    node6: true,
    peer4: false,
    peer6: true,
};
const DUAL: Underlay = Underlay {
    node4: true,
    node6: true,
    peer4: true,
    peer6: true,
};

fn snapshot(u: Underlay, overlay: OverlayMode) -> Snapshot {
    let mut node = NodeConfig::example("a", NODE4, "10.244.1.0/24".parse().unwrap());
    node.overlay = overlay;
    if !u.node4 {
        node.node_ip = Ipv4Addr::UNSPECIFIED;
    }
    node.node_ip6 = u.node6.then(|| v6(NODE6));
    let ports = PortTable::new(
        vec![PortKind::Uplink, PortKind::Host, PortKind::Pod],
        vec![LocalPod {
            name: "default/p".into(),
            ip: POD4,
            mac: POD_MAC,
            port: POD,
        }],
    );
    let peer4 = if u.peer4 {
        PEER4
    } else {
        Ipv4Addr::UNSPECIFIED
    };
    let peer6 = u.peer6.then(|| v6(PEER6));
    let routes = RouteTable::new(vec![RemoteNode {
        name: "b".into(),
        node_ip: peer4,
        node_ip6: peer6,
        pod_cidr: Cidr::new(Ipv4Addr::new(10, 244, 2, 0), 24).unwrap(),
        vtep_mac: PEER_VTEP_MAC,
        underlay_mac: PEER_MAC,
    }]);
    let node6 = V6Node::example(
        "fd00:10:244:1::/64".parse().unwrap(),
        "fd00:10:244::/56".parse().unwrap(),
    );
    let tables = V6Tables::new(
        node6,
        vec![Pod6 {
            name: "default/p".into(),
            ip: v6(POD6),
            mac: POD_MAC,
            port: POD,
            ip4: Some(POD4),
        }],
        vec![Remote6 {
            name: "b".into(),
            pod_cidr: "fd00:10:244:2::/64".parse().unwrap(),
            node_ip: peer4,
            node_ip6: peer6,
            node_ips: Vec::new(),
        }],
    );
    Snapshot {
        generation: 1,
        node,
        ports,
        routes: Arc::new(routes),
        services: Arc::new(ServiceTable::build(Vec::new(), &[], 251).unwrap()),
        policy: Arc::new(PolicyTable::builder().build()),
        v6: Arc::new(tables),
    }
}

struct H {
    snap: Snapshot,
    pipe: Pipeline,
}

impl H {
    fn new(u: Underlay) -> Self {
        Self::with(snapshot(u, OverlayMode::Vxlan))
    }

    fn with(snap: Snapshot) -> Self {
        let ct = Conntrack::new(ConntrackConfig {
            capacity: 1024,
            ..ConntrackConfig::default()
        });
        let mut pipe = Pipeline::new(Arc::new(ct), Arc::new(AffinityTable::new(64)), 7);
        pipe.begin_batch(1000);
        Self { snap, pipe }
    }

    fn run(&mut self, port: PortId, frame: &[u8]) -> (Verdict, Packet) {
        let mut pkt = Packet::from_frame(frame).unwrap();
        pkt.meta.in_port = port;
        let v = self.pipe.process(&self.snap, &mut pkt);
        (v, pkt)
    }
}

fn udp4(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    (src, dst): (Ipv4Addr, Ipv4Addr),
    len: usize,
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac.0, dst_mac.0)
        .ipv4(src.octets(), dst.octets(), 64)
        .udp(40000, 53);
    let mut out = Vec::new();
    b.write(&mut out, &vec![0x5a; len]).unwrap();
    // etherparse leaves DF clear; pods send with it (frag-needed needs DF).
    out[20] |= 0x40;
    let sum = {
        out[24..26].fill(0);
        crate::wire::checksum::finish(crate::wire::checksum::sum(&out[14..34]))
    };
    out[24..26].copy_from_slice(&sum.to_be_bytes());
    out
}

fn udp6(src_mac: MacAddr, dst_mac: MacAddr, (src, dst): (&str, &str), len: usize) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac.0, dst_mac.0)
        .ipv6(v6(src).octets(), v6(dst).octets(), 64)
        .udp(40000, 53);
    let mut out = Vec::new();
    b.write(&mut out, &vec![0x5a; len]).unwrap();
    out
}

fn gateway_mac(h: &H) -> MacAddr {
    h.snap.node.gateway_mac
}

/// The frame `inner` as the peer's kernel VXLAN device sends it over IPv6 (UDP checksum set).
fn from_peer6(h: &H, inner: &[u8], src: &str) -> Vec<u8> {
    let mut payload = vec![0x08, 0, 0, 0, 0, 0, 1, 0];
    payload.extend_from_slice(inner);
    let b = PacketBuilder::ethernet2(PEER_MAC.0, h.snap.node.uplink_mac.0)
        .ipv6(v6(src).octets(), v6(NODE6).octets(), 64)
        .udp(50000, vxlan::DEFAULT_PORT);
    let mut out = Vec::new();
    b.write(&mut out, &payload).unwrap();
    out
}

/// Asserts `frame` is IPv6-outer VXLAN from this node to the peer with a right UDP checksum,
/// and returns the inner frame.
fn outer6(frame: &[u8]) -> &[u8] {
    let h = PacketHeaders::from_ethernet_slice(frame).unwrap();
    assert_eq!(h.link.unwrap().ethernet2().unwrap().destination, PEER_MAC.0);
    let Some(NetHeaders::Ipv6(ip, ext)) = h.net else {
        panic!("outer IPv6 expected");
    };
    assert!(ext.is_empty(), "no extension headers");
    assert_eq!(Ipv6Addr::from(ip.source), v6(NODE6));
    assert_eq!(Ipv6Addr::from(ip.destination), v6(PEER6));
    assert_eq!(ip.hop_limit, 64);
    assert_eq!(usize::from(ip.payload_length), frame.len() - 54);
    let Some(TransportHeader::Udp(udp)) = h.transport else {
        panic!("outer UDP expected");
    };
    assert_eq!(udp.destination_port, vxlan::DEFAULT_PORT);
    assert!(udp.source_port >= 49152);
    assert_ne!(udp.checksum, 0, "UDP checksum is mandatory over IPv6");
    assert_eq!(
        udp.checksum,
        udp.calc_checksum_ipv6(&ip, &frame[62..]).unwrap()
    );
    assert_eq!(&frame[62..70], &[0x08, 0, 0, 0, 0, 0, 1, 0], "VNI 1");
    &frame[vxlan::OVERHEAD_V6..]
}

#[test]
fn ipv4_and_ipv6_pods_cross_an_ipv6_only_underlay() {
    let mut h = H::new(V6_ONLY);
    let gw = gateway_mac(&h);
    let frame4 = udp4(POD_MAC, gw, (POD4, REMOTE_POD4), 32);
    let (v, pkt) = h.run(POD, &frame4);
    assert_eq!(v, Verdict::Tx(UPLINK));
    let inner = outer6(pkt.data());
    assert_eq!(&inner[..6], &PEER_VTEP_MAC.0);
    assert_eq!(&inner[6..12], &h.snap.node.vtep_mac.0);
    assert_eq!(inner[22], 63, "inner TTL decremented");
    assert_eq!(&inner[34..], &frame4[34..]);

    let frame6 = udp6(POD_MAC, gw, (POD6, REMOTE_POD6), 32);
    let (v, pkt) = h.run(POD, &frame6);
    assert_eq!(v, Verdict::Tx(UPLINK));
    let inner = outer6(pkt.data());
    assert_eq!(&inner[12..14], &[0x86, 0xdd]);
    assert_eq!(inner[21], 63, "inner hop limit decremented");
    assert_eq!(&inner[22..], &frame6[22..]);
}

#[test]
fn a_dual_stack_underlay_carries_each_family_over_its_own() {
    let mut h = H::new(DUAL);
    let gw = gateway_mac(&h);
    let (v, pkt) = h.run(POD, &udp4(POD_MAC, gw, (POD4, REMOTE_POD4), 8));
    assert_eq!(v, Verdict::Tx(UPLINK));
    assert_eq!(&pkt.data()[12..14], &[0x08, 0x00], "IPv4 pods over IPv4");
    let (v, pkt) = h.run(POD, &udp6(POD_MAC, gw, (POD6, REMOTE_POD6), 8));
    assert_eq!(v, Verdict::Tx(UPLINK));
    outer6(pkt.data());
    // A peer with only an IPv4 underlay address gets IPv6 pods over IPv4.
    let mut h = H::new(Underlay {
        peer6: false,
        ..DUAL
    });
    let (v, pkt) = h.run(POD, &udp6(POD_MAC, gw, (POD6, REMOTE_POD6), 8));
    assert_eq!(v, Verdict::Tx(UPLINK));
    assert_eq!(&pkt.data()[12..14], &[0x08, 0x00]);
}

#[test]
fn a_peer_without_a_common_underlay_family_is_a_named_drop() {
    let mut h = H::new(Underlay {
        node4: false,
        node6: true,
        peer4: true,
        peer6: false,
    });
    let gw = gateway_mac(&h);
    let (v, _) = h.run(POD, &udp4(POD_MAC, gw, (POD4, REMOTE_POD4), 8));
    assert_eq!(v, Verdict::Drop(DropReason::VxlanNoUnderlay));
    let (v, _) = h.run(POD, &udp6(POD_MAC, gw, (POD6, REMOTE_POD6), 8));
    assert_eq!(v, Verdict::Drop(DropReason::VxlanNoUnderlay));
}

#[test]
fn ipv6_outer_vxlan_from_a_peer_is_decapsulated_for_both_inner_families() {
    let mut h = H::new(V6_ONLY);
    let vtep = h.snap.node.vtep_mac;
    let inner4 = udp4(PEER_VTEP_MAC, vtep, (REMOTE_POD4, POD4), 8);
    let (v, pkt) = h.run(UPLINK, &from_peer6(&h, &inner4, PEER6));
    assert_eq!(v, Verdict::Tx(POD));
    assert_eq!(&pkt.data()[..6], &POD_MAC.0);
    assert_eq!(&pkt.data()[34..], &inner4[34..]);
    let inner6 = udp6(PEER_VTEP_MAC, vtep, (REMOTE_POD6, POD6), 8);
    let (v, pkt) = h.run(UPLINK, &from_peer6(&h, &inner6, PEER6));
    assert_eq!(v, Verdict::Tx(POD));
    assert_eq!(&pkt.data()[22..], &inner6[22..]);
    // Inner sources are checked against the peer as over IPv4.
    let forged4 = udp4(PEER_VTEP_MAC, vtep, (Ipv4Addr::new(10, 244, 3, 1), POD4), 8);
    let (v, _) = h.run(UPLINK, &from_peer6(&h, &forged4, PEER6));
    assert_eq!(v, Verdict::Drop(DropReason::SpoofedSource));
    let forged6 = udp6(PEER_VTEP_MAC, vtep, ("fd00:10:244:3::1", POD6), 8);
    let (v, _) = h.run(UPLINK, &from_peer6(&h, &forged6, PEER6));
    assert_eq!(v, Verdict::Drop(DropReason::SpoofedSource));
}

#[test]
fn bad_ipv6_outer_vxlan_is_dropped_by_name() {
    let mut h = H::new(V6_ONLY);
    let vtep = h.snap.node.vtep_mac;
    let inner = udp4(PEER_VTEP_MAC, vtep, (REMOTE_POD4, POD4), 8);
    let good = from_peer6(&h, &inner, PEER6);
    let drop = |h: &mut H, frame: &[u8]| match h.run(UPLINK, frame).0 {
        Verdict::Drop(r) => r,
        other => panic!("forwarded: {other:?}"),
    };
    let mut zero = good.clone();
    zero[60..62].fill(0);
    assert_eq!(drop(&mut h, &zero), DropReason::VxlanBadChecksum);
    let mut wrong = good.clone();
    wrong[61] ^= 0x55;
    assert_eq!(drop(&mut h, &wrong), DropReason::VxlanBadChecksum);
    let stranger = from_peer6(&h, &inner, "2001:db8:50::99");
    assert_eq!(drop(&mut h, &stranger), DropReason::VxlanUnknownPeer);
    // Another VNI (checksum fixed up by rebuilding with that VNI).
    let mut payload = vec![0x08, 0, 0, 0, 0, 0, 2, 0];
    payload.extend_from_slice(&inner);
    let mut other_vni = Vec::new();
    PacketBuilder::ethernet2(PEER_MAC.0, h.snap.node.uplink_mac.0)
        .ipv6(v6(PEER6).octets(), v6(NODE6).octets(), 64)
        .udp(50000, vxlan::DEFAULT_PORT)
        .write(&mut other_vni, &payload)
        .unwrap();
    assert_eq!(drop(&mut h, &other_vni), DropReason::VxlanBadHeader);
    // A hop-by-hop header (PadN) before the UDP header.
    let mut ext = good[..54].to_vec();
    ext[20] = 0; // next header: hop-by-hop
    let plen = u16::from_be_bytes([good[18], good[19]]) + 8;
    ext[18..20].copy_from_slice(&plen.to_be_bytes());
    ext.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]);
    ext.extend_from_slice(&good[54..]);
    assert_eq!(drop(&mut h, &ext), DropReason::VxlanOuterExtHeaders);
    // Truncated: the UDP length claims more than the packet holds.
    let mut short = good.clone();
    short[58..60].copy_from_slice(&2000u16.to_be_bytes());
    assert_eq!(drop(&mut h, &short), DropReason::Malformed);
    // Still fine after all that.
    assert_eq!(h.run(UPLINK, &good).0, Verdict::Tx(POD));
}

#[test]
fn pods_get_70_bytes_less_and_too_big_answers_say_so() {
    let mut h = H::new(V6_ONLY);
    assert_eq!(h.snap.node.pod_mtu(), 1430);
    let gw = gateway_mac(&h);
    // Fits exactly: 1430-byte IPv4 packet -> 1500 on the wire past the outer Ethernet.
    let (v, pkt) = h.run(POD, &udp4(POD_MAC, gw, (POD4, REMOTE_POD4), 1430 - 28));
    assert_eq!(v, Verdict::Tx(UPLINK));
    assert_eq!(pkt.len(), 14 + 1500);
    let (v, pkt) = h.run(POD, &udp4(POD_MAC, gw, (POD4, REMOTE_POD4), 1431 - 28));
    assert_eq!(v, Verdict::Tx(POD), "frag-needed back to the pod");
    let h4 = PacketHeaders::from_ethernet_slice(pkt.data()).unwrap();
    let Some(TransportHeader::Icmpv4(icmp)) = h4.transport else {
        panic!("ICMP expected");
    };
    assert_eq!(
        icmp.icmp_type,
        etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1430 }
        )
    );
    let (v, pkt) = h.run(POD, &udp6(POD_MAC, gw, (POD6, REMOTE_POD6), 1431 - 48));
    assert_eq!(v, Verdict::Tx(POD), "packet too big back to the pod");
    let l4 = 14 + 40;
    assert_eq!(pkt.data()[l4], icmpv6::PACKET_TOO_BIG);
    assert_eq!(&pkt.data()[l4 + 4..l4 + 8], &1430u32.to_be_bytes());
    // An IPv4-only underlay keeps 50 bytes.
    let four = snapshot(
        Underlay {
            node4: true,
            node6: false,
            peer4: true,
            peer6: false,
        },
        OverlayMode::Vxlan,
    );
    assert_eq!(four.node.pod_mtu(), 1450);
}

#[test]
fn the_ipv6_underlay_address_is_answered_by_neighbour_discovery_without_ipv6_pods() {
    let mut snap = snapshot(V6_ONLY, OverlayMode::Vxlan);
    snap.v6 = Arc::new(V6Tables::default());
    let mut h = H::with(snap);
    let target = v6(NODE6);
    let dst = icmpv6::solicited_node(target);
    let b = PacketBuilder::ethernet2(PEER_MAC.0, icmpv6::multicast_mac(dst).0)
        .ipv6(v6(PEER6).octets(), dst.octets(), 255)
        .icmpv6_raw(icmpv6::NEIGHBOR_SOLICIT, 0, [0; 4]);
    let mut body = target.octets().to_vec();
    body.extend_from_slice(&[1, 1]);
    body.extend_from_slice(&PEER_MAC.0);
    let mut ns = Vec::new();
    b.write(&mut ns, &body).unwrap();
    let (v, pkt) = h.run(UPLINK, &ns);
    assert_eq!(v, Verdict::Tx(UPLINK));
    let d = pkt.data();
    assert_eq!(&d[..6], &PEER_MAC.0);
    assert_eq!(&d[6..12], &h.snap.node.uplink_mac.0);
    assert_eq!(d[54], icmpv6::NEIGHBOR_ADVERT);
    assert_eq!(&d[62..78], &target.octets());
    // Other IPv6 traffic still finds IPv6 disabled.
    let other = udp6(PEER_MAC, h.snap.node.uplink_mac, (PEER6, NODE6), 8);
    assert_eq!(
        h.run(UPLINK, &other).0,
        Verdict::Drop(DropReason::Ipv6Disabled)
    );
}

#[test]
fn routed_mode_sends_both_families_to_the_next_hop_with_ipv6_node_addresses() {
    let mut h = H::with(snapshot(V6_ONLY, OverlayMode::Routed));
    let gw = gateway_mac(&h);
    let next_hop = h.snap.node.uplink_next_hop_mac;
    let (v, pkt) = h.run(POD, &udp6(POD_MAC, gw, (POD6, REMOTE_POD6), 8));
    assert_eq!(v, Verdict::Tx(UPLINK));
    assert_eq!(&pkt.data()[..6], &next_hop.0);
    assert_eq!(&pkt.data()[12..14], &[0x86, 0xdd], "not encapsulated");
    let (v, pkt) = h.run(POD, &udp4(POD_MAC, gw, (POD4, REMOTE_POD4), 8));
    assert_eq!(v, Verdict::Tx(UPLINK));
    assert_eq!(&pkt.data()[..6], &next_hop.0);
    assert_eq!(h.snap.node.pod_mtu(), 1500);
    // Back from the router.
    let back = udp6(next_hop, h.snap.node.uplink_mac, (REMOTE_POD6, POD6), 8);
    assert_eq!(h.run(UPLINK, &back).0, Verdict::Tx(POD));
}
