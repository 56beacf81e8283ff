//! The IPv6 path with real frames (built by etherparse, independent of `wire`).
#![allow(clippy::unwrap_used, reason = "tests: literals and fixtures")]

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use etherparse::{IcmpEchoHeader, Icmpv6Type, PacketBuilder};

use crate::cidr::Cidr;
use crate::drop::DropReason;
use crate::packet::{Packet, PortId, Verdict};
use crate::pipeline::Pipeline;
use crate::snapshot::Snapshot;
use crate::tables::affinity::AffinityTable;
use crate::tables::conntrack::{Conntrack, ConntrackConfig};
use crate::tables::node::{NodeConfig, OverlayMode};
use crate::tables::policy::{PodRules, PolicyTable};
use crate::tables::ports::{LocalPod, PortKind, PortTable};
use crate::tables::routes::{RemoteNode, RouteTable};
use crate::tables::services::ServiceTable;
use crate::tables::v6::{GATEWAY_LINK_LOCAL, Pod6, Remote6, Service6, V6Node, V6Tables};
use crate::wire::icmpv6::{self, Icmpv6Packet};
use crate::wire::{Ipv6Packet, MacAddr};

const UPLINK: PortId = PortId(0);
const HOST: PortId = PortId(1);
const POD_A: PortId = PortId(2);
const POD_B: PortId = PortId(3);
const MAC_A: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xa]);
const MAC_B: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xb]);
const PEER_MAC: MacAddr = MacAddr([2, 1, 0, 0, 0, 3]);
const PEER_VTEP_MAC: MacAddr = MacAddr([2, 2, 0, 0, 0, 3]);

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

const A: &str = "fd00:10:244:1::a";
const B: &str = "fd00:10:244:1::b";
const REMOTE_POD: &str = "fd00:10:244:2::7";
const NODE6: &str = "2001:db8::1";
/// IPv6 ClusterIPs with frontends (`fd00:10:96::10` has none).
const SVC: &str = "fd00:10:96::20";
const SVC2: &str = "fd00:10:96::21";
const PEER6: &str = "2001:db8::2";
const NODE4: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);
const PEER4: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 2);

fn snapshot(overlay: OverlayMode, policy: PolicyTable, with_v6: bool) -> Snapshot {
    let mut node = NodeConfig::example("a", NODE4, "10.244.1.0/24".parse().unwrap());
    node.overlay = overlay;
    let pod4 = |ip: [u8; 4], mac, port| LocalPod {
        name: "default/p".into(),
        ip: Ipv4Addr::from(ip),
        mac,
        port,
    };
    let ports = PortTable::new(
        vec![
            PortKind::Uplink,
            PortKind::Host,
            PortKind::Pod,
            PortKind::Pod,
        ],
        vec![
            pod4([10, 244, 1, 10], MAC_A, POD_A),
            pod4([10, 244, 1, 11], MAC_B, POD_B),
        ],
    );
    let routes = RouteTable::new(vec![RemoteNode {
        name: "b".into(),
        node_ip: PEER4,
        node_ip6: None,
        pod_cidr: Cidr::new(Ipv4Addr::new(10, 244, 2, 0), 24).unwrap(),
        vtep_mac: PEER_VTEP_MAC,
        underlay_mac: PEER_MAC,
    }]);
    let mut node6 = V6Node::example(
        "fd00:10:244:1::/64".parse().unwrap(),
        "fd00:10:244::/56".parse().unwrap(),
    );
    node6.node_ips = vec![v6(NODE6)];
    node6.service_cidrs = vec!["fd00:10:96::/112".parse().unwrap()];
    let pod6 = |ip: &str, mac, port, ip4: [u8; 4]| Pod6 {
        name: "default/p".into(),
        ip: v6(ip),
        mac,
        port,
        ip4: Some(Ipv4Addr::from(ip4)),
    };
    let tables = V6Tables::new(
        node6,
        vec![
            pod6(A, MAC_A, POD_A, [10, 244, 1, 10]),
            pod6(B, MAC_B, POD_B, [10, 244, 1, 11]),
        ],
        vec![Remote6 {
            name: "b".into(),
            pod_cidr: "fd00:10:244:2::/64".parse().unwrap(),
            node_ip: PEER4,
            node_ip6: None,
            node_ips: vec![v6(PEER6)],
        }],
    )
    .with_services(vec![
        Service6::cluster_ip(v6(SVC), 53, 17, vec![(v6(B), 5353)]),
        Service6::cluster_ip(v6(SVC), 80, 6, vec![(v6(B), 8080)]),
        Service6::cluster_ip(
            v6(SVC2),
            53,
            17,
            vec![(v6(B), 5353), (v6(REMOTE_POD), 5353)],
        ),
    ]);
    Snapshot {
        generation: 1,
        node,
        ports,
        routes: Arc::new(routes),
        services: Arc::new(ServiceTable::build(Vec::new(), &[], 251).unwrap()),
        policy: Arc::new(policy),
        v6: Arc::new(if with_v6 { tables } else { V6Tables::default() }),
    }
}

