//! Packet I/O: the batch trait every backend implements, and the backends; and the memory
//! flow tables live in (`words`: heap, or a shared file mapping from `shm` that outlives the
//! process).
//!
//! Invariants:
//! - A backend moves frames between a device and pool buffers; it never interprets them
//!   beyond what the device reports (e.g. a partial checksum flag).
//! - `unsafe` and syscalls are allowed only in this module tree, each with a SAFETY note.
//! - `rx_burst` takes buffers from the caller's pool and `tx_burst` gives them back: the
//!   data path allocates nothing.

pub mod af_packet;
pub mod af_xdp;
pub mod cpu_steering;
pub mod hugepages;
pub mod mem;
pub mod netdev;
pub mod prefetch;
pub mod reflect;
pub mod shm;
mod sys;
pub mod tap;
#[cfg(test)]
mod testframes;
#[cfg(test)]
mod testnet;
pub mod thread;
pub mod udp_tunnel;
#[cfg(test)]
mod underlay6_tests;
pub mod words;

use std::io;
use std::os::fd::RawFd;

use crate::packet::{Packet, PacketPool, PortId};

/// One port's device, seen as bursts of frames.
pub trait PacketIo {
    /// Appends up to `max` received frames to `batch`, each in a buffer taken from `pool`
    /// with `meta.in_port` set to `port`. Returns how many were added.
    fn rx_burst(
        &mut self,
        port: PortId,
        pool: &mut PacketPool,
        batch: &mut Vec<Packet>,
        max: usize,
    ) -> io::Result<usize>;

    /// Transmits and drains `pkts`, returning every buffer to `pool`. Returns how many
    /// frames the device accepted; the rest were discarded and the caller counts them.
    fn tx_burst(&mut self, pkts: &mut Vec<Packet>, pool: &mut PacketPool) -> io::Result<usize>;

    /// A descriptor that turns readable when `rx_burst` would find a frame, for a worker
    /// that sleeps in poll(2) when idle; `None` when there is nothing to wait on.
    fn poll_fd(&self) -> Option<RawFd> {
        None
    }

    /// Frames that reached the device but never made it into a batch, since the port was
    /// opened: dropped by the kernel before we could take them (receive ring full, no fill
    /// buffer) or by the backend (longer than a buffer). Not per packet: it may cost a
    /// syscall, so callers ask a few times a second.
    fn rx_dropped(&mut self) -> u64 {
        0
    }

    /// Whether `tx_burst` takes a TCPv4 GSO super-packet (not encapsulated) whole and has the
    /// device segment it, as a TAP with a virtio-net header does; otherwise the worker
    /// segments it in software first (`offload::segment`).
    fn accepts_gso(&self) -> bool {
        false
    }

    /// Whether `tx_burst` takes a VXLAN-encapsulated TCPv4 super-packet whole and cuts it
    /// into datagrams itself (the UDP tunnel uplink, `udp_tunnel`); otherwise the worker
    /// segments it in software first.
    fn accepts_encapsulated_gso(&self) -> bool {
        false
    }
}
