//! TSO and GRO through a real TAP: the kernel's TCP hands over a super-packet with its
//! virtio-net header, and takes back a super-packet merged from our segments.
#![allow(clippy::unwrap_used, reason = "tests unwrap what they set up")]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use etherparse::{PacketBuilder, PacketHeaders, TcpOptionElement, TransportHeader};

use super::*;
use crate::io::testframes::{OUR_MAC, receive_matching};
use crate::io::testnet::Netns;
use crate::offload::vnet;
use crate::packet::MAX_FRAME;

const WAIT: Duration = Duration::from_secs(3);
const PEER: [u8; 4] = [10, 2, 0, 2];
const KERNEL: [u8; 4] = [10, 2, 0, 1];
const PORT: u16 = 9300;
const OUR_ISN: u32 = 5_000_000;

/// A TCP segment from the peer (us, 10.2.0.2:9300) to the kernel's socket.
fn to_kernel(
    kernel_mac: [u8; 6],
    kernel_port: u16,
    (seq, ack): (u32, u32),
    syn: bool,
    psh: bool,
    payload: &[u8],
) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(OUR_MAC, kernel_mac)
        .ipv4(PEER, KERNEL, 64)
        .tcp(PORT, kernel_port, seq, 65535)
        .ack(ack);
    if syn {
        b = b
            .syn()
            .options(&[
                TcpOptionElement::MaximumSegmentSize(1460),
                TcpOptionElement::Noop,
                TcpOptionElement::WindowScale(7),
            ])
            .unwrap();
    }
    if psh {
        b = b.psh();
    }
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

fn tcp_of(pkt: &Packet) -> Option<etherparse::TcpHeader> {
    match PacketHeaders::from_ethernet_slice(pkt.data())
        .ok()?
        .transport
    {
        Some(TransportHeader::Tcp(t)) if t.source_port != 0 => Some(t),
        _ => None,
    }
}

#[test]
fn kernel_tcp_arrives_as_a_super_packet_and_takes_back_merged_segments() {
    let ns = Netns::create();
    ns.run(|| {
        let mut queue = TapQueue::open("fpt5").unwrap();
        ns.ip(&["addr", "add", "10.2.0.1/24", "dev", "fpt5"]);
        ns.ip(&["link", "set", "fpt5", "up"]);
        ns.ip(&[
            "neigh",
            "add",
            "10.2.0.2",
            "lladdr",
            "02:00:00:00:00:02",
            "dev",
            "fpt5",
        ]);
        let mut pool = PacketPool::with_large(256, 16);
        let connecting = std::thread::spawn(|| {
            TcpStream::connect_timeout(&"10.2.0.2:9300".parse().unwrap(), WAIT).unwrap()
        });
        let syn = receive_matching(&mut queue, &mut pool, 1, WAIT, |p| {
            tcp_of(p).is_some_and(|t| t.syn && t.destination_port == PORT)
        });
        let syn = syn.first().expect("the kernel's SYN");
        let kernel_mac: [u8; 6] = syn.data()[6..12].try_into().unwrap();
        let t = tcp_of(syn).unwrap();
        let (kernel_port, kernel_isn) = (t.source_port, t.sequence_number);
        let synack = to_kernel(
            kernel_mac,
            kernel_port,
            (OUR_ISN, kernel_isn + 1),
            true,
            false,
            &[],
        );
        let mut pkt = pool.get().unwrap();
        assert!(pkt.fill(&synack));
        assert_eq!(queue.tx_burst(&mut vec![pkt], &mut pool).unwrap(), 1);
        let mut stream = connecting.join().unwrap();

        // The kernel sends its initial window at once: one TSO super-packet.
        let data: Vec<u8> = (0..14_000u32).map(|i| (i % 251) as u8).collect();
        stream.set_nonblocking(true).unwrap();
        let written = stream.write(&data).unwrap();
        let got = receive_matching(&mut queue, &mut pool, 1, WAIT, |p| p.meta.offload.is_gso());
        let sp = got.first().expect("a GSO super-packet from the kernel");
        assert!(
            sp.len() > MAX_FRAME,
            "longer than a small buffer: {}",
            sp.len()
        );
        assert_eq!(sp.meta.offload.gso_type & !vnet::GSO_ECN, vnet::GSO_TCPV4);
        assert_eq!(sp.meta.offload.gso_size, 1460);
        assert!(sp.meta.csum_partial);
        assert_eq!(vnet::check_frame(&sp.meta, sp.len()), Ok(()));
        let h = PacketHeaders::from_ethernet_slice(sp.data()).unwrap();
        assert_eq!(h.payload.slice(), &data[..h.payload.slice().len()]);
        assert!(written >= h.payload.slice().len());
        assert!(queue.stats().rx_gso >= 1);

        // Three of our segments, contiguous, go to the kernel as one merged write.
        let ours: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
        let mut segs: Vec<Packet> = ours
            .chunks(1000)
            .enumerate()
            .map(|(i, chunk)| {
                let seq = OUR_ISN + 1 + (i * 1000) as u32;
                let frame = to_kernel(
                    kernel_mac,
                    kernel_port,
                    (seq, kernel_isn + 1),
                    false,
                    i == 2,
                    chunk,
                );
                let mut p = pool.get().unwrap();
                assert!(p.fill(&frame));
                p
            })
            .collect();
        assert_eq!(queue.tx_burst(&mut segs, &mut pool).unwrap(), 3);
        assert_eq!(queue.stats().tx_coalesced, 3);
        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut read = vec![0u8; ours.len()];
        stream.read_exact(&mut read).unwrap();
        assert_eq!(
            read, ours,
            "the kernel accepted the merged super-packet's checksum"
        );
    });
}
