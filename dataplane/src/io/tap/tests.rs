//! TAP queues in a throw-away namespace; the kernel side of the TAP is the peer, driven by a
//! raw ICMP socket and UDP sockets.
#![allow(clippy::unwrap_used, reason = "tests unwrap what they set up")]

use std::collections::HashMap;
use std::net::{Ipv4Addr, UdpSocket};
use std::time::Duration;

use super::*;
use crate::io::netdev;
use crate::io::testframes::{
    OUR_MAC, arp_reply, complete_partial_checksum, icmp_echo_reply, icmp_echo_request, parse_udp,
    receive_matching, reference_udp_checksum, send_one, udp_frame,
};
use crate::io::testnet::{Netns, RawSocket};
use crate::packet::MAX_FRAME;

const WAIT: Duration = Duration::from_secs(2);

/// Gives the kernel side of `tap` the address 10.2.0.1/24 and a static neighbour
/// 10.2.0.2 at `OUR_MAC`, so datagrams to 10.2.0.2 leave at once.
fn address_with_neighbour(ns: &Netns, tap: &str) {
    ns.ip(&["addr", "add", "10.2.0.1/24", "dev", tap]);
    ns.ip(&["link", "set", tap, "up"]);
    ns.ip(&[
        "neigh",
        "add",
        "10.2.0.2",
        "lladdr",
        "02:00:00:00:00:02",
        "dev",
        tap,
    ]);
}

fn is_udp_to(port: u16) -> impl Fn(&Packet) -> bool {
    move |pkt| parse_udp(pkt.data()).is_some_and(|u| u.dport == port)
}

#[test]
fn a_kernel_ping_is_received_and_our_arp_and_echo_replies_reach_the_kernel() {
    let ns = Netns::create();
    ns.run(|| {
        let mut queue = TapQueue::open("fpt0").unwrap();
        netdev::set_up("fpt0").unwrap();
        ns.ip(&["addr", "add", "10.2.0.1/24", "dev", "fpt0"]);
        let mut pool = PacketPool::with_capacity(64);
        let mut batch = Vec::new();
        assert_eq!(
            queue
                .rx_burst(PortId(1), &mut pool, &mut batch, 32)
                .unwrap(),
            0
        );

        let ping = RawSocket::icmp();
        let payload = b"fpio ping payload";
        ping.send_to(
            &icmp_echo_request(0x1234, 1, payload),
            Ipv4Addr::new(10, 2, 0, 2),
        );
        let arp = receive_matching(&mut queue, &mut pool, 1, WAIT, |p| {
            arp_reply(p.data(), OUR_MAC).is_some()
        });
        let reply = arp_reply(arp.first().expect("ARP request").data(), OUR_MAC).unwrap();
        assert_eq!(send_one(&mut queue, &mut pool, &reply), 1);

        let echo = receive_matching(&mut queue, &mut pool, 1, WAIT, |p| {
            icmp_echo_reply(p.data(), OUR_MAC).is_some()
        });
        let request = echo.first().expect("the echo request, after our ARP reply");
        assert_eq!(&request.data()[42..], payload);
        assert_eq!(
            request.data()[..6],
            OUR_MAC,
            "addressed to the MAC we announced"
        );
        let answer = icmp_echo_reply(request.data(), OUR_MAC).unwrap();
        assert_eq!(send_one(&mut queue, &mut pool, &answer), 1);

        // The raw socket gets IP header + ICMP: type 0 (echo reply) with our id and payload.
        let got = ping.recv_matching(WAIT, |m| m.len() > 28 && m[20] == 0);
        let got = got.expect("the kernel accepted our echo reply");
        assert_eq!(got[24..26], [0x12, 0x34]);
        assert_eq!(&got[28..], payload);
    });
}

#[test]
fn kernel_udp_arrives_partial_and_completes_to_the_right_checksum() {
    let ns = Netns::create();
    ns.run(|| {
        let mut queue = TapQueue::open("fpt1").unwrap();
        address_with_neighbour(&ns, "fpt1");
        let mut pool = PacketPool::with_capacity(64);
        let socket = UdpSocket::bind("10.2.0.1:0").unwrap();
        socket
            .send_to(b"finish my checksum", "10.2.0.2:9100")
            .unwrap();
        let got = receive_matching(&mut queue, &mut pool, 1, WAIT, is_udp_to(9100));
        let pkt = got.first().expect("the kernel's datagram");
        assert!(pkt.meta.csum_partial, "VIRTIO_NET_HDR_F_NEEDS_CSUM");
        assert_eq!(pkt.meta.in_port, PortId(7));
        let udp = parse_udp(pkt.data()).unwrap();
        assert_eq!(udp.payload(), b"finish my checksum");
        let reference = reference_udp_checksum(&udp);
        assert_ne!(
            udp.checksum, reference,
            "the field holds only the pseudo-header sum"
        );
        assert_eq!(complete_partial_checksum(udp.segment), reference);
    });
}