struct H {
    snap: Snapshot,
    pipe: Pipeline,
}

impl H {
    fn new() -> Self {
        Self::with(OverlayMode::Vxlan, PolicyTable::builder().build())
    }

    fn with(overlay: OverlayMode, policy: PolicyTable) -> Self {
        let ct = Conntrack::new(ConntrackConfig {
            capacity: 1024,
            ..ConntrackConfig::default()
        });
        let mut pipe = Pipeline::new(Arc::new(ct), Arc::new(AffinityTable::new(64)), 7);
        pipe.begin_batch(1000);
        Self {
            snap: snapshot(overlay, policy, true),
            pipe,
        }
    }

    fn run(&mut self, port: PortId, frame: &[u8]) -> (Verdict, Packet) {
        let mut pkt = Packet::from_frame(frame).unwrap();
        pkt.meta.in_port = port;
        let v = self.pipe.process(&self.snap, &mut pkt);
        (v, pkt)
    }

    fn verdict(&mut self, port: PortId, frame: &[u8]) -> Verdict {
        self.run(port, frame).0
    }
}

fn udp(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    (src, dst): (&str, &str),
    hop: u8,
    len: usize,
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac.0, dst_mac.0)
        .ipv6(v6(src).octets(), v6(dst).octets(), hop)
        .udp(40000, 53);
    let payload = vec![0x5a; len];
    let mut out = Vec::new();
    b.write(&mut out, &payload).unwrap();
    out
}

fn from_a(dst: &str) -> Vec<u8> {
    udp(MAC_A, gateway_mac(), (A, dst), 64, 16)
}

fn gateway_mac() -> MacAddr {
    NodeConfig::example("a", NODE4, "10.244.1.0/24".parse().unwrap()).gateway_mac
}

fn uplink_mac() -> MacAddr {
    NodeConfig::example("a", NODE4, "10.244.1.0/24".parse().unwrap()).uplink_mac
}

/// A neighbour solicitation for `target` with a source link-layer option `sll`.
fn solicitation(
    src_mac: MacAddr,
    src: Ipv6Addr,
    target: Ipv6Addr,
    hop: u8,
    sll: MacAddr,
) -> Vec<u8> {
    let dst = icmpv6::solicited_node(target);
    let b = PacketBuilder::ethernet2(src_mac.0, icmpv6::multicast_mac(dst).0)
        .ipv6(src.octets(), dst.octets(), hop)
        .icmpv6_raw(icmpv6::NEIGHBOR_SOLICIT, 0, [0; 4]);
    let mut body = target.octets().to_vec();
    body.extend_from_slice(&[1, 1]);
    body.extend_from_slice(&sll.0);
    let mut out = Vec::new();
    b.write(&mut out, &body).unwrap();
    out
}

/// Inserts `ext` (extension headers whose first next-header byte is patched to the current
/// upper layer) after the fixed header and makes `first` the fixed header's next header.
fn with_ext(frame: &[u8], first: u8, mut ext: Vec<u8>) -> Vec<u8> {
    let upper = frame[20];
    let last = ext.len() - 8;
    // Each test header is 8 bytes; the last one's next header is the upper layer.
    ext[last] = if ext[last] == 0xff { upper } else { ext[last] };
    let mut out = frame[..54].to_vec();
    out[20] = first;
    let plen = u16::from_be_bytes([frame[18], frame[19]]) as usize + ext.len();
    out[18..20].copy_from_slice(&(plen as u16).to_be_bytes());
    out.extend_from_slice(&ext);
    out.extend_from_slice(&frame[54..]);
    out
}

