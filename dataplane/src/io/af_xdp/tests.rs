//! AF_XDP on a veth pair in a throw-away namespace; the other end is driven by a plain raw
//! AF_PACKET socket (or the kernel's UDP stack), an oracle independent of the backend.
#![allow(clippy::unwrap_used, reason = "tests unwrap what they set up")]

use std::net::UdpSocket;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::*;
use crate::io::reflect::reflect;
use crate::io::sys::{self, IfName};
use crate::io::testframes::{
    OTHER_MAC, OUR_MAC, complete_partial_checksum, parse_udp, receive_matching,
    reference_udp_checksum, send_one, udp_frame,
};
use crate::io::testnet::{Netns, RawSocket, veth_pair, wait_readable};
use crate::packet::MAX_FRAME;

const WAIT: Duration = Duration::from_secs(2);
const PEER_IP: [u8; 4] = [10, 2, 0, 2];
const OUR_IP: [u8; 4] = [10, 2, 0, 1];

/// A namespace with the veth pair `fxa` (the port) / `fxb` (the peer).
fn setup() -> Netns {
    let ns = Netns::create();
    veth_pair(&ns, "fxa", "fxb");
    ns
}

fn test_config(mode: XdpMode) -> AfXdpConfig {
    AfXdpConfig {
        frames: 256,
        mode,
        ..AfXdpConfig::default()
    }
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

/// A frame from us to the peer, on flow `dport`.
fn our_frame(dport: u16, payload: &[u8]) -> Vec<u8> {
    udp_frame(
        (OUR_MAC, OTHER_MAC),
        (OUR_IP, PEER_IP),
        (9000, dport),
        payload,
    )
}

fn is_test_udp(pkt: &Packet) -> bool {
    parse_udp(pkt.data()).is_some_and(|udp| udp.dport == 9000)
}

/// The XDP attachment `ip -d link show` reports for `fxa`: the word after the MTU
/// (`xdp`, `xdpgeneric`, ...) when a program is attached, `None` otherwise.
fn xdp_attachment(ns: &Netns) -> Option<String> {
    let details = ns.ip_output(&["-d", "link", "show", "fxa"]);
    details
        .split_whitespace()
        .find(|word| word.starts_with("xdp"))
        .map(str::to_owned)
}

#[test]
fn the_redirect_program_encodes_to_the_isa_bytes() {
    // Encoded by hand from the eBPF ISA (opcode, dst | src << 4, off le16, imm le32).
    let expected: [[u8; 8]; 6] = [
        [0x61, 0x12, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00], // r2 = *(u32 *)(r1 + 16)
        [0x18, 0x11, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00], // r1 = map fd 7 (pseudo map fd)
        [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00], //      upper 32 bits
        [0xb7, 0x03, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00], // r3 = 2 (XDP_PASS)
        [0x85, 0x00, 0x00, 0x00, 0x33, 0x00, 0x00, 0x00], // call 51 (bpf_redirect_map)
        [0x95, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00], // exit
    ];
    let encoded: Vec<[u8; 8]> = program::redirect_program(7)
        .iter()
        .map(|insn| {
            let mut bytes = [insn.code, insn.regs, 0, 0, 0, 0, 0, 0];
            bytes[2..4].copy_from_slice(&insn.off.to_le_bytes());
            bytes[4..].copy_from_slice(&insn.imm.to_le_bytes());
            bytes
        })
        .collect();
    assert_eq!(encoded, expected);
    assert_eq!(size_of::<program::Insn>(), 8, "struct bpf_insn");
}

#[test]
fn bad_geometry_is_refused_before_touching_the_device() {
    for (frames, frame_size) in [(1, 2048), (256, 3000), (256, 1024), (2 << 20, 2048)] {
        let config = AfXdpConfig {
            frames,
            frame_size,
            ..AfXdpConfig::default()
        };
        let err = AfXdpPort::open("no-such-dev", &config)
            .err()
            .expect("refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    }
}

#[test]
fn the_frame_split_rounds_rings_up_to_powers_of_two() {
    let layout = Layout::new(&AfXdpConfig {
        frames: 7,
        ..AfXdpConfig::default()
    })
    .unwrap();
    assert_eq!((layout.rx_frames, layout.tx_frames), (3, 4));
    assert_eq!((layout.rx_ring, layout.tx_ring), (4, 4));
    assert_eq!(layout.rx_addresses().collect::<Vec<_>>(), [0, 2048, 4096]);
    assert_eq!(
        layout.tx_addresses().collect::<Vec<_>>(),
        [6144, 8192, 10240, 12288]
    );
    assert_eq!(layout.frame_start(4096 + 256), 4096);
}

#[test]
fn opening_a_missing_interface_names_it() {
    let ns = Netns::create();
    let err = ns
        .run(|| AfXdpPort::open("fx-missing", &AfXdpConfig::default()).err())
        .expect("no such device");
    let message = err.to_string();
    assert!(message.contains("No such device"), "{message}");
    assert!(message.contains("fx-missing"), "{message}");
}

fn receives_frames_byte_for_byte(mode: XdpMode) {
    let ns = setup();
    ns.run(|| {
        let mut port = AfXdpPort::open("fxa", &test_config(mode)).unwrap();
        assert_eq!(port.mode(), mode);
        assert!(!port.zero_copy(), "veth has no zero-copy");
        let mut pool = PacketPool::with_capacity(64);
        let mut batch = Vec::new();
        assert_eq!(
            port.rx_burst(PortId(3), &mut pool, &mut batch, 32).unwrap(),
            0
        );
        let peer = RawSocket::packet("fxb");
        let sent: Vec<Vec<u8>> = (0..3u8).map(|i| peer_frame(4000, &[i; 40])).collect();
        for frame in &sent {
            peer.send(frame);
        }
        let got = receive_matching(&mut port, &mut pool, 3, WAIT, is_test_udp);
        let bytes: Vec<&[u8]> = got.iter().map(Packet::data).collect();
        assert_eq!(bytes, sent.iter().map(Vec::as_slice).collect::<Vec<_>>());
        assert!(got.iter().all(|pkt| pkt.meta.in_port == PortId(7)));
        assert_eq!(port.stats().unwrap(), AfXdpStats::default());
    });
}

#[test]
fn a_busy_polling_port_sets_its_socket_options_and_still_receives() {
    let ns = setup();
    ns.run(|| {
        let config = AfXdpConfig {
            busy_poll: true,
            ..test_config(XdpMode::Generic)
        };
        let mut port = AfXdpPort::open("fxa", &config).unwrap();
        assert_eq!(
            port.busy_poll_settings().unwrap(),
            (1, BUSY_POLL_USECS),
            "the budget (SO_BUSY_POLL_BUDGET) was set too, or open would have failed"
        );
        let plain = AfXdpPort::open("fxb", &test_config(XdpMode::Generic)).unwrap();
        assert_eq!(plain.busy_poll_settings().unwrap().0, 0, "off unless asked");
        drop(plain);
        let mut pool = PacketPool::with_capacity(64);
        let mut batch = Vec::new();
        assert_eq!(
            port.rx_burst(PortId(3), &mut pool, &mut batch, 32).unwrap(),
            0,
            "an empty busy poll"
        );
        let peer = RawSocket::packet("fxb");
        let frame = peer_frame(4001, &[7; 40]);
        peer.send(&frame);
        let got = receive_matching(&mut port, &mut pool, 1, WAIT, is_test_udp);
        assert_eq!(got[0].data(), frame.as_slice());
    });
}

#[test]
fn receives_frames_byte_for_byte_in_generic_mode() {
    receives_frames_byte_for_byte(XdpMode::Generic);
}

#[test]
fn receives_frames_byte_for_byte_in_native_mode() {
    receives_frames_byte_for_byte(XdpMode::Native);
}

fn transmitted_frames_reach_the_peer(mode: XdpMode) {
    let ns = setup();
    ns.run(|| {
        let mut port = AfXdpPort::open("fxa", &test_config(mode)).unwrap();
        let peer = RawSocket::packet("fxb");
        let mut pool = PacketPool::with_capacity(64);
        let frames: Vec<Vec<u8>> = (0..3u16).map(|i| our_frame(5000 + i, b"out")).collect();
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
                "frame {:?} not seen on the peer",
                &frame[34..38]
            );
        }
    });
}

#[test]
fn transmitted_frames_reach_the_peer_in_generic_mode() {
    transmitted_frames_reach_the_peer(XdpMode::Generic);
}

#[test]
fn transmitted_frames_reach_the_peer_in_native_mode() {
    transmitted_frames_reach_the_peer(XdpMode::Native);
}

#[test]
fn a_burst_beyond_the_kernel_s_per_call_budget_leaves_whole() {
    let ns = setup();
    ns.run(|| {
        let mut port = AfXdpPort::open("fxa", &test_config(XdpMode::Generic)).unwrap();
        let peer = RawSocket::packet("fxb");
        let mut pool = PacketPool::with_capacity(128);
        let count = 100u16;
        let mut burst: Vec<Packet> = (0..count)
            .map(|i| Packet::from_frame(&our_frame(i, b"many")).unwrap())
            .collect();
        assert_eq!(port.tx_burst(&mut burst, &mut pool).unwrap(), 100);
        for i in 0..count {
            let seen = peer.recv_matching(WAIT, |b| parse_udp(b).is_some_and(|u| u.dport == i));
            assert!(seen.is_some(), "frame {i} of one burst not sent");
        }
        // Every TX frame came back: a full ring's worth can be queued again.
        std::thread::sleep(Duration::from_millis(50));
        let mut again: Vec<Packet> = (0..port.tx_frames())
            .map(|i| Packet::from_frame(&our_frame(i as u16, b"again")).unwrap())
            .collect();
        assert_eq!(
            port.tx_burst(&mut again, &mut pool).unwrap(),
            port.tx_frames()
        );
    });
}

#[test]
fn the_program_is_attached_while_open_and_detached_on_drop() {
    let ns = setup();
    assert_eq!(xdp_attachment(&ns), None);
    for (mode, shown) in [(XdpMode::Generic, "xdpgeneric"), (XdpMode::Auto, "xdp")] {
        let port = ns.run(|| AfXdpPort::open("fxa", &test_config(mode)).unwrap());
        assert_eq!(xdp_attachment(&ns).as_deref(), Some(shown), "{mode:?}");
        drop(port);
        assert_eq!(xdp_attachment(&ns), None, "{mode:?} left attached");
    }
}

#[test]
fn auto_mode_settles_on_native_for_veth() {
    let ns = setup();
    let mode = ns.run(|| {
        AfXdpPort::open("fxa", &test_config(XdpMode::Auto))
            .unwrap()
            .mode()
    });
    assert_eq!(mode, XdpMode::Native);
}

#[test]
fn a_second_port_on_a_device_with_a_program_is_refused_clearly() {
    let ns = setup();
    ns.run(|| {
        let _first = AfXdpPort::open("fxa", &test_config(XdpMode::Generic)).unwrap();
        let err = AfXdpPort::open("fxa", &test_config(XdpMode::Generic))
            .err()
            .expect("busy");
        assert_eq!(err.kind(), io::ErrorKind::ResourceBusy, "{err}");
        assert!(
            err.to_string().contains("already has an XDP program"),
            "{err}"
        );
    });
}

#[test]
fn poll_fd_turns_readable_when_a_frame_arrives() {
    let ns = setup();
    ns.run(|| {
        let mut port = AfXdpPort::open("fxa", &test_config(XdpMode::Generic)).unwrap();
        let fd = port.poll_fd().unwrap();
        assert_eq!(fd, port.raw_fd());
        assert!(!wait_readable(fd, Duration::from_millis(50)));
        RawSocket::packet("fxb").send(&peer_frame(1, b"wake up"));
        assert!(wait_readable(fd, WAIT));
        let mut pool = PacketPool::with_capacity(8);
        let got = receive_matching(&mut port, &mut pool, 1, WAIT, is_test_udp);
        assert_eq!(got.len(), 1);
    });
}

#[test]
fn a_full_tx_side_refuses_frames_and_queued_ones_leave_when_the_link_returns() {
    let ns = setup();
    ns.run(|| {
        let config = AfXdpConfig {
            frames: 8,
            ..test_config(XdpMode::Generic)
        };
        let mut port = AfXdpPort::open("fxa", &config).unwrap();
        let capacity = port.tx_frames();
        assert_eq!(capacity, 4);
        let peer = RawSocket::packet("fxb");
        let mut pool = PacketPool::with_capacity(64);
        ns.ip(&["link", "set", "fxa", "down"]);
        let mut burst: Vec<Packet> = (0..capacity + 3)
            .map(|i| Packet::from_frame(&our_frame(20_000 + i as u16, b"queued")).unwrap())
            .collect();
        assert_eq!(port.tx_burst(&mut burst, &mut pool).unwrap(), capacity);
        assert_eq!(send_one(&mut port, &mut pool, &our_frame(1, b"x")), 0);
        assert_eq!(port.stats().unwrap().tx_ring_full, 4);

        ns.ip(&["link", "set", "fxa", "up"]);
        assert_eq!(port.tx_burst(&mut Vec::new(), &mut pool).unwrap(), 0);
        let mut arrived = 0;
        while arrived < capacity
            && peer
                .recv_matching(WAIT, |b| {
                    parse_udp(b).is_some_and(|u| u.payload() == b"queued")
                })
                .is_some()
        {
            arrived += 1;
        }
        assert_eq!(arrived, capacity);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            send_one(&mut port, &mut pool, &our_frame(2, b"x")),
            1,
            "room again"
        );
    });
}

