//! AF_PACKET on a veth pair in a throw-away namespace; the other end is driven by a plain
//! raw socket or by the kernel's own UDP stack.
#![allow(clippy::unwrap_used, reason = "tests unwrap what they set up")]

use std::collections::HashMap;
use std::net::UdpSocket;
use std::time::Duration;

use super::*;
use crate::io::testframes::{
    OTHER_MAC, OUR_MAC, complete_partial_checksum, parse_udp, receive_matching,
    reference_udp_checksum, send_one, udp_frame,
};
use crate::io::testnet::{Netns, RawSocket, veth_pair};
use crate::packet::MAX_FRAME;

const WAIT: Duration = Duration::from_secs(2);
const PEER_IP: [u8; 4] = [10, 1, 0, 2];
const OUR_IP: [u8; 4] = [10, 1, 0, 1];

/// A namespace with the veth pair `fpa` (the port) / `fpb` (the peer).
fn setup() -> Netns {
    let ns = Netns::create();
    veth_pair(&ns, "fpa", "fpb");
    ns
}

/// A frame from the peer to us with `payload`, on flow `sport`.
fn peer_frame(sport: u16, payload: &[u8]) -> Vec<u8> {
    udp_frame(
        (OTHER_MAC, OUR_MAC),
        (PEER_IP, OUR_IP),
        (sport, 9000),
        payload,
    )
}

fn is_test_udp(pkt: &Packet) -> bool {
    parse_udp(pkt.data()).is_some_and(|udp| udp.dport == 9000)
}

#[test]
fn receives_frames_sent_on_the_peer_byte_for_byte() {
    let ns = setup();
    ns.run(|| {
        let mut port = AfPacketPort::open("fpa", &AfPacketConfig::default()).unwrap();
        let mut pool = PacketPool::with_capacity(64);
        let mut batch = Vec::new();
        assert_eq!(
            port.rx_burst(PortId(3), &mut pool, &mut batch, 32).unwrap(),
            0
        );
        let peer = RawSocket::packet("fpb");
        let sent: Vec<Vec<u8>> = (0..3u8).map(|i| peer_frame(4000, &[i; 40])).collect();
        for frame in &sent {
            peer.send(frame);
        }
        let got = receive_matching(&mut port, &mut pool, 3, WAIT, is_test_udp);
        let bytes: Vec<&[u8]> = got.iter().map(Packet::data).collect();
        assert_eq!(bytes, sent.iter().map(Vec::as_slice).collect::<Vec<_>>());
        for pkt in &got {
            assert_eq!(pkt.meta.in_port, PortId(7));
            assert!(
                !pkt.meta.csum_partial,
                "a raw frame carries a full checksum"
            );
        }
        assert_eq!(port.stats().unwrap().rx_truncated, 0);
    });
}

#[test]
fn transmitted_frames_reach_the_peer_and_are_not_echoed_back() {
    let ns = setup();
    ns.run(|| {
        let mut port = AfPacketPort::open("fpa", &AfPacketConfig::default()).unwrap();
        let peer = RawSocket::packet("fpb");
        let mut pool = PacketPool::with_capacity(64);
        let frames: Vec<Vec<u8>> = (0..3u8)
            .map(|i| {
                udp_frame(
                    (OUR_MAC, OTHER_MAC),
                    (OUR_IP, PEER_IP),
                    (9000, 5000 + u16::from(i)),
                    b"out",
                )
            })
            .collect();
        let mut burst: Vec<Packet> = frames
            .iter()
            .map(|f| Packet::from_frame(f).unwrap())
            .collect();
        assert_eq!(port.tx_burst(&mut burst, &mut pool).unwrap(), 3);
        assert!(burst.is_empty());
        assert_eq!(pool.available(), 67, "every buffer goes back to the pool");
        for frame in &frames {
            let seen = peer.recv_matching(WAIT, |b| b == frame.as_slice());
            assert!(
                seen.is_some(),
                "frame for port {:?} not seen on the peer",
                &frame[34..36]
            );
        }
        let echoed = receive_matching(&mut port, &mut pool, 1, Duration::from_millis(200), |p| {
            parse_udp(p.data()).is_some_and(|u| u.sport == 9000)
        });
        assert!(echoed.is_empty(), "PACKET_IGNORE_OUTGOING");
    });
}

