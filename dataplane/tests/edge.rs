//! Hostile traffic at the node's edge, on real frame bytes through the pipeline: the uplink's
//! L2 filter, source validation of what the underlay and the overlay hand us, ICMP errors
//! that relate to no flow, and SNAT ports an observer cannot predict.

mod common;

use std::collections::HashSet;
use std::net::Ipv4Addr;

use common::frames::{self, L4, arp_request, seen, vxlan};
use common::*;
use dataplane::drop::DropReason;
use dataplane::packet::Verdict;
use dataplane::tables::node::OverlayMode;
use dataplane::tables::routes::{RemoteNode, RouteTable};
use dataplane::wire::MacAddr;

const NODE_C: &str = "192.168.50.4";
const NODE_C_POD: &str = "10.244.3.30";
const NODE_C_UPLINK_MAC: MacAddr = MacAddr([0x02, 0xfe, 192, 168, 50, 4]);
/// A host on the underlay segment that is neither a node nor the router.
const STRANGER_MAC: MacAddr = MacAddr([0x02, 0x66, 0, 0, 0, 9]);

fn syn(sport: u16, dport: u16) -> L4 {
    L4::Syn {
        sport,
        dport,
        seq: 1,
    }
}

/// A plain frame on the underlay from `mac` to `to_mac`.
fn plain(mac: MacAddr, to_mac: MacAddr, src: &str, dst: &str, l4: L4) -> Vec<u8> {
    frames::ipv4(mac, to_mac, ip(src), ip(dst), 64, true, l4, b"x")
}

/// `inner` (src -> dst) encapsulated by the node at `from`.
fn from_peer(h: &Harness, peer: &str, peer_mac: MacAddr, src: &str, dst: &str, l4: L4) -> Vec<u8> {
    let inner = frames::ipv4(
        NODE_B_VTEP_MAC,
        h.snap.node.vtep_mac,
        ip(src),
        ip(dst),
        64,
        true,
        l4,
        b"x",
    );
    vxlan(
        peer_mac,
        h.snap.node.uplink_mac,
        ip(peer),
        ip(NODE_A),
        8472,
        1,
        &inner,
    )
}

/// The fixture with a third node, C (192.168.50.4, pods 10.244.3.0/24).
fn three_nodes(overlay: OverlayMode) -> Harness {
    let mut h = Harness::with_overlay(overlay);
    let mut nodes = h.snap.routes.nodes().to_vec();
    nodes.push(RemoteNode {
        name: "node-c".into(),
        node_ip: ip(NODE_C),
        node_ip6: None,
        pod_cidr: "10.244.3.0/24".parse().expect("cidr"),
        vtep_mac: MacAddr([0x02, 0xfc, 192, 168, 50, 4]),
        underlay_mac: NODE_C_UPLINK_MAC,
    });
    h.snap.routes = std::sync::Arc::new(RouteTable::new(nodes));
    h
}

fn drops(h: &Harness, reason: DropReason) -> u64 {
    h.pipe.drops.get(reason)
}

#[test]
fn the_uplink_takes_only_frames_to_its_mac_and_broadcast_arp() {
    let mut h = Harness::new();
    let ours = h.snap.node.uplink_mac;
    let flows = h.pipe.conntrack().len();
    // A flooded frame to another node's MAC, with a pod as destination: no verdict beyond L2,
    // and no flow entry (M2).
    let other = plain(
        ROUTER_MAC,
        NODE_B_UPLINK_MAC,
        EXTERNAL,
        CLIENT_IP,
        syn(1, 80),
    );
    for dst_mac in [
        NODE_B_UPLINK_MAC,
        MacAddr::BROADCAST,
        MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]),
        MacAddr([0x33, 0x33, 0, 0, 0, 1]),
    ] {
        let mut f = other.clone();
        f[0..6].copy_from_slice(&dst_mac.0);
        let (v, _) = h.run(UPLINK, &f);
        assert_eq!(v, Verdict::Drop(DropReason::NotOurMac), "to {dst_mac}");
    }
    assert_eq!(drops(&h, DropReason::NotOurMac), 4, "each counted once");
    assert_eq!(
        h.pipe.conntrack().len(),
        flows,
        "no flow for a frame not ours"
    );
    // A VIP behind someone else's MAC is not ours either.
    let f = plain(ROUTER_MAC, STRANGER_MAC, EXTERNAL, VIP_STORE, syn(2, 80));
    assert_eq!(h.run(UPLINK, &f).0, Verdict::Drop(DropReason::NotOurMac));

    // Broadcast ARP for the node IP is answered; the same frame to our MAC is a packet for us.
    let (v, out) = h.run(
        UPLINK,
        &arp_request(ROUTER_MAC, ip("192.168.50.1"), ip(NODE_A)),
    );
    assert_eq!(v, Verdict::Tx(UPLINK), "broadcast ARP request answered");
    assert_eq!(&out[22..28], &ours.0, "with the uplink MAC");
    let mut unicast_arp = arp_request(ROUTER_MAC, ip("192.168.50.1"), ip(NODE_A));
    unicast_arp[0..6].copy_from_slice(&ours.0);
    assert_eq!(h.run(UPLINK, &unicast_arp).0, Verdict::Tx(UPLINK));
    let f = plain(ROUTER_MAC, ours, EXTERNAL, NODE_A, syn(3, 22));
    assert_eq!(h.run(UPLINK, &f).0, Verdict::Tx(HOST));
    assert_eq!(drops(&h, DropReason::NotOurMac), 5);
}

