//! One worker's poll step: receive a burst from each port, run the pipeline over the batch,
//! hand each packet to the transmit queue of the port its verdict names, transmit.
//!
//! Invariants:
//! - Buffers cycle pool -> rx batch -> tx queue -> pool; `poll_once` allocates nothing once
//!   the queues have reached their working size.
//! - A frame the device refuses is counted as `TxRingFull`; a dropped packet's buffer goes
//!   straight back to the pool.

use crate::drop::DropReason;
use crate::io::PacketIo;
use crate::packet::{Packet, PacketPool, PortId, Verdict};
use crate::pipeline::Pipeline;
use crate::snapshot::Snapshot;
use crate::tables::conntrack::Now;

/// How many frames one port may contribute to a batch.
pub const BURST: usize = 64;

pub struct Worker<P: PacketIo> {
    pub pipeline: Pipeline,
    /// Devices indexed by `PortId`.
    pub ports: Vec<P>,
    pool: PacketPool,
    batch: Vec<Packet>,
    tx_queues: Vec<Vec<Packet>>,
    pub rx_errors: u64,
}

impl<P: PacketIo> Worker<P> {
    pub fn new(pipeline: Pipeline, ports: Vec<P>, pool_size: usize) -> Self {
        let n = ports.len();
        Self {
            pipeline,
            ports,
            pool: PacketPool::with_capacity(pool_size),
            batch: Vec::with_capacity(BURST * n.max(1)),
            tx_queues: (0..n)
                .map(|_| Vec::with_capacity(BURST * n.max(1)))
                .collect(),
            rx_errors: 0,
        }
    }

    /// One round over all ports. Returns the number of packets processed.
    pub fn poll_once(&mut self, snap: &Snapshot, now: Now) -> usize {
        for (i, dev) in self.ports.iter_mut().enumerate() {
            if dev
                .rx_burst(PortId(i as u16), &mut self.pool, &mut self.batch, BURST)
                .is_err()
            {
                self.rx_errors += 1;
            }
        }
        let n = self.batch.len();
        if n == 0 {
            return 0;
        }
        self.pipeline.begin_batch(now);
        self.pipeline.process_batch(snap, &mut self.batch);
        for pkt in self.batch.drain(..) {
            match pkt.meta.verdict {
                Verdict::Tx(port) if usize::from(port.0) < self.tx_queues.len() => {
                    self.tx_queues[usize::from(port.0)].push(pkt);
                }
                Verdict::Tx(_) => {
                    self.pipeline.drops.count(DropReason::NoRoute);
                    self.pool.put(pkt);
                }
                _ => self.pool.put(pkt),
            }
        }
        for (queue, dev) in self.tx_queues.iter_mut().zip(self.ports.iter_mut()) {
            if queue.is_empty() {
                continue;
            }
            let offered = queue.len();
            let sent = dev.tx_burst(queue, &mut self.pool).unwrap_or(0);
            for pkt in queue.drain(..) {
                self.pool.put(pkt);
            }
            for _ in sent..offered {
                self.pipeline.drops.count(DropReason::TxRingFull);
            }
        }
        n
    }
}
