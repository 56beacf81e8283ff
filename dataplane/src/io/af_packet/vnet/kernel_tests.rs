//! Super-packets through a real veth with `PACKET_VNET_HDR`: the kernel's TCP (TSO on) hands
//! over a 14 KB super-packet, read whole past the 2 KB ring frames (`TP_STATUS_COPY`), and
//! takes back a super-packet merged from our segments and one passed through whole.
#![allow(clippy::unwrap_used, reason = "tests unwrap what they set up")]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use etherparse::{PacketBuilder, PacketHeaders, TcpOptionElement, TransportHeader};

use super::super::{AfPacketConfig, AfPacketPort};
use crate::io::PacketIo;
use crate::io::testframes::{OUR_MAC, receive_matching};
use crate::io::testnet::{Netns, veth_pair};
use crate::offload::vnet;
use crate::packet::{MAX_FRAME, Packet, PacketPool};

const WAIT: Duration = Duration::from_secs(3);
const PEER: [u8; 4] = [10, 3, 0, 2];
const KERNEL: [u8; 4] = [10, 3, 0, 1];
const PORT: u16 = 9301;
const OUR_ISN: u32 = 7_000_000;

/// A TCP segment from us (10.3.0.2:9301) to the kernel's socket.
fn to_kernel(
    kernel: ([u8; 6], u16),
    (seq, ack): (u32, u32),
    syn: bool,
    psh: bool,
    payload: &[u8],
) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(OUR_MAC, kernel.0)
        .ipv4(PEER, KERNEL, 64)
        .tcp(PORT, kernel.1, seq, 65535)
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

fn packet_of(pool: &mut PacketPool, frame: &[u8]) -> Packet {
    let mut p = if frame.len() > MAX_FRAME {
        pool.get_large().unwrap()
    } else {
        pool.get().unwrap()
    };
    assert!(p.fill(frame));
    p
}

#[test]
fn kernel_tcp_super_packets_come_in_whole_and_go_out_merged_and_passed_through() {
    let ns = Netns::create();
    veth_pair(&ns, "fpv", "fpw");
    ns.run(|| {
        let config = AfPacketConfig {
            vnet_hdr: true,
            ..AfPacketConfig::default()
        };
        let mut port = AfPacketPort::open("fpv", &config).unwrap();
        assert!(port.accepts_gso());
        ns.ip(&["addr", "add", "10.3.0.1/24", "dev", "fpw"]);
        ns.ip(&[
            "neigh",
            "add",
            "10.3.0.2",
            "lladdr",
            "02:00:00:00:00:02",
            "dev",
            "fpw",
        ]);
        let mut pool = PacketPool::with_large(256, 16);
        let connecting = std::thread::spawn(|| {
            TcpStream::connect_timeout(&"10.3.0.2:9301".parse().unwrap(), WAIT).unwrap()
        });
        let syn = receive_matching(&mut port, &mut pool, 1, WAIT, |p| {
            tcp_of(p).is_some_and(|t| t.syn && t.destination_port == PORT)
        });
        let syn = syn.first().expect("the kernel's SYN");
        let kernel_mac: [u8; 6] = syn.data()[6..12].try_into().unwrap();
        let t = tcp_of(syn).unwrap();
        let kernel = (kernel_mac, t.source_port);
        let kernel_isn = t.sequence_number;
        let synack = to_kernel(kernel, (OUR_ISN, kernel_isn + 1), true, false, &[]);
        let mut burst = vec![packet_of(&mut pool, &synack)];
        assert_eq!(port.tx_burst(&mut burst, &mut pool).unwrap(), 1);
        let mut stream = connecting.join().unwrap();

        // The kernel sends its initial window at once: one TSO super-packet, longer than a
        // ring frame, read whole from the receive queue.
        let data: Vec<u8> = (0..14_000u32).map(|i| (i % 251) as u8).collect();
        stream.set_nonblocking(true).unwrap();
        let written = stream.write(&data).unwrap();
        let got = receive_matching(&mut port, &mut pool, 1, WAIT, |p| p.meta.offload.is_gso());
        let sp = got.first().expect("a GSO super-packet from the kernel");
        assert!(
            sp.len() > MAX_FRAME,
            "longer than a ring frame: {}",
            sp.len()
        );
        assert_eq!(sp.meta.offload.gso_type & !vnet::GSO_ECN, vnet::GSO_TCPV4);
        assert_eq!(sp.meta.offload.gso_size, 1460);
        assert_eq!(sp.meta.offload.csum_start, 34);
        assert!(sp.meta.csum_partial);
        assert_eq!(vnet::check_frame(&sp.meta, sp.len()), Ok(()));
        let h = PacketHeaders::from_ethernet_slice(sp.data()).unwrap();
        assert_eq!(h.payload.slice(), &data[..h.payload.slice().len()]);
        assert!(written >= h.payload.slice().len());
        let stats = port.stats().unwrap();
        assert!(stats.rx_gso >= 1, "{stats:?}");
        assert_eq!(stats.rx_truncated, 0);

        // Three of our segments, contiguous, go to the kernel as one merged super-packet.
        let ours: Vec<u8> = (0..6000u32).map(|i| (i * 7) as u8).collect();
        let mut segs: Vec<Packet> = ours[..3000]
            .chunks(1000)
            .enumerate()
            .map(|(i, chunk)| {
                let seq = OUR_ISN + 1 + (i * 1000) as u32;
                let frame = to_kernel(kernel, (seq, kernel_isn + 1), false, i == 2, chunk);
                packet_of(&mut pool, &frame)
            })
            .collect();
        assert_eq!(port.tx_burst(&mut segs, &mut pool).unwrap(), 3);
        assert_eq!(port.stats().unwrap().tx_coalesced, 3);

        // Then a super-packet passed through whole: 3000 bytes in segments of 1000, its
        // checksum field holding the pseudo-header seed, as the pipeline leaves one.
        let frame = to_kernel(
            kernel,
            (OUR_ISN + 3001, kernel_isn + 1),
            false,
            true,
            &ours[3000..],
        );
        let mut sp = packet_of(&mut pool, &frame);
        let seed = {
            use crate::wire::checksum::{fold, pseudo_header_v4};
            let tcp_len = (frame.len() - 34) as u16;
            fold(pseudo_header_v4(PEER.into(), KERNEL.into(), 6, tcp_len))
        };
        sp.data_mut()[50..52].copy_from_slice(&seed.to_be_bytes());
        let header = vnet::VnetHeader::tcpv4(34, 20, 1000);
        header.apply(&mut sp.meta);
        let mut burst = vec![sp];
        assert_eq!(port.tx_burst(&mut burst, &mut pool).unwrap(), 1);
        assert_eq!(port.stats().unwrap().tx_gso, 2);

        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut read = vec![0u8; ours.len()];
        stream.read_exact(&mut read).unwrap();
        assert_eq!(read, ours, "the kernel took both super-packets' checksums");
    });
}
