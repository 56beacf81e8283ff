//! The reflector over the in-memory port (no privileges) and over AF_PACKET on a veth pair.
#![allow(clippy::unwrap_used, reason = "tests unwrap what they set up")]

use std::time::Duration;

use super::*;
use crate::io::af_packet::{AfPacketConfig, AfPacketPort};
use crate::io::mem::MemPort;
use crate::io::testframes::{OTHER_MAC, OUR_MAC, parse_udp, udp_frame};
use crate::io::testnet::{Netns, RawSocket, veth_pair};
use crate::packet::Packet;

/// A port that raises `stop` the first time it has nothing to receive.
struct StopWhenDrained<'a> {
    inner: MemPort,
    stop: &'a AtomicBool,
}

impl PacketIo for StopWhenDrained<'_> {
    fn rx_burst(
        &mut self,
        port: PortId,
        pool: &mut PacketPool,
        batch: &mut Vec<Packet>,
        max: usize,
    ) -> io::Result<usize> {
        let n = self.inner.rx_burst(port, pool, batch, max)?;
        if n == 0 {
            self.stop.store(true, Ordering::Relaxed);
        }
        Ok(n)
    }

    fn tx_burst(&mut self, pkts: &mut Vec<Packet>, pool: &mut PacketPool) -> io::Result<usize> {
        self.inner.tx_burst(pkts, pool)
    }
}

#[test]
fn swaps_macs_sends_everything_back_and_counts_refusals() {
    let stop = AtomicBool::new(false);
    let mut port = StopWhenDrained {
        inner: MemPort::new(5),
        stop: &stop,
    };
    let frame = |i: u8| {
        let mut f = vec![1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 0x08, 0x00];
        f.push(i);
        f
    };
    for i in 0..7 {
        port.inner.inject(&frame(i));
    }
    port.inner.inject(&[9, 9, 9]);
    let mut pool = PacketPool::with_capacity(16);
    let stats = reflect(&mut port, PortId(0), &mut pool, 4, &stop).unwrap();
    assert_eq!(
        stats,
        ReflectStats {
            received: 8,
            transmitted: 5,
            refused: 3,
            empty_polls: 1
        }
    );
    let sent = port.inner.take_tx();
    assert_eq!(sent[0], [2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 0x08, 0x00, 0]);
    assert_eq!(sent.len(), 5);
    assert_eq!(pool.available(), 16, "refused frames go back to the pool");
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
    let ns = Netns::create();
    veth_pair(&ns, "fpr0", "fpr1");
    let stop = AtomicBool::new(false);
    let count = 200u16;
    let stats = std::thread::scope(|scope| {
        let reflector = scope.spawn(|| {
            ns.run(|| {
                let mut port = AfPacketPort::open("fpr0", &AfPacketConfig::default()).unwrap();
                let mut pool = PacketPool::with_capacity(256);
                reflect(&mut port, PortId(0), &mut pool, 32, &stop).unwrap()
            })
        });
        let raise = RaiseOnDrop(&stop);
        ns.run(|| {
            let peer = RawSocket::packet("fpr1");
            std::thread::sleep(Duration::from_millis(50));
            for i in 0..count {
                let frame = udp_frame(
                    (OTHER_MAC, OUR_MAC),
                    ([10, 3, 0, 2], [10, 3, 0, 1]),
                    (i, 7),
                    b"ping",
                );
                peer.send(&frame);
                let back = peer.recv_matching(Duration::from_secs(2), |b| {
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

#[test]
fn forward_sends_what_one_port_receives_out_of_the_other() {
    let stop = AtomicBool::new(false);
    let mut rx = StopWhenDrained {
        inner: MemPort::new(16),
        stop: &stop,
    };
    let mut tx = MemPort::new(3);
    for i in 0..5u8 {
        rx.inner
            .inject(&[1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 0x08, 0x00, i]);
    }
    let mut pool = PacketPool::with_capacity(16);
    let stats = forward(&mut rx, &mut tx, PortId(0), &mut pool, 4, &stop).unwrap();
    assert_eq!(
        (stats.received, stats.transmitted, stats.refused),
        (5, 3, 2),
        "the second port takes 3, refuses 2"
    );
    assert!(
        rx.inner.take_tx().is_empty(),
        "nothing goes back out of the receiving port"
    );
    let sent = tx.take_tx();
    assert_eq!(sent[0], [2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 0x08, 0x00, 0]);
    assert_eq!(pool.available(), 16, "refused frames go back to the pool");
}