#[test]
fn pod_ports_keep_their_own_rules_and_are_not_mac_filtered_like_the_uplink() {
    // Pods address the gateway; a pod's frame to another MAC is still routed (the pod port is
    // point-to-point), as before.
    let mut h = Harness::new();
    let f = plain(CLIENT_MAC, STRANGER_MAC, CLIENT_IP, BE1_IP, syn(4, 80));
    assert_eq!(h.run(CLIENT, &f).0, Verdict::Tx(BE1));
}

#[test]
fn a_plain_frame_from_the_underlay_with_a_pod_or_node_source_is_spoofed() {
    let mut h = Harness::new();
    let us = h.snap.node.uplink_mac;
    let cases = [
        // The review's repro: store-be-1's address reaching the isolated store-db.
        (ROUTER_MAC, BE1_IP, DB_IP, 6379),
        // A peer's pod: in VXLAN mode pod traffic always comes encapsulated.
        (NODE_B_UPLINK_MAC, REMOTE_BE, CLIENT_IP, 80),
        // A pod source to the eTP-Local LoadBalancer: would count as in-cluster.
        (ROUTER_MAC, REMOTE_BE, LB_LOCAL, 443),
        // Any cluster-CIDR address, and this node's own address.
        (ROUTER_MAC, "10.244.77.7", CLIENT_IP, 80),
        (ROUTER_MAC, NODE_A, CLIENT_IP, 80),
        // A peer's node address from a host that is neither that peer nor the router.
        (STRANGER_MAC, NODE_B, CLIENT_IP, 80),
    ];
    for (i, (mac, src, dst, dport)) in cases.into_iter().enumerate() {
        let f = plain(mac, us, src, dst, syn(1000 + i as u16, dport));
        assert_eq!(
            h.run(UPLINK, &f).0,
            Verdict::Drop(DropReason::SpoofedSource),
            "{src} -> {dst}:{dport} from {mac}"
        );
    }
    assert_eq!(drops(&h, DropReason::SpoofedSource), cases.len() as u64);
    assert_eq!(h.pipe.stats.new_flows, 0, "no flow was created");

    // A peer's node address from the peer itself or through the router is that node's host.
    for mac in [NODE_B_UPLINK_MAC, ROUTER_MAC] {
        let f = plain(mac, us, NODE_B, CLIENT_IP, syn(2000, 80));
        assert_eq!(h.run(UPLINK, &f).0, Verdict::Tx(CLIENT), "from {mac}");
    }
    // External sources are untouched, from any neighbour.
    let f = plain(STRANGER_MAC, us, EXTERNAL, NODE_A, syn(2001, 22));
    assert_eq!(h.run(UPLINK, &f).0, Verdict::Tx(HOST));
}