#[test]
fn fanout_splits_flows_and_keeps_each_flow_on_one_socket() {
    let ns = setup();
    ns.run(|| {
        let config = AfPacketConfig {
            fanout_group: Some(0x4242),
            ..AfPacketConfig::default()
        };
        let mut ports = [
            AfPacketPort::open("fpa", &config).unwrap(),
            AfPacketPort::open("fpa", &config).unwrap(),
        ];
        let mut pool = PacketPool::with_capacity(1024);
        let peer = RawSocket::packet("fpb");
        let (flows, per_flow) = (64u16, 4u8);
        for round in 0..per_flow {
            for flow in 0..flows {
                peer.send(&peer_frame(10_000 + flow, &[round; 20]));
            }
        }
        let total = usize::from(flows) * usize::from(per_flow);
        let mut owner: HashMap<u16, usize> = HashMap::new();
        let mut received = 0;
        let deadline = std::time::Instant::now() + WAIT;
        while received < total && std::time::Instant::now() < deadline {
            for (index, port) in ports.iter_mut().enumerate() {
                for pkt in receive_matching(
                    port,
                    &mut pool,
                    total,
                    Duration::from_millis(20),
                    is_test_udp,
                ) {
                    let sport = parse_udp(pkt.data()).unwrap().sport;
                    let first = *owner.entry(sport).or_insert(index);
                    assert_eq!(first, index, "flow {sport} seen on both sockets");
                    received += 1;
                    pool.put(pkt);
                }
            }
        }
        assert_eq!(received, total);
        assert_eq!(owner.len(), usize::from(flows));
        let on_first = owner.values().filter(|&&i| i == 0).count();
        assert!(
            on_first > 0 && on_first < owner.len(),
            "all {} flows went to one socket",
            owner.len()
        );
    });
}

#[test]
fn a_full_tx_ring_refuses_frames_and_queued_ones_leave_when_the_link_returns() {
    let ns = setup();
    ns.run(|| {
        let config = AfPacketConfig {
            tx_frames: 1,
            ..AfPacketConfig::default()
        };
        let mut port = AfPacketPort::open("fpa", &config).unwrap();
        let capacity = port.tx_ring_frames();
        assert_eq!(capacity, 30, "one block");
        let peer = RawSocket::packet("fpb");
        let mut pool = PacketPool::with_capacity(64);
        ns.ip(&["link", "set", "fpa", "down"]);
        let mut burst: Vec<Packet> = (0..capacity + 10)
            .map(|i| Packet::from_frame(&peer_frame(20_000 + i as u16, b"queued")).unwrap())
            .collect();
        assert_eq!(port.tx_burst(&mut burst, &mut pool).unwrap(), capacity);
        assert_eq!(
            send_one(&mut port, &mut pool, &peer_frame(1, b"x")),
            0,
            "still full"
        );
        let error = port.take_error().unwrap().map(|e| e.raw_os_error());
        assert_eq!(
            error,
            Some(Some(libc::ENETDOWN)),
            "link down is reported once"
        );
        assert!(port.take_error().unwrap().is_none());

        ns.ip(&["link", "set", "fpa", "up"]);
        assert_eq!(port.tx_burst(&mut Vec::new(), &mut pool).unwrap(), 0);
        let mut arrived = 0;
        while peer
            .recv_matching(WAIT, |b| {
                parse_udp(b).is_some_and(|u| u.payload() == b"queued")
            })
            .is_some()
        {
            arrived += 1;
            if arrived == capacity {
                break;
            }
        }
        assert_eq!(arrived, capacity);
        assert_eq!(
            send_one(&mut port, &mut pool, &peer_frame(2, b"x")),
            1,
            "room again"
        );
    });
}

#[test]
fn transmitting_on_a_deleted_device_is_an_error() {
    let ns = setup();
    ns.run(|| {
        let mut port = AfPacketPort::open("fpa", &AfPacketConfig::default()).unwrap();
        let mut pool = PacketPool::with_capacity(8);
        ns.ip(&["link", "del", "fpa"]);
        let mut pkt = pool.get().unwrap();
        assert!(pkt.fill(&peer_frame(1, b"gone")));
        let err = port.tx_burst(&mut vec![pkt], &mut pool).unwrap_err();
        assert!(err.to_string().contains("No such device"), "ENXIO: {err}");
        assert!(err.to_string().contains("AF_PACKET TX kick"), "{err}");
        assert_eq!(pool.available(), 8);
    });
}

#[test]
fn kernel_drops_on_a_full_rx_ring_are_counted() {
    let ns = setup();
    ns.run(|| {
        let config = AfPacketConfig {
            rx_frames: 1,
            ..AfPacketConfig::default()
        };
        let mut port = AfPacketPort::open("fpa", &config).unwrap();
        assert_eq!(port.rx_ring_frames(), 30);
        let peer = RawSocket::packet("fpb");
        for i in 0..100 {
            peer.send(&peer_frame(i, b"flood"));
        }
        std::thread::sleep(Duration::from_millis(100));
        let stats = port.stats().unwrap();
        assert!(stats.kernel_seen >= 100, "{stats:?}");
        assert_eq!(stats.kernel_dropped, stats.kernel_seen - 30, "{stats:?}");
        assert_eq!(
            port.rx_dropped(),
            stats.kernel_dropped,
            "what the worker reports as the port's receive drops"
        );
        let mut pool = PacketPool::with_capacity(64);
        let mut batch = Vec::new();
        assert_eq!(
            port.rx_burst(PortId(1), &mut pool, &mut batch, 64).unwrap(),
            30
        );
        let again = port.stats().unwrap();
        assert_eq!(
            again.kernel_seen, stats.kernel_seen,
            "totals accumulate across reads"
        );
    });
}

