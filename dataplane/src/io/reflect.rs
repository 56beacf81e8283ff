//! The raw I/O ceiling: a reflector that sends every received frame back out of the port it
//! came in on, or a forwarder that sends it out of another port, MAC addresses swapped, with
//! no pipeline in between. A traffic generator measures what comes out; the full pipeline is
//! compared against this rate.
//!
//! Invariants:
//! - Per burst: one `rx_burst`, a 12-byte swap per frame, one `tx_burst`, one relaxed load of
//!   the stop flag; nothing else (no allocation, no clock read). The loop busy-polls, like a
//!   loaded worker.
//! - Every buffer goes back to the pool: a refused frame is counted, never leaked.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

use super::PacketIo;
use crate::packet::{Packet, PacketPool, PortId};

/// What one `reflect` run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReflectStats {
    pub received: u64,
    pub transmitted: u64,
    /// Frames the device did not accept for transmission (ring full).
    pub refused: u64,
    /// Polls that found nothing waiting.
    pub empty_polls: u64,
}

/// Swaps the destination and source MAC addresses of an Ethernet frame in place; shorter
/// frames are left alone.
fn swap_macs(frame: &mut [u8]) {
    if let Some(addrs) = frame.get_mut(..12) {
        let (dst, src) = addrs.split_at_mut(6);
        dst.swap_with_slice(src);
    }
}

/// Reflects frames on `io` in bursts of up to `burst` until `stop` is set.
pub fn reflect(
    io: &mut impl PacketIo,
    port: PortId,
    pool: &mut PacketPool,
    burst: usize,
    stop: &AtomicBool,
) -> io::Result<ReflectStats> {
    pump(stop, burst, |batch| {
        let received = io.rx_burst(port, pool, batch, burst)?;
        swap_all(batch);
        Ok((received, io.tx_burst(batch, pool)?))
    })
}

/// Forwards frames received on `rx` (as `port`) out of `tx`, MACs swapped, in bursts of up
/// to `burst` until `stop` is set: the raw ceiling of a path in on one link, out on another.
pub fn forward(
    rx: &mut impl PacketIo,
    tx: &mut impl PacketIo,
    port: PortId,
    pool: &mut PacketPool,
    burst: usize,
    stop: &AtomicBool,
) -> io::Result<ReflectStats> {
    pump(stop, burst, |batch| {
        let received = rx.rx_burst(port, pool, batch, burst)?;
        swap_all(batch);
        Ok((received, tx.tx_burst(batch, pool)?))
    })
}

fn swap_all(batch: &mut [Packet]) {
    for pkt in batch {
        swap_macs(pkt.data_mut());
    }
}

/// Runs `round` (receive into the batch, send it; returns received and sent) until `stop`.
fn pump(
    stop: &AtomicBool,
    burst: usize,
    mut round: impl FnMut(&mut Vec<Packet>) -> io::Result<(usize, usize)>,
) -> io::Result<ReflectStats> {
    let mut stats = ReflectStats::default();
    let mut batch = Vec::with_capacity(burst);
    while !stop.load(Ordering::Relaxed) {
        let (received, transmitted) = round(&mut batch)?;
        if received == 0 {
            stats.empty_polls += 1;
            std::hint::spin_loop();
            continue;
        }
        stats.received += received as u64;
        stats.transmitted += transmitted as u64;
        stats.refused += received.saturating_sub(transmitted) as u64;
    }
    Ok(stats)
}

#[cfg(test)]
mod tests;