fn vxlan_from_peer(inner: &[u8]) -> Vec<u8> {
    let mut payload = vec![0x08, 0, 0, 0, 0, 0, 1, 0];
    payload.extend_from_slice(inner);
    let b = PacketBuilder::ethernet2(PEER_MAC.0, uplink_mac().0)
        .ipv4(PEER4.octets(), NODE4.octets(), 64)
        .udp(50000, crate::wire::vxlan::DEFAULT_PORT);
    let mut out = Vec::new();
    b.write(&mut out, &payload).unwrap();
    out
}

fn udp_ports(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    (src, dst): (&str, &str),
    (sport, dport): (u16, u16),
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac.0, dst_mac.0)
        .ipv6(v6(src).octets(), v6(dst).octets(), 64)
        .udp(sport, dport);
    let mut out = Vec::new();
    b.write(&mut out, &[0x5a; 16]).unwrap();
    out
}

fn ip6(pkt: &Packet, l3: usize) -> Ipv6Packet<&[u8]> {
    Ipv6Packet::new_checked(&pkt.data()[l3..]).unwrap()
}

#[test]
fn neighbour_solicitation_for_the_gateway_is_answered_on_the_pod_port() {
    let mut h = H::new();
    let src = v6("fe80::a");
    let ns = solicitation(MAC_A, src, GATEWAY_LINK_LOCAL, 255, MAC_A);
    let (v, pkt) = h.run(POD_A, &ns);
    assert_eq!(v, Verdict::Tx(POD_A));
    let frame = pkt.data();
    assert_eq!(&frame[..6], &MAC_A.0);
    assert_eq!(&frame[6..12], &gateway_mac().0);
    let ip = ip6(&pkt, 14);
    assert_eq!(
        (ip.src_addr(), ip.dst_addr(), ip.hop_limit()),
        (GATEWAY_LINK_LOCAL, src, 255)
    );
    let na = Icmpv6Packet::new_checked(ip.payload()).unwrap();
    assert_eq!(na.msg_type(), icmpv6::NEIGHBOR_ADVERT);
    assert_eq!(na.nd_target(), Some(GATEWAY_LINK_LOCAL));
    assert!(na.verify_checksum(GATEWAY_LINK_LOCAL, src));
    assert_eq!(ip.payload()[4], 0xe0, "router, solicited, override");
    assert_eq!(
        &ip.payload()[24..26],
        &[2, 1],
        "target link-layer address option"
    );
    assert_eq!(&ip.payload()[26..32], &gateway_mac().0);
    // The global gateway address and another pod's address (proxy) are answered too.
    assert_eq!(
        h.verdict(
            POD_A,
            &solicitation(MAC_A, src, v6("fd00:10:244:1::1"), 255, MAC_A)
        ),
        Verdict::Tx(POD_A)
    );
    assert_eq!(
        h.verdict(POD_A, &solicitation(MAC_A, v6(A), v6(B), 255, MAC_A)),
        Verdict::Tx(POD_A)
    );
}

