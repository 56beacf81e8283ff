//! A packet capture on every port of the underlay bridge: an AF_PACKET socket opened inside
//! the underlay namespace by a thread of the test, reading until a deadline.
//!
//! Invariant: the capture runs for a bounded time and keeps only VXLAN frames, parsed here
//! from fixed header offsets (independently of the dataplane's wire code).

use std::net::Ipv4Addr;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::net::{AddressFamily, RecvFlags, SocketType, eth, recv, socket, sockopt};

/// A VXLAN packet as seen on the wire: outer IPs and UDP port, inner IPs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VxlanFrame {
    pub outer_src: Ipv4Addr,
    pub outer_dst: Ipv4Addr,
    pub outer_dst_port: u16,
    pub inner_src: Ipv4Addr,
    pub inner_dst: Ipv4Addr,
}

/// Parses an Ethernet/IPv4/UDP/VXLAN/Ethernet/IPv4 frame; None for anything else.
pub fn parse_vxlan(frame: &[u8]) -> Option<VxlanFrame> {
    let ip4 = |b: &[u8]| Ipv4Addr::new(b[0], b[1], b[2], b[3]);
    if frame.get(12..14)? != [0x08, 0x00] || *frame.get(23)? != 17 {
        return None;
    }
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    let udp = 14 + ihl;
    let dst_port = u16::from_be_bytes([*frame.get(udp + 2)?, *frame.get(udp + 3)?]);
    let inner_eth = udp + 8 + 8;
    let inner_ip = inner_eth + 14;
    if frame.get(inner_eth + 12..inner_eth + 14)? != [0x08, 0x00] {
        return None;
    }
    Some(VxlanFrame {
        outer_src: ip4(&frame[26..30]),
        outer_dst: ip4(&frame[30..34]),
        outer_dst_port: dst_port,
        inner_src: ip4(frame.get(inner_ip + 12..inner_ip + 16)?),
        inner_dst: ip4(frame.get(inner_ip + 16..inner_ip + 20)?),
    })
}

/// The source and destination of an Ethernet/IPv4 frame (the outer header); None otherwise.
pub fn ipv4_addresses(frame: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr)> {
    if frame.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let src = frame.get(26..30)?;
    let dst = frame.get(30..34)?;
    Some((
        Ipv4Addr::new(src[0], src[1], src[2], src[3]),
        Ipv4Addr::new(dst[0], dst[1], dst[2], dst[3]),
    ))
}

/// Starts capturing in namespace `ns` for `duration`; returns once the socket is open.
pub fn start(ns: &str, duration: Duration) -> JoinHandle<Vec<Vec<u8>>> {
    let (ready, opened) = mpsc::channel();
    let ns = ns.to_owned();
    let handle = std::thread::spawn(move || {
        testbed::netns::within(&ns, || {
            let fd = socket(AddressFamily::PACKET, SocketType::RAW, Some(eth::ALL)).unwrap();
            sockopt::set_socket_timeout(
                &fd,
                sockopt::Timeout::Recv,
                Some(Duration::from_millis(100)),
            )
            .unwrap();
            ready.send(()).unwrap();
            let deadline = Instant::now() + duration;
            let mut frames = Vec::new();
            let mut buf = vec![0u8; 65536];
            while Instant::now() < deadline {
                if let Ok((n, _)) = recv(&fd, &mut buf[..], RecvFlags::empty()) {
                    frames.push(buf[..n].to_vec());
                }
            }
            Ok(frames)
        })
        .unwrap()
    });
    opened.recv().unwrap();
    handle
}

#[test]
fn parses_a_literal_vxlan_frame() {
    let mut frame = vec![0u8; 14 + 20 + 8 + 8 + 14 + 20];
    frame[12..14].copy_from_slice(&[0x08, 0x00]);
    frame[14] = 0x45;
    frame[23] = 17;
    frame[26..30].copy_from_slice(&[192, 168, 50, 2]);
    frame[30..34].copy_from_slice(&[192, 168, 50, 3]);
    frame[36..38].copy_from_slice(&8472u16.to_be_bytes());
    frame[50 + 12..50 + 14].copy_from_slice(&[0x08, 0x00]);
    frame[64 + 12..64 + 16].copy_from_slice(&[10, 244, 0, 2]);
    frame[64 + 16..64 + 20].copy_from_slice(&[10, 244, 1, 2]);
    assert_eq!(
        parse_vxlan(&frame),
        Some(VxlanFrame {
            outer_src: Ipv4Addr::new(192, 168, 50, 2),
            outer_dst: Ipv4Addr::new(192, 168, 50, 3),
            outer_dst_port: 8472,
            inner_src: Ipv4Addr::new(10, 244, 0, 2),
            inner_dst: Ipv4Addr::new(10, 244, 1, 2),
        })
    );
    assert_eq!(
        ipv4_addresses(&frame),
        Some((
            Ipv4Addr::new(192, 168, 50, 2),
            Ipv4Addr::new(192, 168, 50, 3)
        ))
    );
    frame[23] = 6;
    assert_eq!(parse_vxlan(&frame), None);
    frame[12] = 0x86;
    assert_eq!(ipv4_addresses(&frame), None);
}
