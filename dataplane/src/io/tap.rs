//! TAP backend: one queue (one descriptor) of a multi-queue TAP per worker, with a
//! virtio-net header in front of every frame so the kernel can hand over frames whose L4
//! checksum is still partial.
//!
//! Invariants:
//! - Every queue of a device is attached with the same flags (IFF_TAP | IFF_NO_PI |
//!   IFF_MULTI_QUEUE | IFF_VNET_HDR), a 12-byte header (`virtio_net_hdr_v1`) and offloads
//!   TUN_F_CSUM only: the kernel never hands us a GSO frame, so a frame is at most MTU + 18
//!   bytes and fits a packet buffer while the MTU is at most 2030. A longer one (or one with
//!   a GSO type) is dropped and counted in `rx_oversized`.
//! - RX is one readv per frame: the header into a stack scratch, the frame straight into the
//!   packet's receive area where `set_received` expects it (no userspace copy), and one
//!   spare byte after it that reveals a frame the kernel had to truncate.
//! - TX is one writev per frame: an all-zero header (checksums complete, no GSO) and the
//!   frame in place.
//! - The descriptor is non-blocking: `rx_burst` stops when the queue is empty.
//! - The kernel, not the caller, picks which queue a frame leaves the kernel on (by flow
//!   hash); a queue has no index the caller could choose.

use std::ffi::{c_int, c_short, c_ulong};
use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use super::PacketIo;
use super::sys::{self, IfName, context};
use crate::packet::{Packet, PacketPool, PortId};

/// Size of `struct virtio_net_hdr_v1` (flags, gso_type, hdr_len, gso_size, csum_start,
/// csum_offset, num_buffers).
const VNET_HDR_LEN: usize = 12;
/// `flags` bit: the L4 checksum holds only the pseudo-header sum.
const VNET_F_NEEDS_CSUM: u8 = 1;
/// `gso_type` of a frame that is not a GSO super-frame.
const VNET_GSO_NONE: u8 = 0;
/// What every transmitted frame carries: no checksum to finish, no segmentation.
const VNET_HDR_COMPLETE: [u8; VNET_HDR_LEN] = [0; VNET_HDR_LEN];

/// Counters of one queue since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TapStats {
    /// Frames dropped on receive because they did not fit a packet buffer or were GSO.
    pub rx_oversized: u64,
}

/// One queue of a multi-queue TAP device.
pub struct TapQueue {
    file: File,
    name: String,
    stats: TapStats,
}

impl TapQueue {
    /// Attaches a new queue to the TAP `name` in the calling thread's network namespace,
    /// creating the device if it does not exist. A device created here disappears with its
    /// last queue unless it was made persistent; an existing device must have been created
    /// multi-queue (e.g. `ip tuntap add NAME mode tap multi_queue`).
    pub fn open(name: &str) -> io::Result<Self> {
        let ifname = IfName::new(name)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(|e| context(e, "open /dev/net/tun"))?;
        let flags = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_MULTI_QUEUE | libc::IFF_VNET_HDR;
        let mut request = ifname.request(libc::__c_anonymous_ifr_ifru {
            ifru_flags: flags as c_short,
        });
        sys::ioctl_with(
            file.as_fd(),
            libc::TUNSETIFF,
            &mut request,
            format_args!("TUNSETIFF {name} (an existing device must be a multi-queue TAP)"),
        )?;
        let mut header_len = VNET_HDR_LEN as c_int;
        sys::ioctl_with(
            file.as_fd(),
            libc::TUNSETVNETHDRSZ,
            &mut header_len,
            "TUNSETVNETHDRSZ",
        )?;
        sys::ioctl_value(
            file.as_fd(),
            libc::TUNSETOFFLOAD,
            c_ulong::from(libc::TUN_F_CSUM),
            "TUNSETOFFLOAD",
        )?;
        Ok(Self {
            file,
            name: name.to_owned(),
            stats: TapStats::default(),
        })
    }

    /// Makes the device outlive its queues (or not): a persistent TAP survives a dataplane
    /// restart, and the next process attaches to it with `open`.
    pub fn set_persistent(&self, persistent: bool) -> io::Result<()> {
        sys::ioctl_value(
            self.file.as_fd(),
            libc::TUNSETPERSIST,
            c_ulong::from(persistent),
            format_args!("TUNSETPERSIST {}", self.name),
        )
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The queue's descriptor, for poll(2)/epoll when the worker is idle: readable when the
    /// kernel has queued a frame on this queue.
    pub fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    pub fn stats(&self) -> TapStats {
        self.stats
    }
}

/// Write errors that concern one frame (the frame is refused, the queue goes on), as opposed
/// to the queue itself failing (e.g. EBADFD once the device was deleted).
fn is_frame_error(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(
            libc::EAGAIN | libc::EINVAL | libc::EIO | libc::ENOMEM | libc::ENOBUFS | libc::EMSGSIZE
        )
    )
}

impl PacketIo for TapQueue {
    fn rx_dropped(&mut self) -> u64 {
        self.stats.rx_oversized
    }

    fn rx_burst(
        &mut self,
        port: PortId,
        pool: &mut PacketPool,
        batch: &mut Vec<Packet>,
        max: usize,
    ) -> io::Result<usize> {
        let mut received = 0;
        while received < max {
            let Some(mut pkt) = pool.get() else { break };
            let mut header = [0u8; VNET_HDR_LEN];
            let mut overflow = [0u8; 1];
            let read = self.file.read_vectored(&mut [
                IoSliceMut::new(&mut header),
                IoSliceMut::new(pkt.receive_area()),
                IoSliceMut::new(&mut overflow),
            ]);
            let total = match read {
                Ok(total) => total,
                Err(err) => {
                    pool.put(pkt);
                    let idle = matches!(
                        err.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    );
                    // An error after some frames is reported by the next call.
                    if idle || received > 0 {
                        break;
                    }
                    return Err(context(err, format_args!("read from TAP {}", self.name)));
                }
            };
            // The kernel truncates a frame to the buffers given: a byte in `overflow` means
            // the frame was longer than the receive area, and `set_received` refuses it.
            let frame_len = total.saturating_sub(VNET_HDR_LEN);
            let [flags, gso_type, ..] = header;
            if total < VNET_HDR_LEN || gso_type != VNET_GSO_NONE || !pkt.set_received(frame_len) {
                self.stats.rx_oversized += 1;
                pool.put(pkt);
                continue;
            }
            pkt.meta.in_port = port;
            pkt.meta.csum_partial = flags & VNET_F_NEEDS_CSUM != 0;
            batch.push(pkt);
            received += 1;
        }
        Ok(received)
    }

    fn tx_burst(&mut self, pkts: &mut Vec<Packet>, pool: &mut PacketPool) -> io::Result<usize> {
        let mut sent = 0;
        let mut failure = None;
        for pkt in pkts.drain(..) {
            if failure.is_none() {
                let slices = [IoSlice::new(&VNET_HDR_COMPLETE), IoSlice::new(pkt.data())];
                match self.file.write_vectored(&slices) {
                    Ok(_) => sent += 1,
                    Err(err) if is_frame_error(&err) => {}
                    Err(err) => failure = Some(err),
                }
            }
            pool.put(pkt);
        }
        match failure {
            Some(err) => Err(context(err, format_args!("write to TAP {}", self.name))),
            None => Ok(sent),
        }
    }

    fn poll_fd(&self) -> Option<std::os::fd::RawFd> {
        Some(self.raw_fd())
    }
}

#[cfg(test)]
mod tests;