#[test]
fn kernel_udp_over_veth_arrives_partial_and_completes_to_the_right_checksum() {
    let ns = setup();
    ns.ip(&["addr", "add", "10.1.0.2/24", "dev", "fpb"]);
    ns.ip(&[
        "neigh",
        "add",
        "10.1.0.1",
        "lladdr",
        "02:00:00:00:00:02",
        "dev",
        "fpb",
    ]);
    ns.run(|| {
        let mut port = AfPacketPort::open("fpa", &AfPacketConfig::default()).unwrap();
        let mut pool = PacketPool::with_capacity(64);
        let socket = UdpSocket::bind("10.1.0.2:0").unwrap();
        socket
            .send_to(b"partial checksum please", "10.1.0.1:9000")
            .unwrap();
        let got = receive_matching(&mut port, &mut pool, 1, WAIT, is_test_udp);
        let pkt = got.first().expect("the kernel's datagram");
        assert!(pkt.meta.csum_partial, "TP_STATUS_CSUMNOTREADY");
        let udp = parse_udp(pkt.data()).unwrap();
        assert_eq!(udp.payload(), b"partial checksum please");
        let reference = reference_udp_checksum(&udp);
        assert_ne!(
            udp.checksum, reference,
            "the field holds only the pseudo-header sum"
        );
        assert_eq!(complete_partial_checksum(udp.segment), reference);
    });
}

#[test]
fn vlan_tags_the_kernel_strips_on_receive_are_put_back() {
    let ns = setup();
    ns.run(|| {
        let mut port = AfPacketPort::open("fpa", &AfPacketConfig::default()).unwrap();
        let mut pool = PacketPool::with_capacity(64);
        let peer = RawSocket::packet("fpb");
        // The receive path moves a tag into skb metadata before taps see the frame.
        let tagged: Vec<Vec<u8>> = [[0x81, 0x00, 0x20, 0x0a], [0x88, 0xa8, 0x00, 0x07]]
            .iter()
            .map(|tag| {
                let plain = peer_frame(4444, b"tagged on the wire");
                let mut frame = plain[..12].to_vec();
                frame.extend_from_slice(tag);
                frame.extend_from_slice(&plain[12..]);
                peer.send(&frame);
                frame
            })
            .collect();
        let got = receive_matching(&mut port, &mut pool, 2, WAIT, |p| {
            p.data().len() > 16 && p.data()[6..12] == OTHER_MAC
        });
        let bytes: Vec<&[u8]> = got.iter().map(Packet::data).collect();
        assert_eq!(bytes, tagged.iter().map(Vec::as_slice).collect::<Vec<_>>());
    });
}

#[test]
fn frames_longer_than_a_buffer_are_dropped_and_counted() {
    let ns = setup();
    ns.ip(&["link", "set", "fpa", "mtu", "3000"]);
    ns.ip(&["link", "set", "fpb", "mtu", "3000"]);
    ns.run(|| {
        let mut port = AfPacketPort::open("fpa", &AfPacketConfig::default()).unwrap();
        let mut pool = PacketPool::with_capacity(64);
        let peer = RawSocket::packet("fpb");
        // 2049 fits a ring frame but not a buffer; 2500 does not fit a ring frame.
        let headers = 14 + 20 + 8;
        for frame_len in [MAX_FRAME + 1, 2500, MAX_FRAME] {
            peer.send(&peer_frame(4000, &vec![0xcd; frame_len - headers]));
        }
        let got = receive_matching(&mut port, &mut pool, 1, WAIT, is_test_udp);
        assert_eq!(got.first().map(Packet::len), Some(MAX_FRAME));
        assert_eq!(port.stats().unwrap().rx_truncated, 2);
    });
}

#[test]
fn promiscuous_mode_lasts_while_the_port_is_open() {
    let ns = setup();
    let promiscuity = |ns: &Netns| {
        let details = ns.ip_output(&["-d", "link", "show", "fpa"]);
        details
            .split_whitespace()
            .skip_while(|w| *w != "promiscuity")
            .nth(1)
            .map(str::to_owned)
    };
    let port = ns.run(|| AfPacketPort::open("fpa", &AfPacketConfig::default()).unwrap());
    assert_eq!(promiscuity(&ns).as_deref(), Some("1"));
    drop(port);
    assert_eq!(promiscuity(&ns).as_deref(), Some("0"));
}