#[test]
fn two_queues_split_flows_and_keep_each_flow_on_one_queue() {
    let ns = Netns::create();
    ns.run(|| {
        let mut queues = [
            TapQueue::open("fpt2").unwrap(),
            TapQueue::open("fpt2").unwrap(),
        ];
        address_with_neighbour(&ns, "fpt2");
        let mut pool = PacketPool::with_capacity(512);
        let sockets: Vec<UdpSocket> = (0..32)
            .map(|_| UdpSocket::bind("10.2.0.1:0").unwrap())
            .collect();
        for round in 0..3u8 {
            for socket in &sockets {
                socket.send_to(&[round; 16], "10.2.0.2:9200").unwrap();
            }
        }
        let total = sockets.len() * 3;
        let mut owner: HashMap<u16, usize> = HashMap::new();
        let mut received = 0;
        let deadline = std::time::Instant::now() + WAIT;
        while received < total && std::time::Instant::now() < deadline {
            for (index, queue) in queues.iter_mut().enumerate() {
                let short = Duration::from_millis(20);
                for pkt in receive_matching(queue, &mut pool, total, short, is_udp_to(9200)) {
                    let sport = parse_udp(pkt.data()).unwrap().sport;
                    let first = *owner.entry(sport).or_insert(index);
                    assert_eq!(first, index, "flow {sport} seen on both queues");
                    received += 1;
                    pool.put(pkt);
                }
            }
        }
        assert_eq!(received, total);
        let on_first = owner.values().filter(|&&i| i == 0).count();
        assert!(
            on_first > 0 && on_first < owner.len(),
            "all flows on one queue"
        );
    });
}

#[test]
fn frames_longer_than_a_buffer_are_dropped_and_counted() {
    let ns = Netns::create();
    ns.run(|| {
        let mut queue = TapQueue::open("fpt3").unwrap();
        address_with_neighbour(&ns, "fpt3");
        netdev::set_mtu("fpt3", 3000).unwrap();
        let mut pool = PacketPool::with_capacity(64);
        let socket = UdpSocket::bind("10.2.0.1:0").unwrap();
        // Ethernet 14 + IPv4 20 + UDP 8 + payload: 2049 and 2500 bytes do not fit, 2048 does.
        let headers = 14 + 20 + 8;
        for frame_len in [MAX_FRAME + 1, 2500, MAX_FRAME] {
            socket
                .send_to(&vec![0xab; frame_len - headers], "10.2.0.2:9300")
                .unwrap();
        }
        let got = receive_matching(&mut queue, &mut pool, 1, WAIT, is_udp_to(9300));
        assert_eq!(got.first().map(Packet::len), Some(MAX_FRAME));
        assert_eq!(queue.stats().rx_oversized, 2);
    });
}

#[test]
fn a_persistent_tap_outlives_its_queues_and_accepts_new_ones() {
    let ns = Netns::create();
    let exists = |ns: &Netns| ns.ip_output(&["link", "show"]).contains("fpt4");
    ns.run(|| {
        let queue = TapQueue::open("fpt4").unwrap();
        queue.set_persistent(true).unwrap();
    });
    assert!(
        exists(&ns),
        "a persistent TAP stays after its last queue closes"
    );
    ns.run(|| {
        let queue = TapQueue::open("fpt4").unwrap();
        assert_eq!(queue.name(), "fpt4");
        queue.set_persistent(false).unwrap();
    });
    assert!(
        !exists(&ns),
        "a non-persistent TAP goes with its last queue"
    );
}

#[test]
fn attaching_to_a_single_queue_tap_fails_with_a_clear_error() {
    let ns = Netns::create();
    ns.ip(&["tuntap", "add", "dev", "fpt5", "mode", "tap"]);
    ns.run(|| {
        let err = TapQueue::open("fpt5").err().expect("flags must match");
        assert!(err.to_string().contains("TUNSETIFF fpt5"), "{err}");
        assert!(err.to_string().contains("multi-queue"), "{err}");
    });
}

#[test]
fn a_queue_keeps_working_after_its_tap_moves_to_another_namespace() {
    let (ours, pod) = (Netns::create(), Netns::create());
    let mut queue = ours.run(|| TapQueue::open("fpt6").unwrap());
    ours.ip(&["link", "set", "fpt6", "netns", pod.name()]);
    address_with_neighbour(&pod, "fpt6");
    pod.run(|| {
        let socket = UdpSocket::bind("10.2.0.1:0").unwrap();
        socket.send_to(b"from the pod", "10.2.0.2:9400").unwrap();
    });
    let mut pool = PacketPool::with_capacity(64);
    let got = receive_matching(&mut queue, &mut pool, 1, WAIT, is_udp_to(9400));
    let udp = parse_udp(got.first().expect("frame from the pod namespace").data()).unwrap();
    assert_eq!(udp.payload(), b"from the pod");
}

#[test]
fn refused_frames_are_not_errors_but_a_deleted_device_is() {
    let ns = Netns::create();
    ns.run(|| {
        let mut queue = TapQueue::open("fpt7").unwrap();
        let mut pool = PacketPool::with_capacity(8);
        let frame = udp_frame(
            (OUR_MAC, OUR_MAC),
            ([10, 2, 0, 2], [10, 2, 0, 1]),
            (1, 2),
            b"x",
        );
        assert_eq!(
            send_one(&mut queue, &mut pool, &frame),
            0,
            "link down: refused"
        );
        netdev::set_up("fpt7").unwrap();
        assert_eq!(
            send_one(&mut queue, &mut pool, &frame[..10]),
            0,
            "runt: refused"
        );
        assert_eq!(send_one(&mut queue, &mut pool, &frame), 1);

        ns.ip(&["link", "del", "fpt7"]);
        let mut pkt = pool.get().unwrap();
        assert!(pkt.fill(&frame));
        let mut burst = vec![pkt];
        let err = queue.tx_burst(&mut burst, &mut pool).unwrap_err();
        assert!(err.to_string().contains("TAP fpt7"), "{err}");
        assert!(
            burst.is_empty() && pool.available() == 8,
            "buffers still go back"
        );
        let err = queue
            .rx_burst(PortId(1), &mut pool, &mut Vec::new(), 4)
            .unwrap_err();
        assert!(err.to_string().contains("TAP fpt7"), "{err}");
    });
}