#[test]
fn neighbour_discovery_that_is_not_ours_to_answer_is_dropped_by_name() {
    let mut h = H::new();
    let ll = v6("fe80::a");
    let drop = |r| Verdict::Drop(r);
    assert_eq!(
        h.verdict(
            POD_A,
            &solicitation(MAC_A, ll, GATEWAY_LINK_LOCAL, 64, MAC_A)
        ),
        drop(DropReason::NdpBadHopLimit)
    );
    // Duplicate address detection and the pod's own address: never answered.
    assert_eq!(
        h.verdict(
            POD_A,
            &solicitation(MAC_A, Ipv6Addr::UNSPECIFIED, v6(A), 255, MAC_A)
        ),
        drop(DropReason::NotForUs)
    );
    assert_eq!(
        h.verdict(POD_A, &solicitation(MAC_A, ll, v6(A), 255, MAC_A)),
        drop(DropReason::NotForUs)
    );
    assert_eq!(
        h.verdict(POD_A, &solicitation(MAC_A, ll, v6("fe80::b"), 255, MAC_A)),
        drop(DropReason::NotForUs)
    );
    // A lying link-layer option, another pod's MAC, another pod's address.
    assert_eq!(
        h.verdict(
            POD_A,
            &solicitation(MAC_A, ll, GATEWAY_LINK_LOCAL, 255, MAC_B)
        ),
        drop(DropReason::SpoofedSource)
    );
    assert_eq!(
        h.verdict(
            POD_A,
            &solicitation(MAC_B, ll, GATEWAY_LINK_LOCAL, 255, MAC_B)
        ),
        drop(DropReason::SpoofedSource)
    );
    assert_eq!(
        h.verdict(
            POD_A,
            &solicitation(MAC_A, v6(B), GATEWAY_LINK_LOCAL, 255, MAC_A)
        ),
        drop(DropReason::SpoofedSource)
    );
    let mut bad = solicitation(MAC_A, ll, GATEWAY_LINK_LOCAL, 255, MAC_A);
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert_eq!(h.verdict(POD_A, &bad), drop(DropReason::BadChecksum));
    // Off-link: through the overlay.
    let ns = solicitation(
        PEER_VTEP_MAC,
        v6("fe80::7"),
        GATEWAY_LINK_LOCAL,
        255,
        PEER_VTEP_MAC,
    );
    assert_eq!(
        h.verdict(UPLINK, &vxlan_from_peer(&ns)),
        drop(DropReason::NdpOffLink)
    );
}

#[test]
fn the_uplink_answers_for_the_node_address_only() {
    let mut h = H::new();
    let ns = solicitation(PEER_MAC, v6(PEER6), v6(NODE6), 255, PEER_MAC);
    let (v, pkt) = h.run(UPLINK, &ns);
    assert_eq!(v, Verdict::Tx(UPLINK));
    assert_eq!(&pkt.data()[6..12], &uplink_mac().0);
    assert_eq!(ip6(&pkt, 14).src_addr(), v6(NODE6));
    let other = solicitation(PEER_MAC, v6(PEER6), v6("2001:db8::9"), 255, PEER_MAC);
    assert_eq!(
        h.verdict(UPLINK, &other),
        Verdict::Drop(DropReason::NotForUs)
    );
    // Multicast that is not solicited-node, and unicast to another MAC.
    let mut mld = udp(
        PEER_MAC,
        MacAddr([0x33, 0x33, 0, 0, 0, 0x16]),
        (PEER6, "ff02::16"),
        1,
        8,
    );
    assert_eq!(
        h.verdict(UPLINK, &mld),
        Verdict::Drop(DropReason::NotOurMac)
    );
    mld[..6].copy_from_slice(&[2, 9, 9, 9, 9, 9]);
    assert_eq!(
        h.verdict(UPLINK, &mld),
        Verdict::Drop(DropReason::NotOurMac)
    );
}

#[test]
fn pod_to_local_pod_is_routed_with_the_hop_limit_decremented() {
    let mut h = H::new();
    let frame = from_a(B);
    let (v, pkt) = h.run(POD_A, &frame);
    assert_eq!(v, Verdict::Tx(POD_B));
    let out = pkt.data();
    assert_eq!(&out[..6], &MAC_B.0);
    assert_eq!(&out[6..12], &gateway_mac().0);
    assert_eq!(out[21], 63);
    assert_eq!(&out[22..], &frame[22..], "nothing else changes");
    assert_eq!(&out[12..21], &frame[12..21]);
}