#[test]
fn vxlan_inner_sources_must_belong_to_the_sending_peer() {
    let mut h = three_nodes(OverlayMode::Vxlan);
    let b = NODE_B_UPLINK_MAC;
    for (src, why) in [
        (NODE_C_POD, "node C's pod from node B"),
        (CLIENT_IP, "a local pod from node B"),
        ("10.244.99.9", "a cluster address nobody owns"),
        (NODE_C, "node C's address from node B"),
        (NODE_A, "this node's own address"),
    ] {
        let f = from_peer(&h, NODE_B, b, src, CLIENT_IP, syn(3000, 80));
        assert_eq!(
            h.run(UPLINK, &f).0,
            Verdict::Drop(DropReason::SpoofedSource),
            "{why}"
        );
    }
    assert_eq!(h.pipe.stats.new_flows, 0);
    // Node B's pods and node B itself (its host, or SNAT to its address) pass.
    for (sport, src) in [(3001, REMOTE_BE), (3002, NODE_B)] {
        let f = from_peer(&h, NODE_B, b, src, CLIENT_IP, syn(sport, 80));
        assert_eq!(h.run(UPLINK, &f).0, Verdict::Tx(CLIENT), "{src}");
    }
    // Node C's pod from node C passes.
    let f = from_peer(
        &h,
        NODE_C,
        NODE_C_UPLINK_MAC,
        NODE_C_POD,
        CLIENT_IP,
        syn(3003, 80),
    );
    assert_eq!(h.run(UPLINK, &f).0, Verdict::Tx(CLIENT));
}

#[test]
fn routed_mode_takes_a_peers_pods_only_from_that_peer_or_the_router() {
    let mut h = three_nodes(OverlayMode::Routed);
    let us = h.snap.node.uplink_mac;
    for (sport, mac, src) in [
        (4000, ROUTER_MAC, REMOTE_BE),
        (4001, NODE_B_UPLINK_MAC, REMOTE_BE),
        (4002, ROUTER_MAC, NODE_C_POD),
        (4003, NODE_C_UPLINK_MAC, NODE_C_POD),
    ] {
        let f = plain(mac, us, src, CLIENT_IP, syn(sport, 80));
        assert_eq!(h.run(UPLINK, &f).0, Verdict::Tx(CLIENT), "{src} from {mac}");
    }
    for (sport, mac, src) in [
        (4010, STRANGER_MAC, REMOTE_BE),
        (4011, NODE_B_UPLINK_MAC, NODE_C_POD),
        (4012, ROUTER_MAC, "10.244.99.9"),
        (4013, ROUTER_MAC, BE1_IP),
    ] {
        let f = plain(mac, us, src, DB_IP, syn(sport, 6379));
        assert_eq!(
            h.run(UPLINK, &f).0,
            Verdict::Drop(DropReason::SpoofedSource),
            "{src} from {mac}"
        );
    }
}

/// An ICMP error of `kind` (type, code) from `from` to `to` quoting `frame`'s IP header and 8
/// bytes, sent from `src_mac` to `dst_mac`; checksums by the test's own sum.
fn icmp_error(
    (src_mac, dst_mac): (MacAddr, MacAddr),
    (from, to): (Ipv4Addr, Ipv4Addr),
    (kind, code, rest): (u8, u8, u32),
    frame: &[u8],
) -> Vec<u8> {
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    let mut icmp = vec![kind, code, 0, 0];
    icmp.extend_from_slice(&rest.to_be_bytes());
    icmp.extend_from_slice(&frame[14..14 + ihl + 8]);
    let c = !frames::ones_sum(&[&icmp]);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut f = Vec::new();
    f.extend_from_slice(&dst_mac.0);
    f.extend_from_slice(&src_mac.0);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + icmp.len()) as u16;
    let mut iph = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0];
    iph[2..4].copy_from_slice(&total.to_be_bytes());
    iph.extend_from_slice(&from.octets());
    iph.extend_from_slice(&to.octets());
    let c = !frames::ones_sum(&[&iph]);
    iph[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&iph);
    f.extend_from_slice(&icmp);
    f
}

const PORT_UNREACHABLE: (u8, u8, u32) = (3, 3, 0);
const FRAG_NEEDED_1200: (u8, u8, u32) = (3, 4, 1200);
const REDIRECT_HOST: (u8, u8, u32) = (5, 1, 0xc0a8_3263);

