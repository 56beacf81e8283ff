//! The generator side of a trial: an AF_PACKET socket (mmap TX ring, qdisc bypass) that
//! blasts pre-built frames into path A, and an AF_PACKET counter on the return path (path A
//! again for the reflector, path B for the pipeline) that counts what comes back.
//!
//! A trial runs three phases: warm-up (each flow's frame sent once, so the pipeline's
//! conntrack holds every flow before timing starts, then the returns drained), the measured
//! interval (send and count as fast as one core allows), and a grace period that drains late
//! returns without counting them.
//!
//! Invariants:
//! - Every loop is bounded by a deadline and by a frame count, and stops early when
//!   `interrupted` is set.
//! - Only frames `Expect` recognises are counted as delivered; anything else is `stray`.
//! - The counter socket ignores its own transmissions (PACKET_IGNORE_OUTGOING), so the
//!   reflector's path can send and count on one socket.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dataplane::io::PacketIo;
use dataplane::io::af_packet::{AfPacketConfig, AfPacketPort};
use dataplane::packet::{Packet, PacketPool, PortId};

use super::scenario::Expect;

/// Frames per `tx_burst` (one TX kick each).
const BURST: usize = 64;
/// Frames one drain call takes at most.
const DRAIN_MAX: usize = 1024;
/// How long the warm-up returns and the late returns are drained.
const WARMUP_DRAIN: Duration = Duration::from_millis(200);
const GRACE: Duration = Duration::from_millis(50);
const IDLE_PAUSE: Duration = Duration::from_millis(1);

/// What to send, what to count, for how long.
pub struct Load<'a> {
    /// One frame per flow, sent round robin.
    pub frames: &'a [Vec<u8>],
    pub expect: Expect,
    pub duration: Duration,
    /// Frames after which the interval ends even before `duration`.
    pub max_frames: u64,
}

/// What the generator saw in one trial.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GeneratorCounts {
    /// Frames the TX ring accepted during the measured interval.
    pub sent: u64,
    /// Expected frames counted back during the measured interval.
    pub delivered: u64,
    /// Length of the measured interval.
    pub elapsed: Duration,
    pub warmup_sent: u64,
    pub warmup_delivered: u64,
    /// Expected frames that came back after the interval (not in the rate).
    pub late: u64,
    /// Frames on the return path that were not the expected ones, in any phase.
    pub stray: u64,
}

/// The generator's sockets and its frame pool.
struct Ends {
    tx: AfPacketPort,
    /// `None` when returns come back on `tx`'s interface.
    rx: Option<AfPacketPort>,
    pool: PacketPool,
    batch: Vec<Packet>,
    expect: Expect,
    cursor: usize,
    matched: u64,
    stray: u64,
}

fn generator_socket(ifname: &str) -> io::Result<AfPacketPort> {
    let config = AfPacketConfig {
        rx_frames: 8192,
        tx_frames: 1024,
        fanout_group: None,
        promiscuous: false,
        vnet_hdr: false,
        exclude_udp_port: None,
        fanout_by_cpu: None,
    };
    AfPacketPort::open(ifname, &config)
}

impl Ends {
    /// Queues up to `count` frames (round robin over `frames`), in bursts; returns how many
    /// the TX ring accepted.
    fn send(&mut self, frames: &[Vec<u8>], count: usize) -> io::Result<u64> {
        let mut accepted = 0;
        let mut left = count;
        while left > 0 {
            let burst = left.min(BURST);
            for _ in 0..burst {
                let Some(mut pkt) = self.pool.get() else {
                    break;
                };
                let filled = frames.get(self.cursor).is_some_and(|f| pkt.fill(f));
                self.cursor = (self.cursor + 1) % frames.len().max(1);
                if filled {
                    self.batch.push(pkt);
                } else {
                    self.pool.put(pkt);
                }
            }
            accepted += self.tx.tx_burst(&mut self.batch, &mut self.pool)? as u64;
            left -= burst;
        }
        Ok(accepted)
    }

    /// Counts up to `DRAIN_MAX` returned frames; returns how many it took.
    fn drain(&mut self) -> io::Result<usize> {
        let port = self.rx.as_mut().unwrap_or(&mut self.tx);
        let taken = port.rx_burst(PortId(0), &mut self.pool, &mut self.batch, DRAIN_MAX)?;
        for pkt in self.batch.drain(..) {
            if self.expect.matches(pkt.data()) {
                self.matched += 1;
            } else {
                self.stray += 1;
            }
            self.pool.put(pkt);
        }
        Ok(taken)
    }

    /// Drains for `period`, pausing briefly whenever the ring is empty.
    fn drain_for(&mut self, period: Duration, interrupted: &AtomicBool) -> io::Result<()> {
        let deadline = Instant::now() + period;
        while Instant::now() < deadline && !interrupted.load(Ordering::Relaxed) {
            if self.drain()? == 0 {
                std::thread::sleep(IDLE_PAUSE);
            }
        }
        Ok(())
    }

    /// Returns the matched count so far and starts a new one.
    fn take_matched(&mut self) -> u64 {
        std::mem::take(&mut self.matched)
    }
}

/// Runs one trial's generator on the calling thread (already in the generator's namespace
/// and pinned): sends into `tx_if`, counts on `rx_if` (`None`: on `tx_if`).
pub fn generate(
    tx_if: &str,
    rx_if: Option<&str>,
    load: &Load<'_>,
    interrupted: &AtomicBool,
) -> io::Result<GeneratorCounts> {
    let mut ends = Ends {
        tx: generator_socket(tx_if)?,
        rx: rx_if.map(generator_socket).transpose()?,
        pool: PacketPool::with_capacity(BURST + DRAIN_MAX),
        batch: Vec::with_capacity(BURST + DRAIN_MAX),
        expect: load.expect,
        cursor: 0,
        matched: 0,
        stray: 0,
    };
    let mut counts = GeneratorCounts {
        warmup_sent: ends.send(load.frames, load.frames.len())?,
        ..GeneratorCounts::default()
    };
    ends.drain_for(WARMUP_DRAIN, interrupted)?;
    counts.warmup_delivered = ends.take_matched();

    let start = Instant::now();
    let deadline = start + load.duration;
    while counts.sent < load.max_frames
        && Instant::now() < deadline
        && !interrupted.load(Ordering::Relaxed)
    {
        counts.sent += ends.send(load.frames, BURST)?;
        ends.drain()?;
    }
    counts.elapsed = start.elapsed();
    counts.delivered = ends.take_matched();

    ends.drain_for(GRACE, interrupted)?;
    counts.late = ends.take_matched();
    counts.stray = ends.stray;
    Ok(counts)
}