#[test]
fn pods_send_only_from_their_own_address_and_never_forward_link_local() {
    let mut h = H::new();
    let spoofed = udp(MAC_A, gateway_mac(), (B, "fd00:10:244:2::7"), 64, 8);
    assert_eq!(
        h.verdict(POD_A, &spoofed),
        Verdict::Drop(DropReason::SpoofedSource)
    );
    let wrong_mac = udp(MAC_B, gateway_mac(), (A, B), 64, 8);
    assert_eq!(
        h.verdict(POD_A, &wrong_mac),
        Verdict::Drop(DropReason::SpoofedSource)
    );
    let ll = udp(MAC_A, gateway_mac(), ("fe80::a", B), 64, 8);
    assert_eq!(
        h.verdict(POD_A, &ll),
        Verdict::Drop(DropReason::Ipv6LinkLocal)
    );
    let to_ll = udp(MAC_A, gateway_mac(), (A, "fe80::b"), 64, 8);
    assert_eq!(
        h.verdict(POD_A, &to_ll),
        Verdict::Drop(DropReason::Ipv6LinkLocal)
    );
    let mld = udp(
        MAC_A,
        MacAddr([0x33, 0x33, 0, 0, 0, 0x16]),
        (A, "ff02::16"),
        1,
        8,
    );
    assert_eq!(
        h.verdict(POD_A, &mld),
        Verdict::Drop(DropReason::Ipv6Multicast)
    );
}

#[test]
fn pod_to_remote_pod_goes_over_vxlan_on_the_ipv4_underlay() {
    let mut h = H::new();
    let frame = from_a(REMOTE_POD);
    let (v, pkt) = h.run(POD_A, &frame);
    assert_eq!(v, Verdict::Tx(UPLINK));
    let out = pkt.data();
    let outer = etherparse::SlicedPacket::from_ethernet(out).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = outer.net else {
        panic!("outer IPv4 expected");
    };
    assert_eq!(ip.header().destination_addr(), PEER4);
    assert_eq!(ip.header().source_addr(), NODE4);
    let inner = &out[crate::wire::vxlan::OVERHEAD_V4..];
    assert_eq!(&inner[..6], &PEER_VTEP_MAC.0);
    assert_eq!(&inner[12..14], &[0x86, 0xdd]);
    assert_eq!(inner[21], 63);
    assert_eq!(&inner[22..], &frame[22..]);
}

#[test]
fn routed_mode_sends_pod_traffic_to_the_next_hop_as_it_is() {
    let mut h = H::with(OverlayMode::Routed, PolicyTable::builder().build());
    let (v, pkt) = h.run(POD_A, &from_a(REMOTE_POD));
    assert_eq!(v, Verdict::Tx(UPLINK));
    assert_eq!(&pkt.data()[12..14], &[0x86, 0xdd]);
    assert_eq!(&pkt.data()[6..12], &uplink_mac().0);
    assert_eq!(&pkt.data()[..6], &h.snap.node.uplink_next_hop_mac.0);
    // Back from the router: to the local pod; a source of the wrong node is refused.
    let next_hop = h.snap.node.uplink_next_hop_mac;
    let back = udp(next_hop, uplink_mac(), (REMOTE_POD, A), 63, 8);
    assert_eq!(h.verdict(UPLINK, &back), Verdict::Tx(POD_A));
    let forged = udp(next_hop, uplink_mac(), ("fd00:10:244:1::99", A), 63, 8);
    assert_eq!(
        h.verdict(UPLINK, &forged),
        Verdict::Drop(DropReason::SpoofedSource)
    );
}

#[test]
fn vxlan_from_a_peer_reaches_the_local_pod_and_inner_sources_are_checked() {
    let mut h = H::new();
    let inner = udp(PEER_VTEP_MAC, h.snap.node.vtep_mac, (REMOTE_POD, B), 64, 8);
    let (v, pkt) = h.run(UPLINK, &vxlan_from_peer(&inner));
    assert_eq!(v, Verdict::Tx(POD_B));
    assert_eq!(&pkt.data()[..6], &MAC_B.0);
    assert_eq!(pkt.data()[21], 63);
    let forged = udp(
        PEER_VTEP_MAC,
        h.snap.node.vtep_mac,
        ("fd00:10:244:3::1", B),
        64,
        8,
    );
    assert_eq!(
        h.verdict(UPLINK, &vxlan_from_peer(&forged)),
        Verdict::Drop(DropReason::SpoofedSource)
    );
    // Un-translated traffic from the overlay is for this node only.
    let transit = udp(
        PEER_VTEP_MAC,
        h.snap.node.vtep_mac,
        (REMOTE_POD, "2001:db8:9::1"),
        64,
        8,
    );
    assert_eq!(
        h.verdict(UPLINK, &vxlan_from_peer(&transit)),
        Verdict::Drop(DropReason::NoRoute)
    );
}

