//! The per-burst ring work of an AF_XDP port: copying frames out of and into the UMEM,
//! recycling receive frames through the fill ring, reaping transmit completions and kicking
//! the kernel to send.
//!
//! Invariants:
//! - Each pass is one ring transaction: reserve, copy, commit. `xdpilone` serves a
//!   reservation from its cached view of the kernel's ring position and refreshes that view
//!   only once it is used up, so callers run up to two passes to see everything.
//! - A receive frame is copied out before its fill slot is committed, and a transmit frame is
//!   written before its descriptor is committed: the commits are the release stores that hand
//!   a frame to the kernel, so the two sides never touch a frame at once.
//! - No allocation: the free-frame stack never grows past the TX frame count it was built
//!   with. Syscalls only in `kick`.

use std::io;

use xdpilone::xdp::XdpDesc;

use super::AfXdpPort;
use crate::io::sys::context;
use crate::packet::{Packet, PacketPool, PortId};

impl AfXdpPort {
    /// Moves every TX frame the kernel has finished with back to the free stack.
    pub(super) fn reap_completions(&mut self) {
        // Until a pass finds nothing: an empty cached view makes the ring re-read the kernel's.
        loop {
            let mut done = self.device.complete(self.layout.tx_frames);
            let mut reaped = 0;
            while let Some(addr) = done.read() {
                reaped += 1;
                // Only our own TX frames come back, so the stack never outgrows its capacity.
                if self.tx_free.len() < self.tx_free.capacity() {
                    self.tx_free.push(self.layout.frame_start(addr));
                }
            }
            done.release();
            if reaped == 0 {
                return;
            }
        }
    }

    /// Receives up to `want` frames (no more than `pool` can hold) as one ring transaction.
    pub(super) fn receive_pass(
        &mut self,
        port: PortId,
        pool: &mut PacketPool,
        batch: &mut Vec<Packet>,
        want: usize,
    ) -> usize {
        // Every frame read below goes back through a fill slot reserved here first.
        let mut fill = self.device.fill(u32::try_from(want).unwrap_or(u32::MAX));
        let mut rx = self.rx.receive(fill.capacity());
        let mut received = 0;
        while let Some(mut pkt) = pool.get() {
            let Some(XdpDesc { addr, len, .. }) = rx.read() else {
                pool.put(pkt);
                break;
            };
            // SAFETY: the kernel handed this frame over through the RX ring (the read above
            // follows an acquire load of the ring's producer) and gets it back only through
            // the fill ring, after the copy: the commit below publishes it.
            let copied =
                unsafe { self.area.bytes(addr, len as usize) }.is_some_and(|frame| pkt.fill(frame));
            fill.insert_once(self.layout.frame_start(addr));
            if copied {
                pkt.meta.in_port = port;
                batch.push(pkt);
                received += 1;
            } else {
                self.stats.rx_truncated += 1;
                pool.put(pkt);
            }
        }
        rx.release();
        fill.commit();
        received
    }

    /// Copies frames from `pkts` into free TX frames and posts them, as one ring transaction;
    /// returns how many were posted. Frames it does not take stay in `pkts`.
    pub(super) fn transmit_pass(
        &mut self,
        pkts: &mut impl ExactSizeIterator<Item = Packet>,
        pool: &mut PacketPool,
    ) -> u32 {
        let want = pkts.len().min(self.tx_free.len());
        let mut ring = self.tx.transmit(u32::try_from(want).unwrap_or(u32::MAX));
        let mut queued = 0;
        for pkt in pkts.take(ring.capacity() as usize) {
            let Some(frame) = self.tx_free.pop() else {
                self.stats.tx_ring_full += 1;
                pool.put(pkt);
                continue;
            };
            // SAFETY: a frame on the free stack is in no ring and awaits no completion, so
            // the kernel does not touch it until the descriptor below is committed.
            if unsafe { self.area.write(frame, pkt.data()) } {
                ring.insert_once(XdpDesc {
                    addr: frame,
                    len: pkt.len() as u32,
                    options: 0,
                });
                queued += 1;
            } else {
                self.tx_free.push(frame);
                self.stats.tx_oversized += 1;
            }
            pool.put(pkt);
        }
        ring.commit();
        queued
    }

    /// Asks the kernel to send what the TX ring holds.
    pub(super) fn kick(&mut self) -> io::Result<()> {
        if self.zero_copy {
            // The driver sends on its own; it needs a syscall only when it says so.
            if self.tx.needs_wakeup() {
                self.send_kick()?;
            }
            self.unsent = false;
            return Ok(());
        }
        // Copy mode: each call sends at most 32 frames, so go on while it makes progress.
        let mut pending = self.tx.pending();
        while pending > 0 {
            self.send_kick()?;
            let now = self.tx.pending();
            if now >= pending {
                self.unsent = true;
                return Ok(());
            }
            pending = now;
        }
        self.unsent = false;
        Ok(())
    }

    /// A non-blocking recvfrom: with preferred busy polling on, the kernel polls the
    /// device's NAPI in it (up to SO_BUSY_POLL_BUDGET frames into the RX ring). Errors are
    /// the normal outcome of an empty ring (EAGAIN) and are not reported.
    pub(super) fn busy_poll_kick(&self) {
        // SAFETY: a null buffer of length 0 and no address: the kernel writes no user memory;
        // an XDP socket's recvmsg only polls and walks its mapped rings.
        unsafe {
            libc::recvfrom(
                self.raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
    }

    fn send_kick(&self) -> io::Result<()> {
        // SAFETY: a null buffer of length 0 and no address: the kernel reads no user memory
        // here, it walks the TX ring mapped by this socket.
        let ret = unsafe {
            libc::sendto(
                self.raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        if ret >= 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            // Budget used up, device queue busy, no memory for a socket buffer, or link down:
            // the frames stay in the ring for the next kick.
            Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS | libc::ENETDOWN | libc::EINTR) => {
                Ok(())
            }
            _ => Err(context(err, "AF_XDP TX kick")),
        }
    }
}