#[test]
fn icmp_errors_that_match_no_flow_reach_neither_pods_nor_the_node() {
    let mut h = Harness::new();
    let us = h.snap.node.uplink_mac;
    // From outside, to a pod, about a packet that never was.
    let fake = plain(us, ROUTER_MAC, CLIENT_IP, EXTERNAL, syn(5000, 443));
    let f = icmp_error(
        (ROUTER_MAC, us),
        (ip(EXTERNAL), ip(CLIENT_IP)),
        FRAG_NEEDED_1200,
        &fake,
    );
    assert_eq!(
        h.run(UPLINK, &f).0,
        Verdict::Drop(DropReason::IcmpErrorUnmatched)
    );
    // Pod to pod on one node: an "error" as a covert channel out of any policy (M3).
    let fake = plain(
        BE1_MAC,
        h.snap.node.gateway_mac,
        BE1_IP,
        DB_IP,
        syn(5001, 80),
    );
    let f = icmp_error(
        (DB_MAC, h.snap.node.gateway_mac),
        (ip(DB_IP), ip(BE1_IP)),
        PORT_UNREACHABLE,
        &fake,
    );
    assert_eq!(
        h.run(DB, &f).0,
        Verdict::Drop(DropReason::IcmpErrorUnmatched)
    );
    assert_eq!(drops(&h, DropReason::IcmpErrorUnmatched), 2);
}

#[test]
fn a_pod_may_only_send_errors_about_packets_it_received() {
    let mut h = Harness::new();
    let gw = h.snap.node.gateway_mac;
    // The client's flow to the DNS Service (DNATed to a remote backend) exists...
    let q = plain(
        CLIENT_MAC,
        gw,
        CLIENT_IP,
        VIP_DNS,
        L4::Udp {
            sport: 40100,
            dport: 53,
        },
    );
    h.expect_tx(CLIENT, &q, UPLINK);
    // ...and store-db, isolated, quotes the client's packet as the backend saw it: it names a
    // live flow, but store-db was no party to it.
    let seen_by_backend = plain(
        CLIENT_MAC,
        gw,
        CLIENT_IP,
        REMOTE_DNS,
        L4::Udp {
            sport: 40100,
            dport: 5353,
        },
    );
    let f = icmp_error(
        (DB_MAC, gw),
        (ip(DB_IP), ip(CLIENT_IP)),
        PORT_UNREACHABLE,
        &seen_by_backend,
    );
    assert_eq!(
        h.run(DB, &f).0,
        Verdict::Drop(DropReason::IcmpErrorUnmatched)
    );
}

#[test]
fn a_matched_frag_needed_is_reverse_translated_to_the_masqueraded_pod() {
    let mut h = Harness::new();
    let us = h.snap.node.uplink_mac;
    let f = plain(
        CLIENT_MAC,
        h.snap.node.gateway_mac,
        CLIENT_IP,
        EXTERNAL,
        syn(40200, 443),
    );
    let out = h.expect_tx(CLIENT, &f, UPLINK);
    let nat_port = seen(&out).sport;
    // A router on the path says the masqueraded packet is too big.
    let err = icmp_error(
        (ROUTER_MAC, us),
        (ip("198.18.0.1"), ip(NODE_A)),
        FRAG_NEEDED_1200,
        &out,
    );
    let back = h.expect_tx(UPLINK, &err, CLIENT);
    let s = seen(&back);
    assert_eq!(s.icmp_type, Some((3, 4)));
    assert_eq!(s.dst, ip(CLIENT_IP), "to the pod, not the node");
    let quoted = &s.payload;
    assert_eq!(
        &quoted[12..16],
        &ip(CLIENT_IP).octets(),
        "quoted as the pod sent it"
    );
    assert_eq!(u16::from_be_bytes([quoted[20], quoted[21]]), 40200);
    assert_ne!(nat_port, 40200);
}

#[test]
fn errors_about_the_nodes_own_untracked_traffic_still_reach_the_host_and_leave_it() {
    let mut h = Harness::new();
    let us = h.snap.node.uplink_mac;
    // The host's DNS query to an outside resolver (untracked) is answered port unreachable.
    let query = plain(
        h.snap.node.host_mac,
        h.snap.node.gateway_mac,
        NODE_A,
        EXTERNAL,
        L4::Udp {
            sport: 5555,
            dport: 53,
        },
    );
    let err = icmp_error(
        (ROUTER_MAC, us),
        (ip(EXTERNAL), ip(NODE_A)),
        PORT_UNREACHABLE,
        &query,
    );
    assert_eq!(h.run(UPLINK, &err).0, Verdict::Tx(HOST));
    // The host refuses an outsider's datagram to a closed port: the error goes out.
    let probe = plain(
        ROUTER_MAC,
        us,
        EXTERNAL,
        NODE_A,
        L4::Udp {
            sport: 6666,
            dport: 9,
        },
    );
    let err = icmp_error(
        (h.snap.node.host_mac, h.snap.node.gateway_mac),
        (ip(NODE_A), ip(EXTERNAL)),
        PORT_UNREACHABLE,
        &probe,
    );
    assert_eq!(h.run(HOST, &err).0, Verdict::Tx(UPLINK));
    // But an error from outside to the node about a packet to a pod is no host traffic.
    let about_pod = plain(us, ROUTER_MAC, NODE_A, CLIENT_IP, syn(7, 80));
    let err = icmp_error(
        (ROUTER_MAC, us),
        (ip(EXTERNAL), ip(NODE_A)),
        PORT_UNREACHABLE,
        &about_pod,
    );
    assert_eq!(
        h.run(UPLINK, &err).0,
        Verdict::Drop(DropReason::IcmpErrorUnmatched)
    );
}