#[test]
fn hop_limit_one_is_answered_with_time_exceeded_quoting_the_packet() {
    let mut h = H::new();
    let frame = udp(MAC_A, gateway_mac(), (A, B), 1, 16);
    let (v, pkt) = h.run(POD_A, &frame);
    assert_eq!(v, Verdict::Tx(POD_A), "the error goes back to the sender");
    assert_eq!(h.pipe.drops.get(DropReason::HopLimitExceeded), 1);
    assert_eq!(h.pipe.stats.icmp_generated, 1);
    let ip = ip6(&pkt, 14);
    assert_eq!(
        (ip.src_addr(), ip.dst_addr()),
        (v6("fd00:10:244:1::1"), v6(A))
    );
    let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
    assert_eq!((icmp.msg_type(), icmp.code()), (icmpv6::TIME_EXCEEDED, 0));
    assert!(icmp.verify_checksum(ip.src_addr(), ip.dst_addr()));
    assert_eq!(&ip.payload()[8..], &frame[14..], "quotes the whole packet");
    // An ICMPv6 error is never answered with another.
    let b = PacketBuilder::ethernet2(MAC_A.0, gateway_mac().0)
        .ipv6(v6(A).octets(), v6(B).octets(), 1)
        .icmpv6_raw(
            icmpv6::DEST_UNREACHABLE,
            icmpv6::CODE_PORT_UNREACHABLE,
            [0; 4],
        );
    let mut error = Vec::new();
    b.write(&mut error, &frame[14..]).unwrap();
    assert_eq!(
        h.verdict(POD_A, &error),
        Verdict::Drop(DropReason::HopLimitExceeded)
    );
    assert_eq!(h.pipe.stats.icmp_generated, 1);
}

#[test]
fn too_big_for_the_overlay_is_answered_with_packet_too_big() {
    let mut h = H::new();
    let mtu = h.snap.node.pod_mtu();
    let frame = udp(MAC_A, gateway_mac(), (A, REMOTE_POD), 64, usize::from(mtu));
    let (v, pkt) = h.run(POD_A, &frame);
    assert_eq!(v, Verdict::Tx(POD_A));
    assert_eq!(h.pipe.drops.get(DropReason::MtuExceeded), 1);
    let ip = ip6(&pkt, 14);
    let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
    assert_eq!(icmp.msg_type(), icmpv6::PACKET_TOO_BIG);
    assert_eq!(&ip.payload()[4..8], &u32::from(mtu).to_be_bytes());
    assert!(icmp.verify_checksum(ip.src_addr(), ip.dst_addr()));
    assert_eq!(pkt.len() - 14, 1280, "quoted up to the IPv6 minimum MTU");
    // Exactly the MTU fits.
    let fits = udp(
        MAC_A,
        gateway_mac(),
        (A, REMOTE_POD),
        64,
        usize::from(mtu) - 48,
    );
    assert_eq!(h.verdict(POD_A, &fits), Verdict::Tx(UPLINK));
}

