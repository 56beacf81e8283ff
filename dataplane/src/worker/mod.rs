//! One worker's poll step: receive a burst from each port, run the pipeline over the batch,
//! hand each packet to the transmit queue of the port its verdict names, transmit.
//!
//! Invariants:
//! - Buffers cycle pool -> rx batch -> tx queue -> pool; `poll_once` allocates nothing once
//!   the queues have reached their working size.
//! - Ports are indexed by `PortId`; a slot is `None` until the control thread attaches a
//!   device there (pods come and go while the worker runs).
//! - A frame the device refuses is counted as `TxRingFull`; a dropped packet's buffer goes
//!   straight back to the pool.

use crate::drop::DropReason;
use crate::io::PacketIo;
use crate::offload::segment;
use crate::packet::{DEFAULT_LARGE, Packet, PacketPool, PortId, Verdict};
use crate::pipeline::Pipeline;
use crate::snapshot::Snapshot;
use crate::tables::conntrack::Now;

mod idle;
mod keep_warm;
mod runtime;
mod sweep_pace;

pub use idle::{DEFAULT_SPIN, IdleMode, RoundStats};
pub use runtime::{Rounds, RunConfig, WorkerCommand, WorkerReport, run};
pub use sweep_pace::DEFAULT_SWEEP_PERIOD;

/// How many frames one port may contribute to a batch.
pub const BURST: usize = 64;

/// Per-port traffic counters of one worker.
#[derive(Clone, Debug, Default)]
pub struct PortCounters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// Frames the device accepted.
    pub tx_packets: u64,
    /// Bytes handed to the device, refused frames included (see `tx_refused`).
    pub tx_bytes: u64,
    /// Frames the device refused (ring full), also counted as `TxRingFull` drops.
    pub tx_refused: u64,
    /// Frames lost on receive before a batch took them (`PacketIo::rx_dropped`: kernel ring
    /// full, no buffer, oversized); refreshed when the worker publishes its report.
    pub rx_dropped: u64,
}

pub struct Worker<P: PacketIo> {
    pub pipeline: Pipeline,
    /// Devices indexed by `PortId`.
    pub ports: Vec<Option<P>>,
    pub counters: Vec<PortCounters>,
    pool: PacketPool,
    batch: Vec<Packet>,
    tx_queues: Vec<Vec<Packet>>,
    pub rx_errors: u64,
    /// Segments made in software from GSO super-packets for ports that cannot take them.
    pub segmented: u64,
}

impl<P: PacketIo> Worker<P> {
    pub fn new(pipeline: Pipeline, ports: Vec<P>, pool_size: usize) -> Self {
        let mut w = Self {
            pipeline,
            ports: Vec::new(),
            counters: Vec::new(),
            pool: PacketPool::with_large(pool_size, DEFAULT_LARGE),
            batch: Vec::with_capacity(BURST * ports.len().max(1)),
            tx_queues: Vec::new(),
            rx_errors: 0,
            segmented: 0,
        };
        for (i, dev) in ports.into_iter().enumerate() {
            w.attach(PortId(i as u16), dev);
        }
        w
    }

    /// Puts a device on `port` (replacing any there). Off the packet path: it may allocate.
    pub fn attach(&mut self, port: PortId, dev: P) {
        let i = usize::from(port.0);
        if self.ports.len() <= i {
            self.ports.resize_with(i + 1, || None);
            self.counters.resize_with(i + 1, PortCounters::default);
            self.tx_queues
                .resize_with(i + 1, || Vec::with_capacity(BURST));
        }
        self.ports[i] = Some(dev);
        self.counters[i] = PortCounters::default();
        let want = BURST * self.ports.iter().flatten().count();
        self.batch.reserve(want.saturating_sub(self.batch.len()));
    }

    /// Removes the device on `port`, returning it.
    pub fn detach(&mut self, port: PortId) -> Option<P> {
        self.ports
            .get_mut(usize::from(port.0))
            .and_then(Option::take)
    }

    /// The device on `port`, if one is attached.
    pub fn port_mut(&mut self, port: PortId) -> Option<&mut P> {
        self.ports
            .get_mut(usize::from(port.0))
            .and_then(Option::as_mut)
    }

    /// One round over all ports. Returns the number of packets processed.
    pub fn poll_once(&mut self, snap: &Snapshot, now: Now) -> usize {
        for (i, slot) in self.ports.iter_mut().enumerate() {
            let Some(dev) = slot else { continue };
            let before = self.batch.len();
            if dev
                .rx_burst(PortId(i as u16), &mut self.pool, &mut self.batch, BURST)
                .is_err()
            {
                self.rx_errors += 1;
            }
            let c = &mut self.counters[i];
            for pkt in &self.batch[before..] {
                c.rx_packets += 1;
                c.rx_bytes += pkt.len() as u64;
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
                    let i = usize::from(port.0);
                    let whole = !pkt.meta.offload.is_gso()
                        || (pkt.meta.offload.encap_len == 0
                            && self.ports[i].as_ref().is_some_and(P::accepts_gso))
                        || (pkt.meta.offload.encap_len > 0
                            && self.ports[i]
                                .as_ref()
                                .is_some_and(P::accepts_encapsulated_gso));
                    if whole {
                        self.tx_queues[i].push(pkt);
                        continue;
                    }
                    let o = pkt.meta.offload;
                    let made = segment::segment(
                        pkt.data(),
                        usize::from(o.encap_len),
                        usize::from(o.gso_size),
                        &pkt.meta,
                        &mut self.pool,
                        &mut self.tx_queues[i],
                    );
                    match made {
                        Ok(n) => self.segmented += n as u64,
                        Err(reason) => self.pipeline.drops.count(reason),
                    }
                    self.pool.put(pkt);
                }
                Verdict::Tx(_) => {
                    self.pipeline.drops.count(DropReason::NoRoute);
                    self.pool.put(pkt);
                }
                _ => self.pool.put(pkt),
            }
        }
        for ((queue, slot), c) in self
            .tx_queues
            .iter_mut()
            .zip(self.ports.iter_mut())
            .zip(self.counters.iter_mut())
        {
            if queue.is_empty() {
                continue;
            }
            let offered = queue.len();
            let bytes: u64 = queue.iter().map(|p| p.len() as u64).sum();
            let sent = match slot {
                Some(dev) => dev.tx_burst(queue, &mut self.pool).unwrap_or(0),
                None => 0,
            };
            c.tx_packets += sent as u64;
            c.tx_bytes += bytes;
            c.tx_refused += (offered - sent) as u64;
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