#[test]
fn redirects_are_dropped_from_anywhere() {
    let mut h = Harness::new();
    let us = h.snap.node.uplink_mac;
    let gw = h.snap.node.gateway_mac;
    let f = plain(CLIENT_MAC, gw, CLIENT_IP, EXTERNAL, syn(40300, 443));
    let out = h.expect_tx(CLIENT, &f, UPLINK);
    // Even about a live flow, from the router or from a pod.
    let from_router = icmp_error(
        (ROUTER_MAC, us),
        (ip("192.168.50.1"), ip(NODE_A)),
        REDIRECT_HOST,
        &out,
    );
    assert_eq!(
        h.run(UPLINK, &from_router).0,
        Verdict::Drop(DropReason::IcmpRedirect)
    );
    let from_pod = icmp_error(
        (BE1_MAC, gw),
        (ip(BE1_IP), ip(CLIENT_IP)),
        REDIRECT_HOST,
        &f,
    );
    assert_eq!(
        h.run(BE1, &from_pod).0,
        Verdict::Drop(DropReason::IcmpRedirect)
    );
    assert_eq!(drops(&h, DropReason::IcmpRedirect), 2);
}

#[test]
fn echo_to_the_outside_and_its_reply_still_work() {
    let mut h = Harness::new();
    let us = h.snap.node.uplink_mac;
    let f = plain(
        CLIENT_MAC,
        h.snap.node.gateway_mac,
        CLIENT_IP,
        EXTERNAL,
        L4::Echo { id: 99, seq: 1 },
    );
    let out = h.expect_tx(CLIENT, &f, UPLINK);
    let ident = seen(&out).sport;
    let mut reply = plain(
        ROUTER_MAC,
        us,
        EXTERNAL,
        NODE_A,
        L4::Echo { id: ident, seq: 1 },
    );
    reply[34] = 0;
    reply[36..38].copy_from_slice(&[0, 0]);
    let c = !frames::ones_sum(&[&reply[34..]]);
    reply[36..38].copy_from_slice(&c.to_be_bytes());
    let back = h.expect_tx(UPLINK, &reply, CLIENT);
    let s = seen(&back);
    assert_eq!((s.icmp_type, s.sport), (Some((0, 0)), 99));
}

/// The masquerade ports of `n` new flows from the client, in order.
fn nat_ports(h: &mut Harness, n: u16) -> Vec<u16> {
    (0..n)
        .map(|i| {
            let f = plain(
                CLIENT_MAC,
                h.snap.node.gateway_mac,
                CLIENT_IP,
                EXTERNAL,
                L4::Udp {
                    sport: 20000 + i,
                    dport: 53,
                },
            );
            seen(&h.expect_tx(CLIENT, &f, UPLINK)).sport
        })
        .collect()
}

#[test]
fn snat_ports_are_not_predictable() {
    let mut a = Harness::new();
    let mut b = Harness::new();
    let xs = nat_ports(&mut a, 64);
    let ys = nat_ports(&mut b, 64);
    let (lo, hi) = a.snap.node.snat_ports;
    assert!(xs.iter().chain(&ys).all(|p| (lo..=hi).contains(p)));
    // Two pipelines built with the same seed argument (7) still draw different ports: the
    // SNAT key comes from the OS, not from anything an observer could know.
    assert_ne!(xs, ys, "same seed, same ports");
    // No arithmetic step between consecutive ports: the differences are all over the place.
    let span = u32::from(hi - lo) + 1;
    let steps: HashSet<u32> = xs
        .windows(2)
        .map(|w| (u32::from(w[1]) + span - u32::from(w[0])) % span)
        .collect();
    assert!(steps.len() > 48, "{} distinct steps in 63", steps.len());
}