#[test]
fn extension_headers_are_walked_and_refused_chains_are_named() {
    let mut h = H::new();
    let base = from_a(B);
    // Destination options (8 bytes, last one: its next header is the upper layer).
    let dest = |next: u8| vec![next, 0, 1, 4, 0, 0, 0, 0];
    let ok = with_ext(&base, 60, dest(0xff));
    assert_eq!(h.verdict(POD_A, &ok), Verdict::Tx(POD_B));
    let hbh = with_ext(&base, 0, [dest(60), dest(0xff)].concat());
    assert_eq!(h.verdict(POD_A, &hbh), Verdict::Tx(POD_B));
    let routing = with_ext(&base, 43, vec![0xff, 0, 4, 1, 0, 0, 0, 0]);
    assert_eq!(
        h.verdict(POD_A, &routing),
        Verdict::Drop(DropReason::Ipv6RoutingHeader)
    );
    let spent_routing = with_ext(&base, 43, vec![0xff, 0, 4, 0, 0, 0, 0, 0]);
    assert_eq!(h.verdict(POD_A, &spent_routing), Verdict::Tx(POD_B));
    let fragment = with_ext(&base, 44, vec![0xff, 0, 0, 1, 0, 0, 0, 7]);
    assert_eq!(
        h.verdict(POD_A, &fragment),
        Verdict::Drop(DropReason::Ipv6Fragment)
    );
    let atomic = with_ext(&base, 44, vec![0xff, 0, 0, 0, 0, 0, 0, 7]);
    assert_eq!(h.verdict(POD_A, &atomic), Verdict::Tx(POD_B));
    let long: Vec<u8> = (0..7)
        .flat_map(|i| dest(if i == 6 { 0xff } else { 60 }))
        .collect();
    assert_eq!(
        h.verdict(POD_A, &with_ext(&base, 60, long)),
        Verdict::Drop(DropReason::Ipv6ExtChainTooLong)
    );
    let hbh_late = with_ext(&base, 60, [dest(0), dest(0xff)].concat());
    assert_eq!(
        h.verdict(POD_A, &hbh_late),
        Verdict::Drop(DropReason::Ipv6ExtChainTooLong)
    );
    let esp = with_ext(&base, 60, dest(50));
    assert_eq!(
        h.verdict(POD_A, &esp),
        Verdict::Drop(DropReason::Ipv6UnknownHeader)
    );
    let mut truncated = with_ext(&base, 60, vec![0xff, 9, 0, 0, 0, 0, 0, 0]);
    truncated.truncate(70);
    let plen = (truncated.len() - 54) as u16;
    truncated[18..20].copy_from_slice(&plen.to_be_bytes());
    assert_eq!(
        h.verdict(POD_A, &truncated),
        Verdict::Drop(DropReason::Malformed)
    );
}

#[test]
fn unallocated_service_addresses_exemptions_and_isolated_pods() {
    let mut h = H::new();
    assert_eq!(
        h.verdict(POD_A, &from_a("fd00:10:96::10")),
        Verdict::Drop(DropReason::ServiceUnallocated)
    );
    let (v, pkt) = h.run(POD_A, &from_a("2001:db8:9::1"));
    assert_eq!(v, Verdict::Tx(UPLINK));
    assert_eq!(ip6(&pkt, 14).src_addr(), v6(NODE6), "masqueraded");
    // Exempt destinations (routable pod addresses) leave unmasqueraded through the uplink.
    let mut h = H::new();
    let mut exempt = h.snap.v6.as_ref().clone();
    let mut node = exempt.node().unwrap().clone();
    node.masquerade_exempt = vec!["2001:db8:9::/48".parse().unwrap()];
    let pods: Vec<Pod6> = exempt.pods().cloned().collect();
    exempt = V6Tables::new(node, pods, exempt.remotes().to_vec());
    h.snap.v6 = Arc::new(exempt);
    let (v, pkt) = h.run(POD_A, &from_a("2001:db8:9::1"));
    assert_eq!(v, Verdict::Tx(UPLINK));
    assert_eq!(&pkt.data()[..6], &h.snap.node.uplink_next_hop_mac.0);
    assert_eq!(ip6(&pkt, 14).src_addr(), v6(A), "not masqueraded");
    // The node's own address and the gateway go to the host.
    assert_eq!(h.verdict(POD_A, &from_a(NODE6)), Verdict::Tx(HOST));
    // A pod that a NetworkPolicy isolates (by its IPv4 identity) with no rules gets no IPv6
    // traffic.
    let mut b = PolicyTable::builder();
    let id = b.add_policy("default/deny");
    b.set_pod(
        Ipv4Addr::new(10, 244, 1, 11),
        PodRules {
            ingress: Some(Vec::new()),
            egress: None,
            ingress_isolated_by: vec![id],
            egress_isolated_by: vec![],
        },
    );
    let mut h = H::with(OverlayMode::Vxlan, b.build());
    assert_eq!(
        h.verdict(POD_A, &from_a(B)),
        Verdict::Drop(DropReason::PolicyIngressDenied)
    );
    assert_eq!(h.verdict(POD_A, &from_a(REMOTE_POD)), Verdict::Tx(UPLINK));
}

