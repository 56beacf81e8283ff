//! The in-memory backend: frames injected by tests and benchmarks, transmissions captured.
//!
//! Invariant: behaves like a device with an unbounded RX queue and a TX ring of
//! `tx_capacity` frames: frames beyond it are refused (and counted by the caller), so tests
//! can exercise ring-full handling.

use std::collections::VecDeque;
use std::io;

use super::PacketIo;
use crate::packet::{Packet, PacketPool, PortId};

#[derive(Debug)]
pub struct MemPort {
    rx: VecDeque<Vec<u8>>,
    tx: Vec<Vec<u8>>,
    tx_capacity: usize,
    /// Marks received frames as CHECKSUM_PARTIAL, like veth/TAP deliver locally sent ones.
    pub partial_checksums: bool,
}

impl Default for MemPort {
    fn default() -> Self {
        Self::new(usize::MAX)
    }
}

impl MemPort {
    pub fn new(tx_capacity: usize) -> Self {
        Self {
            rx: VecDeque::new(),
            tx: Vec::new(),
            tx_capacity,
            partial_checksums: false,
        }
    }

    /// Queues a frame for the next `rx_burst`.
    pub fn inject(&mut self, frame: &[u8]) {
        self.rx.push_back(frame.to_vec());
    }

    /// Takes every frame transmitted so far.
    pub fn take_tx(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.tx)
    }

    pub fn pending_rx(&self) -> usize {
        self.rx.len()
    }
}

impl PacketIo for MemPort {
    fn rx_burst(
        &mut self,
        port: PortId,
        pool: &mut PacketPool,
        batch: &mut Vec<Packet>,
        max: usize,
    ) -> io::Result<usize> {
        let mut n = 0;
        while n < max {
            let Some(frame) = self.rx.front() else { break };
            let Some(mut pkt) = pool.get() else { break };
            let fits = pkt.fill(frame);
            self.rx.pop_front();
            if !fits {
                pool.put(pkt);
                continue;
            }
            pkt.meta.in_port = port;
            pkt.meta.csum_partial = self.partial_checksums;
            batch.push(pkt);
            n += 1;
        }
        Ok(n)
    }

    fn tx_burst(&mut self, pkts: &mut Vec<Packet>, pool: &mut PacketPool) -> io::Result<usize> {
        let mut sent = 0;
        for pkt in pkts.drain(..) {
            if self.tx.len() < self.tx_capacity {
                self.tx.push(pkt.data().to_vec());
                sent += 1;
            }
            pool.put(pkt);
        }
        Ok(sent)
    }
}