#[test]
fn kernel_drops_on_an_empty_fill_ring_are_counted() {
    let ns = setup();
    ns.run(|| {
        let config = AfXdpConfig {
            frames: 64,
            ..test_config(XdpMode::Generic)
        };
        let mut port = AfXdpPort::open("fxa", &config).unwrap();
        assert_eq!(port.rx_frames(), 32);
        let peer = RawSocket::packet("fxb");
        for i in 0..100 {
            peer.send(&peer_frame(i, b"flood"));
        }
        std::thread::sleep(Duration::from_millis(100));
        let stats = port.stats().unwrap();
        assert_eq!(stats.kernel_rx_dropped, 68, "{stats:?}");
        assert!(stats.fill_ring_empty > 0, "{stats:?}");
        let mut pool = PacketPool::with_capacity(64);
        let mut batch = Vec::new();
        assert_eq!(
            port.rx_burst(PortId(1), &mut pool, &mut batch, 64).unwrap(),
            32
        );
        // The frames went back to the fill ring: the next flood is received again.
        peer.send(&peer_frame(7, b"after"));
        let got = receive_matching(&mut port, &mut pool, 1, WAIT, is_test_udp);
        assert_eq!(got.len(), 1);
    });
}

#[test]
fn frames_longer_than_a_buffer_or_a_umem_frame_are_dropped_and_counted() {
    let ns = setup();
    ns.ip(&["link", "set", "fxa", "mtu", "3000"]);
    ns.ip(&["link", "set", "fxb", "mtu", "3000"]);
    ns.run(|| {
        let config = AfXdpConfig {
            frame_size: 4096,
            ..test_config(XdpMode::Generic)
        };
        let mut port = AfXdpPort::open("fxa", &config).unwrap();
        let mut pool = PacketPool::with_capacity(64);
        let peer = RawSocket::packet("fxb");
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
fn frames_longer_than_a_2048_byte_umem_frame_are_dropped_by_the_kernel() {
    let ns = setup();
    ns.ip(&["link", "set", "fxa", "mtu", "3000"]);
    ns.ip(&["link", "set", "fxb", "mtu", "3000"]);
    ns.run(|| {
        let mut port = AfXdpPort::open("fxa", &test_config(XdpMode::Generic)).unwrap();
        let mut pool = PacketPool::with_capacity(64);
        let peer = RawSocket::packet("fxb");
        let headers = 14 + 20 + 8;
        // 2048 less the kernel's 256 bytes of XDP headroom.
        for frame_len in [1793, 1792] {
            peer.send(&peer_frame(4000, &vec![0xab; frame_len - headers]));
        }
        let got = receive_matching(&mut port, &mut pool, 1, WAIT, is_test_udp);
        assert_eq!(got.first().map(Packet::len), Some(1792));
        assert_eq!(port.stats().unwrap().kernel_rx_dropped, 1);
    });
}

#[test]
fn transmitting_on_a_deleted_device_is_an_error() {
    let ns = setup();
    ns.run(|| {
        let mut port = AfXdpPort::open("fxa", &test_config(XdpMode::Generic)).unwrap();
        let mut pool = PacketPool::with_capacity(8);
        ns.ip(&["link", "del", "fxa"]);
        let mut pkt = pool.get().unwrap();
        assert!(pkt.fill(&our_frame(1, b"gone")));
        let err = port.tx_burst(&mut vec![pkt], &mut pool).unwrap_err();
        assert!(err.to_string().contains("AF_XDP TX kick"), "{err}");
        assert_eq!(pool.available(), 8);
    });
}

/// Turns off TX checksum offload on `ifname` in the calling thread's namespace, as
/// `ethtool -K IFNAME tx off` does (the legacy ETHTOOL_STXCSUM request).
fn disable_tx_checksum_offload(ifname: &str) {
    const ETHTOOL_STXCSUM: u32 = 0x17;
    // struct ethtool_value { cmd, data }
    let mut value = [ETHTOOL_STXCSUM, 0];
    let socket = sys::socket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
    let mut request = IfName::new(ifname)
        .unwrap()
        .request(libc::__c_anonymous_ifr_ifru {
            ifru_data: value.as_mut_ptr().cast(),
        });
    sys::ioctl_with(
        socket.as_fd(),
        libc::SIOCETHTOOL as libc::Ioctl,
        &mut request,
        "ETHTOOL_STXCSUM",
    )
    .unwrap();
}

#[test]
fn kernel_udp_over_veth_keeps_a_partial_checksum_until_the_peer_stops_offloading() {
    let ns = setup();
    ns.ip(&["addr", "add", "10.2.0.2/24", "dev", "fxb"]);
    ns.ip(&[
        "neigh",
        "add",
        "10.2.0.1",
        "lladdr",
        "02:00:00:00:00:02",
        "dev",
        "fxb",
    ]);
    ns.run(|| {
        let mut port = AfXdpPort::open("fxa", &test_config(XdpMode::Auto)).unwrap();
        let mut pool = PacketPool::with_capacity(64);
        let socket = UdpSocket::bind("10.2.0.2:0").unwrap();
        let mut exchange = |payload: &[u8]| {
            socket.send_to(payload, "10.2.0.1:9000").unwrap();
            let got = receive_matching(&mut port, &mut pool, 1, WAIT, is_test_udp);
            let pkt = got.first().expect("the kernel's datagram");
            let udp = parse_udp(pkt.data()).unwrap();
            assert_eq!(udp.payload(), payload);
            assert!(!pkt.meta.csum_partial, "AF_XDP cannot report it");
            (
                udp.checksum,
                reference_udp_checksum(&udp),
                complete_partial_checksum(udp.segment),
            )
        };
        // veth hands the frame over CHECKSUM_PARTIAL and XDP has no flag for it: the field
        // holds only the pseudo-header sum.
        let (field, reference, completed) = exchange(b"offloaded");
        assert_ne!(field, reference);
        assert_eq!(completed, reference);
        disable_tx_checksum_offload("fxb");
        let (field, reference, _) = exchange(b"computed by the sender");
        assert_eq!(field, reference);
    });
}

/// Raises the flag when dropped, so a failing generator still stops the reflector.
struct RaiseOnDrop<'a>(&'a AtomicBool);

impl Drop for RaiseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[test]
fn reflects_a_veth_peer_s_traffic_back_to_it() {
    let ns = setup();
    let (stop, ready) = (AtomicBool::new(false), AtomicBool::new(false));
    let count = 300u16;
    let stats = std::thread::scope(|scope| {
        let reflector = scope.spawn(|| {
            ns.run(|| {
                let config = AfXdpConfig {
                    frames: 64,
                    ..test_config(XdpMode::Auto)
                };
                let mut port = AfXdpPort::open("fxa", &config).unwrap();
                let mut pool = PacketPool::with_capacity(256);
                ready.store(true, Ordering::Release);
                reflect(&mut port, PortId(0), &mut pool, 32, &stop).unwrap()
            })
        });
        let raise = RaiseOnDrop(&stop);
        ns.run(|| {
            let peer = RawSocket::packet("fxb");
            while !ready.load(Ordering::Acquire) && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(1));
            }
            for i in 0..count {
                let frame = peer_frame(i, b"ping");
                peer.send(&frame);
                let back = peer.recv_matching(WAIT, |b| {
                    b[..6] == OTHER_MAC && parse_udp(b).is_some_and(|u| u.sport == i)
                });
                let back = back.unwrap_or_else(|| panic!("frame {i} was not reflected"));
                assert_eq!(back[6..12], OUR_MAC);
                assert_eq!(back[12..], frame[12..]);
            }
        });
        drop(raise);
        reflector.join().unwrap()
    });
    assert_eq!(stats.received, u64::from(count));
    assert_eq!(stats.transmitted, u64::from(count));
    assert_eq!(stats.refused, 0);
}