#[test]
fn echo_and_partial_checksums() {
    let mut h = H::new();
    let b = PacketBuilder::ethernet2(MAC_A.0, gateway_mac().0)
        .ipv6(v6(A).octets(), v6(B).octets(), 64)
        .icmpv6(Icmpv6Type::EchoRequest(IcmpEchoHeader { id: 7, seq: 1 }));
    let mut echo = Vec::new();
    b.write(&mut echo, b"ping").unwrap();
    assert_eq!(h.verdict(POD_A, &echo), Verdict::Tx(POD_B));
    // A CHECKSUM_PARTIAL frame (checksum field holds junk) leaves with a complete checksum.
    let mut frame = from_a(B);
    frame[60..62].copy_from_slice(&[0x12, 0x34]);
    let mut pkt = Packet::from_frame(&frame).unwrap();
    pkt.meta.in_port = POD_A;
    pkt.meta.csum_partial = true;
    assert_eq!(h.pipe.process(&h.snap, &mut pkt), Verdict::Tx(POD_B));
    let parsed = etherparse::SlicedPacket::from_ethernet(pkt.data()).unwrap();
    let Some(etherparse::TransportSlice::Udp(u)) = parsed.transport else {
        panic!("udp expected");
    };
    let expected = u
        .to_header()
        .calc_checksum_ipv6_raw(v6(A).octets(), v6(B).octets(), u.payload())
        .unwrap();
    assert_eq!(u.checksum(), expected);
}

#[test]
fn a_node_without_ipv6_drops_every_ipv6_frame_by_name() {
    let mut h = H::new();
    h.snap = snapshot(OverlayMode::Vxlan, PolicyTable::builder().build(), false);
    assert_eq!(
        h.verdict(POD_A, &from_a(B)),
        Verdict::Drop(DropReason::Ipv6Disabled)
    );
    let ns = solicitation(MAC_A, v6("fe80::a"), GATEWAY_LINK_LOCAL, 255, MAC_A);
    assert_eq!(
        h.verdict(POD_A, &ns),
        Verdict::Drop(DropReason::Ipv6Disabled)
    );
    assert_eq!(h.pipe.drops.get(DropReason::Ipv6Disabled), 2);
}

#[test]
fn a_mixed_batch_gets_the_verdicts_and_bytes_of_one_by_one_processing() {
    let frames: Vec<(PortId, Vec<u8>)> = vec![
        (POD_A, from_a(B)),
        (
            POD_A,
            solicitation(MAC_A, v6("fe80::a"), GATEWAY_LINK_LOCAL, 255, MAC_A),
        ),
        (POD_A, from_a(REMOTE_POD)),
        (POD_A, udp(MAC_A, gateway_mac(), (A, B), 1, 16)),
        (POD_A, from_a("fd00:10:96::10")),
        (POD_B, from_a(B)),
        (POD_A, from_a(SVC)),
        (
            POD_B,
            udp_ports(MAC_B, gateway_mac(), (B, A), (5353, 40000)),
        ),
    ];
    let mut one_by_one = H::new();
    let expected: Vec<(Verdict, Vec<u8>)> = frames
        .iter()
        .map(|(port, f)| {
            let (v, pkt) = one_by_one.run(*port, f);
            (v, pkt.data().to_vec())
        })
        .collect();
    let mut batched = H::new();
    let mut batch: Vec<Packet> = frames
        .iter()
        .map(|(port, f)| {
            let mut p = Packet::from_frame(f).unwrap();
            p.meta.in_port = *port;
            p
        })
        .collect();
    batched.pipe.process_batch(&batched.snap, &mut batch);
    let got: Vec<(Verdict, Vec<u8>)> = batch
        .iter()
        .map(|p| (p.meta.verdict, p.data().to_vec()))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(batched.pipe.drops.total(), one_by_one.pipe.drops.total());
    assert_eq!(batched.pipe.stats.forwarded, 6);
}

#[path = "tests_nat.rs"]
mod nat;

#[path = "tests_flows.rs"]
mod flows;
